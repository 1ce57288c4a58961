"""What `make run` tells a person: the URL to open and how to log in, and a Setup page that says which
key host is in use and copies its URLs."""

import subprocess
import sys

import pytest

from tests.browser import log_in, needs_chromium, running_site
from tests.processes import ROOT
from tests.screenshots import PHONE, screenshot

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A web process as `make run` starts it: trusting the simulator's key host."""
    with running_site(tmp_path_factory.mktemp("make-run"), ADOBE_IO_KEY_BASE_URL="http://127.0.0.1:8765") as found:
        yield found


def test_once_the_web_process_answers_it_prints_the_url_and_how_to_log_in(site):
    result = subprocess.run(
        [sys.executable, "manage.py", "say_ready", "--url", site["base"], "--exit"],
        cwd=ROOT, env=site["env"], capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert f"Fluxo is ready: open {site['base']}/" in result.stdout
    assert "manage.py changepassword admin" in result.stdout  # later runs: how to reset the password
    assert "FLUXO_LOG_LEVEL=DEBUG" in result.stdout  # how to see each request and task


def test_the_procfile_keeps_per_request_and_per_task_lines_for_debug():
    procfile = (ROOT / "Procfile").read_text()
    assert "ready: exec .venv/bin/python manage.py say_ready" in procfile
    worker = next(line for line in procfile.splitlines() if line.startswith("worker:"))
    assert "--loglevel=INFO" not in worker and "echo WARNING" in worker


@needs_chromium
def test_the_setup_page_names_the_key_host_and_copies_its_urls(site, browser):
    context = browser.new_context(viewport=PHONE)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site["base"])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, site["base"], "/setup/")
    assert "http://127.0.0.1:8765" in page.inner_text("section.setup")
    assert "the sandbox simulator's" in page.inner_text("section.setup")
    button = page.locator("button.copy").first
    button.click()
    for _ in range(100):
        if button.inner_text() == "Copied":
            break
        page.wait_for_timeout(50)
    assert button.inner_text() == "Copied"
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == site["base"] + site["source"]["endpoints"]["adobe_io"]
    screenshot(page, "phone-setup-copy")
    assert errors == []
    context.close()


@needs_chromium
def test_pages_follow_the_system_s_dark_mode(site, browser, logged_in):
    context = browser.new_context(color_scheme="dark", storage_state=logged_in)
    page = context.new_page()
    for name, path in (("overview", "/"), ("alerts", "/alerts/"), ("setup", "/setup/")):
        page.goto(site["base"] + path)
        page.wait_for_load_state("networkidle")
        screenshot(page, f"dark-{name}")
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        panel = page.evaluate("getComputedStyle(document.querySelector('.panel')).backgroundColor")
        assert body == "rgb(20, 24, 33)" and panel == "rgb(28, 34, 48)", (name, body, panel)
    context.close()
