"""Pages as a person sees them, in real headless Chromium (Debian's, driven by Playwright)."""

import pytest

from tests.browser import PASSWORD, USERNAME, needs_chromium, running_site

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A real web process with an admin and a source whose name tries to inject markup."""
    with running_site(tmp_path_factory.mktemp("browser"), source_name="<img src=x onerror=alert(1)>") as found:
        yield found


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def log_in(page, base):
    """From the overview's address: a visitor is sent to the login form first."""
    page.goto(base + "/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_a_person_logs_in_and_sees_their_sources_with_untrusted_text_escaped(site, page):
    base = site["base"]
    log_in(page, base)
    page.wait_for_selector("#health")
    assert page.url == base + "/"
    assert page.locator("#health td").first.inner_text() == "<img src=x onerror=alert(1)>"
    assert page.locator("table.grid img").count() == 0
    assert page.dialogs == []


def test_a_wrong_password_is_refused_with_a_message(site, page):
    base = site["base"]
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "didn't match" in page.inner_text("main")


def test_the_admin_setup_page_shows_the_urls_to_give_adobe(site, page):
    base, source = site["base"], site["source"]
    log_in(page, base)
    page.goto(f"{base}/admin/streams/source/{source['id']}/setup/")
    text = page.inner_text("#content")
    assert base + source["endpoints"]["adobe_io"] in text
    assert base + source["endpoints"]["legacy_push"] in text
    assert page.dialogs == []
