"""Every page carries the Content-Security-Policy, and in real Chromium no page breaks it.

Each page is loaded as a staff member would (dashboards with Plotly drawing, their live sockets, the
alerts pages, setup, the admin, the login page, an error page) while the browser reports every
violation; an injected inline script is refused on the pages that had no policy before.
"""

import pytest

from tests.browser import WAIT_MS, needs_chromium, running_site
from tests.ingest import activity, http_post

pytestmark = [pytest.mark.slow, needs_chromium]

# Recorded in the page before any of its own scripts run.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with running_site(tmp_path_factory.mktemp("csp-browser")) as found:
        base, source = found["base"], found["source"]
        assert http_post(base, source, [activity(1), activity(12), activity(2)])[0] == 200
        yield found


def watched(context):
    page = context.new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    page.refusals, page.sockets = [], []
    page.on("console", lambda m: "Content Security Policy" in m.text and page.refusals.append(m.text))
    page.on("websocket", lambda socket: page.sockets.append(socket.url))
    return page


@pytest.fixture
def page(browser, logged_in):
    context = browser.new_context(storage_state=logged_in)
    yield watched(context)
    context.close()


@pytest.fixture
def visitor(browser):
    context = browser.new_context()
    yield watched(context)
    context.close()


def visit(page, url, ready=None):
    """Load ``url``, wait for what shows its scripts ran; the page's policy header."""
    response = page.goto(url)
    page.wait_for_load_state("load")
    if ready:
        page.wait_for_selector(ready, timeout=WAIT_MS)
    return response.headers.get("content-security-policy", "")


def assert_clean(page, policy):
    assert "script-src 'self'" in policy
    assert "unsafe-eval" not in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert page.evaluate("window.__violations") == []
    assert page.refusals == []


def injected_inline_script_runs(page):
    """Whether an inline event handler slipped into the page runs (it must be refused)."""
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__ran=1\">')")
    for _ in range(WAIT_MS // 50):
        if page.evaluate("window.__violations.length > 0 || window.__ran === 1"):
            break
        page.wait_for_timeout(50)
    return page.evaluate("window.__ran === 1")


DASHBOARDS = [
    ("/", ".js-plotly-plot .main-svg"),
    ("/leads/", None),
    ("/audit/", ".js-plotly-plot .main-svg"),
    ("/notifications/", ".js-plotly-plot .main-svg"),
    ("/setup/", None),
]
ALERTS = ["/alerts/", "/alerts/rules/", "/alerts/rules/new/", "/alerts/destinations/", "/alerts/silences/"]
ADMIN = ["/admin/", "/admin/auth/user/add/", "/admin/axes/accessattempt/", "/admin/streams/source/"]


@pytest.mark.parametrize(("path", "ready"), DASHBOARDS)
def test_the_dashboards_draw_and_go_live_without_a_violation(site, page, path, ready):
    base = site["base"]
    policy = visit(page, base + path, ready)
    if path == "/":
        page.wait_for_selector("#health td", timeout=WAIT_MS)
        assert page.sockets  # the live socket is allowed (connect-src 'self')
    assert_clean(page, policy)


@pytest.mark.parametrize("path", ALERTS)
def test_the_alerts_pages_load_without_a_violation(site, page, path):
    base = site["base"]
    assert_clean(page, visit(page, base + path))


@pytest.mark.parametrize("path", ADMIN)
def test_the_admin_pages_carry_the_policy_and_break_none_of_it(site, page, path):
    base = site["base"]
    assert_clean(page, visit(page, base + path, "#content"))


def test_the_sources_setup_page_in_the_admin(site, page):
    base, source = site["base"], site["source"]
    assert_clean(page, visit(page, f"{base}/admin/streams/source/{source['id']}/setup/", "#content"))
    assert_clean(page, visit(page, f"{base}/admin/streams/source/{source['id']}/change/", "#content"))


def test_an_inline_script_slipped_into_the_admin_is_refused(site, page):
    base = site["base"]
    visit(page, base + "/admin/", "#content")
    assert not injected_inline_script_runs(page)
    assert page.evaluate("window.__violations")


def test_the_login_page_and_an_error_page_carry_the_policy(site, visitor):
    base = site["base"]
    assert_clean(visitor, visit(visitor, base + "/accounts/login/", "form.login"))
    assert not injected_inline_script_runs(visitor)
    assert "script-src 'self'" in visit(visitor, base + "/no-such-page/")
