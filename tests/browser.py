"""What the browser tests share: Debian's Chromium driven by Playwright (never a downloaded browser), a
site to point it at (a migrated database, an admin, a source, a real web process), and logging in.

The fixtures ``browser`` (one Chromium per module) and ``logged_in`` (the admin's cookies, from logging in
once through the form; it needs the module's ``site`` fixture, a dict with ``base``) are registered in
tests/conftest.py, so a module only names them.
"""

import contextlib
import json
import shutil
from pathlib import Path

import pytest

from tests.processes import bare_env, daphne, manage, stop_embedded_redis

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 15000  # a bound on a failure, never a measured time
USERNAME, PASSWORD = "ada", "pw-ada-123"
MUNCHKIN_ID = "123-ABC-456"
CREATE_ADMIN = (
    f"from django.contrib.auth.models import User; User.objects.create_superuser({USERNAME!r}, 'a@x.io', {PASSWORD!r})"
)

needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (make test installs it)"
)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)


@contextlib.contextmanager
def chromium():
    """A Chromium of its own, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        found = launch(p)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def logged_in(site, browser):
    """The admin's cookies (a storage state), from logging in once through the form (hashing is slow)."""
    context = browser.new_context()
    log_in(context.new_page(), site["base"])
    state = context.storage_state()
    context.close()
    return state


def prepare(var_dir, source_name="Acme", pinned_key=None, **env):
    """A migrated site under ``var_dir``: the admin, and a source (its Adobe I/O deliveries verified against
    ``pinned_key``, a PEM, when given); (environment, the source as add_source --json gives it)."""
    env = bare_env(var_dir, **env)
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", CREATE_ADMIN)
    source = json.loads(manage(env, "add_source", source_name, "--munchkin-id", MUNCHKIN_ID, "--json"))
    if pinned_key:
        pinned = f"from streams.models import Source; Source.objects.update(pinned_public_keys={pinned_key!r})"
        manage(env, "shell", "-c", pinned)
    return env, source


@contextlib.contextmanager
def running_site(var_dir, **options):
    """``prepare()``'s site with a real web process; yields {env, base, source, var_dir}, and stops the
    embedded Redis its processes started afterwards."""
    try:
        env, source = prepare(var_dir, **options)
        with daphne(env) as base:
            yield {"env": env, "base": base, "source": source, "var_dir": Path(var_dir)}
    finally:
        stop_embedded_redis(var_dir)


def log_in(page, base, then="/"):
    """Log the admin in through the login form; the page lands on ``then``."""
    page.goto(f"{base}/accounts/login/?next={then}")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + then)


def wait_for(page, expression, arg=None, timeout=WAIT_MS):
    """Poll a JavaScript expression (or function of ``arg``) until it is truthy.

    Polled from here, not with wait_for_function: Playwright's in-page polling evaluates strings,
    which the pages' Content-Security-Policy (no 'unsafe-eval') rightly refuses.
    """
    for _ in range(max(1, timeout // 50)):
        if page.evaluate(expression, arg):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"still false after {timeout} ms: {expression}")


def watch(page):
    """Record a page's dialogs (dismissed), requests, socket frames and errors (uncaught, or on the console)."""
    page.dialogs, page.urls, page.frames_received, page.errors = [], [], [], []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: page.urls.append(request.url))
    page.on("websocket", lambda socket: _watch_socket(page, socket))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    return page


def _watch_socket(page, socket):
    page.urls.append(socket.url)
    socket.on("framereceived", lambda payload: page.frames_received.append(str(payload)))
