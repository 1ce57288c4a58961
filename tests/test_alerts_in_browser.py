"""The alerts pages in real headless Chromium against a real daphne: a rule from a template, previewed,
saved and listed; an alert whose sample carries markup shows it as text; nothing loads from off the machine.
"""

import json
import os
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.browser import log_in, needs_chromium, running_site, wait_for
from tests.ingest import april_activity, http_post, http_push
from tests.processes import manage
from tests.screenshots import PHONE, WIDE, screenshot

EVIL = '<img src=x onerror="window.__pwned=1">'
KOLKATA = ("Asia/Kolkata", "Asia/Calcutta")  # Chromium may report the older name of the same zone

pytestmark = [pytest.mark.slow, needs_chromium]


class ScratchDatabase:
    """On the PostgreSQL pass, a database of its own for the web process, dropped afterwards."""

    def __init__(self):
        given = urlsplit(os.environ["DATABASE_URL"])
        self.server = f"postgresql://{given.netloc}"
        self.name = f"{given.path.strip('/') or 'fluxo'}_alertsbrowser_{os.getpid()}"
        self.url = f"postgres://{given.netloc}/{self.name}"
        self._run(f'DROP DATABASE IF EXISTS "{self.name}"', f'CREATE DATABASE "{self.name}"')

    def _run(self, *statements):
        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def drop(self):
        self._run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A migrated site with a superuser and a source that has received one Delete Lead carrying markup."""
    var_dir = tmp_path_factory.mktemp("alerts-browser")
    database = ScratchDatabase() if os.environ.get("DATABASE_URL", "").startswith("postgres") else None
    try:
        with running_site(var_dir, DATABASE_URL=database.url if database else None) as found:
            base, source = found["base"], found["source"]
            http_push(base, source, [april_activity(37, name="Delete Lead", primary=EVIL)])
            http_push(base, source, [april_activity(1, primary="/")])
            refuse(base, source)
            yield found
    finally:
        if database:
            database.drop()


def refuse(base, source):
    """A push with a wrong token and a long body: the superuser's refused-requests page has one to show."""
    body = json.dumps({"munchkinId": "123-ABC-456", "activities": [], "note": "z" * 6000 + EVIL}).encode()
    status, _, _ = http_post(base, source, body, token="not-it", query="?token=not-it&page=1")
    assert status == 401


@pytest.fixture
def page(site, browser):
    context = browser.new_context(timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.urls, page.errors = [], []
    page.on("request", lambda request: page.urls.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    log_in(page, site["base"], "/alerts/rules/")
    yield page
    context.close()


def visible(page, field_name):
    return page.is_visible(f".field:has([name={field_name}]) label")


def test_a_rule_from_a_template_is_previewed_saved_and_listed(site, page):
    base = site["base"]
    page.click("button[data-preset=delete-lead]")
    page.wait_for_url(base + "/alerts/rules/new/?preset=delete-lead")
    assert page.input_value("input[name=name]") == "Lead deleted"
    assert page.input_value("input[name='cond-0-value']") == "37"
    # Fields that mean nothing for the kind are hidden, and come back with a kind that uses them.
    assert not visible(page, "threshold") and not visible(page, "watch_list")
    page.select_option("select[name=kind]", "threshold")
    assert visible(page, "threshold") and visible(page, "window_minutes")
    page.select_option("select[name=kind]", "match")
    assert not visible(page, "threshold")
    assert page.evaluate("document.querySelector('input.viewer-zone').value") in KOLKATA
    # A condition row added by the script is numbered on from the formset's rows.
    rows = page.input_value("#id_cond-TOTAL_FORMS")
    page.click("button[data-add-row=cond]")
    assert int(page.input_value("#id_cond-TOTAL_FORMS")) == int(rows) + 1
    assert page.is_visible(f"input[name='cond-{rows}-path']")

    page.fill("input[name='preview-hours']", "2")
    page.click("#preview-button")
    page.wait_for_selector("#preview-summary")
    assert "It would have fired 1 time" in page.inner_text("#preview-summary")
    assert page.inner_text("#preview-table tbody").count(EVIL) == 1  # the markup, as text
    wait_for(page, "document.querySelector('#preview-figure .main-svg') !== null")
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("document.querySelectorAll('#preview-table img').length") == 0

    page.click("#save-button")
    page.wait_for_url(f"{base}/alerts/rules/*/")
    assert "Rule “Lead deleted” created." in page.inner_text("ul.messages")
    assert page.inner_text("#changes").count("ada") == 1
    page.goto(base + "/alerts/rules/")
    assert "Lead deleted" in page.inner_text("#rules")
    assert all(url.startswith(base) for url in page.urls), [u for u in page.urls if not u.startswith(base)]
    assert page.errors == []


def test_an_alert_with_markup_in_a_sample_shows_it_as_text(site, page):
    base = site["base"]
    rule = (
        "from alerts.models import Rule; "
        "Rule.objects.get_or_create(name='Lead deleted', defaults={'kind': 'match', "
        "'conditions': [{'path': 'activity_type_id', 'op': 'eq', 'value': 37}]})"
    )
    manage(site["env"], "shell", "-c", rule)
    manage(site["env"], "shell", "-c", "from alerts import evaluate; evaluate.catch_up()")
    page.goto(base + "/alerts/")
    page.click("#open-alerts a:has-text('Lead deleted')")  # an event alert stays open (firing) until it closes
    page.wait_for_url(f"{base}/alerts/*/")
    cells = page.eval_on_selector_all("#samples tbody td", "cells => cells.map(c => c.textContent)")
    assert EVIL in cells
    assert page.evaluate("document.querySelectorAll('#samples img').length") == 0
    assert page.evaluate("window.__pwned") is None
    # Times are shown in the viewer's zone, not as the UTC the server wrote.
    assert page.inner_text(".zone-note .viewer-zone-name") in KOLKATA
    first_time = page.eval_on_selector("#timeline time", "node => node.textContent")
    assert not first_time.endswith("UTC")
    page.click("a:has-text('Silence this alert')")
    assert page.input_value("input[name='match-0-value']") == "Lead deleted"
    assert page.errors == []
    assert all(url.startswith(base) for url in page.urls)


def test_an_alert_appears_live_on_the_overview_and_stays_after_a_reload(site, page):
    base = site["base"]
    page.goto(base + "/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    assert "12 bounces" not in page.inner_text("#firing-alerts")
    announce = (
        "from django.utils import timezone; from alerts import announce; from alerts.models import Alert, Rule; "
        "from streams.models import Source; now = timezone.now(); "
        f"rule = Rule.objects.create(name={EVIL!r}, kind='threshold', severity='critical'); "
        "alert = Alert.objects.create(rule=rule, source=Source.objects.get(), state='firing', severity='critical', "
        "started_at=now, fired_at=now, summary='12 bounces in 5 minutes'); announce.alerts_changed([alert])"
    )
    manage(site["env"], "shell", "-c", announce)
    wait_for(page, "document.getElementById('firing-alerts').textContent.includes('12 bounces')")
    assert not page.is_hidden("#firing-alerts")
    row = page.inner_text("#firing-alerts tbody tr:first-child")  # firing comes before fired event alerts
    assert EVIL in row and "12 bounces in 5 minutes" in row and "firing" in row
    assert page.evaluate("document.querySelectorAll('#firing-alerts img').length") == 0
    assert page.evaluate("window.__pwned") is None

    page.reload()  # the snapshot has it too
    wait_for(page, "document.getElementById('firing-alerts').textContent.includes('12 bounces')")
    assert EVIL in page.inner_text("#firing-alerts tbody")
    assert page.errors == []
    assert all(url.startswith(base) for url in page.urls)


def test_the_alerts_page_shows_new_alerts_without_reloading(site, page):
    base = site["base"]
    page.goto(base + "/alerts/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    page.evaluate("window.__sameDocument = true")
    announce = (
        "from django.utils import timezone; from alerts import announce; from alerts.models import Alert, Rule; "
        "from streams.models import Source; now = timezone.now(); "
        "rule = Rule.objects.create(name='Bounces up', kind='threshold', severity='warning'); "
        "alerts = [Alert.objects.create(rule=rule, group_key=str(n), source=Source.objects.get(), state='firing', "
        "severity='warning', started_at=now, fired_at=now, summary=f'{n} bounces {n}') for n in (31, 32)]; "
        "announce.alerts_changed(alerts)"
    )
    manage(site["env"], "shell", "-c", announce)
    wait_for(page, "document.getElementById('open-panel').textContent.includes('32 bounces 32')")
    assert "31 bounces 31" in page.inner_text("#open-panel")
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded
    assert not page.inner_text("#open-panel time").endswith("UTC")  # times still in the viewer's zone
    screenshot(page, "alerts-live")
    assert page.errors == []


def test_the_overview_shows_open_alerts_compactly_and_an_event_alert_is_resolved_by_hand(site, page):
    base = site["base"]
    opened = (
        "from django.utils import timezone; from alerts import announce; from alerts.models import Alert, Rule; "
        "from streams.models import Source; now = timezone.now(); "
        "rule = Rule.objects.create(name='Many', kind='threshold', severity='info'); "
        "alerts = [Alert.objects.create(rule=rule, group_key=f'm{n}', source=Source.objects.get(), state='firing', "
        "severity='info', started_at=now, fired_at=now, summary=f'many {n}') for n in range(4)]; "
        "announce.alerts_changed(alerts)"
    )
    manage(site["env"], "shell", "-c", opened)
    rule = (
        "from alerts.models import Rule; "
        "Rule.objects.get_or_create(name='Lead deleted', defaults={'kind': 'match', 'severity': 'critical', "
        "'conditions': [{'path': 'activity_type_id', 'op': 'eq', 'value': 37}]})"
    )
    manage(site["env"], "shell", "-c", rule)
    http_push(base, site["source"], [april_activity(37, name="Delete Lead", primary="x")])
    manage(site["env"], "shell", "-c", "from alerts import evaluate; evaluate.catch_up()")
    page.goto(base + "/")
    wait_for(page, "document.querySelectorAll('#firing-alerts tbody tr').length === 3")
    more = page.inner_text("#firing-alerts .more")
    assert more.startswith("and ") and more.endswith(" more")
    # The charts stay in view: the rate chart starts within the first screen.
    assert page.evaluate("document.getElementById('rate-chart').getBoundingClientRect().top < window.innerHeight")
    severities = page.eval_on_selector_all("#firing-alerts tbody td.severity", "cells => cells.map(c => c.textContent)")
    order = {"critical": 0, "warning": 1, "info": 2}
    assert [order[s] for s in severities] == sorted(order[s] for s in severities)  # the most severe first
    screenshot(page, "overview-open-alerts")

    page.goto(base + "/alerts/")
    row = page.locator("#open-alerts tr", has_text="Lead deleted").first
    assert "Firing" in row.inner_text()
    row.locator("button[name=close]").click()
    page.wait_for_load_state()
    assert "Resolved: the next match opens a new alert." in page.inner_text("ul.messages")
    assert "Lead deleted" not in page.inner_text("#open-panel")
    assert page.errors == []


def page_paths(site):
    """Every page a person opens (the admin's own pages aside), with ids from what the site holds."""
    found = manage(
        site["env"],
        "shell",
        "-c",
        "import json; from alerts.models import Alert, Rule; "
        "from streams.models import Event; "
        "print(json.dumps([Alert.objects.order_by('-id').values_list('id', flat=True).first(), "
        "Rule.objects.order_by('id').values_list('id', flat=True).first(), "
        "Event.objects.filter(activity_type_id=37).values_list('id', flat=True).first()]))",
    )
    alert_id, rule_id, event_id = json.loads(found.strip().splitlines()[-1])
    source_id = site["source"]["id"]
    return {
        "overview": "/", "leads": "/leads/", "lead": f"/leads/{source_id}/7/", "audit": "/audit/",
        "notifications": "/notifications/", "setup": "/setup/", "refused": f"/setup/{source_id}/refused/",
        "alerts": "/alerts/",
        "alert": f"/alerts/{alert_id}/", "rules": "/alerts/rules/", "rule": f"/alerts/rules/{rule_id}/",
        "rule-new": "/alerts/rules/new/?preset=delete-lead", "silences": "/alerts/silences/",
        "destinations": "/alerts/destinations/", "destination-new": "/alerts/destinations/new/",
        "mute-windows": "/alerts/mute-windows/", "watch-lists": "/alerts/watch-lists/",
        "event": f"/events/{event_id}/", "events": "/events/?range=7d&text=onerror",
    }  # fmt: skip


def test_no_page_scrolls_sideways_on_a_phone(site, browser):
    context = browser.new_context(viewport=PHONE, timezone_id="Asia/Kolkata")
    page = context.new_page()
    log_in(page, site["base"])
    # A rule with a long change history (the page used to grow 15,000 px tall at this width).
    history = (
        "from alerts.models import Rule, RuleChange; "
        "rule = Rule.objects.order_by('id').first() or Rule.objects.create(name='Long history', kind='match'); "
        "RuleChange.objects.bulk_create([RuleChange(rule=rule, rule_name=rule.name, action='changed', "
        "changes={'description': ['x' * 400, 'y' * 400], 'conditions': [[{'path': 'a' * 80}], []]}) "
        "for _ in range(30)])"
    )
    manage(site["env"], "shell", "-c", history)
    wide = {}
    for name, path in page_paths(site).items():
        page.goto(site["base"] + path)
        page.wait_for_load_state("networkidle")
        screenshot(page, f"phone-{name}")
        wide[name] = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if name == "rule":
            assert page.evaluate("document.getElementById('changes').getBoundingClientRect().height") < 4000
        # Every link of the header is on the screen (Alerts, Setup and Admin were cut off).
        assert page.evaluate(
            "[...document.querySelectorAll('header.top a')].every(a => a.getBoundingClientRect().right <= innerWidth)"
        )
    assert {name: px for name, px in wide.items() if px > 0} == {}
    context.close()


def test_every_page_on_a_laptop_for_the_artefacts(site, browser):
    context = browser.new_context(viewport=WIDE, timezone_id="Asia/Kolkata")
    page = context.new_page()
    log_in(page, site["base"])
    for name, path in page_paths(site).items():
        page.goto(site["base"] + path)
        page.wait_for_load_state("networkidle")
        screenshot(page, f"wide-{name}")
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, name
    # The latest-events table shows its Detail column (it was clipped with no visible scrollbar).
    page.goto(site["base"] + "/")
    wait_for(page, "document.querySelectorAll('#feed tbody tr').length > 0")
    assert page.evaluate(
        """() => { const box = document.querySelector('#feed').closest('.scroll').getBoundingClientRect();
        const detail = document.querySelector('#feed thead th:last-child').getBoundingClientRect();
        return detail.right <= box.right + 1; }"""
    )
    context.close()


def test_the_event_search_and_refused_pages_in_dark_mode_wide_and_on_a_phone(site, browser):
    paths = {name: path for name, path in page_paths(site).items() if name in ("event", "events", "refused")}
    for size, viewport in (("wide", WIDE), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport, timezone_id="Asia/Kolkata", color_scheme="dark")
        page = context.new_page()
        log_in(page, site["base"])
        for name, path in paths.items():
            page.goto(site["base"] + path)
            page.wait_for_load_state("networkidle")
            screenshot(page, f"dark-{size}-{name}")
            assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, (size, name)
            # No light box left on the dark page: every panel, payload and table is on a dark surface.
            light = page.evaluate(LIGHT_BOXES)
            assert light == [], (size, name, light)
            assert page.inner_text("#zone") in KOLKATA  # times in the viewer's zone, as on every page
            assert page.evaluate(LOCALISED), (size, name)
        context.close()


# Every time shown was rewritten from the server's ISO text into the viewer's zone.
LOCALISED = """() => { const times = [...document.querySelectorAll('main time[datetime]')];
  return times.length > 0 && times.every(t => t.textContent !== t.getAttribute('datetime')); }"""
# The elements drawn on a light background (every channel above 200) while the page is dark.
LIGHT_BOXES = """() => [...document.querySelectorAll('main *')].filter(node => {
  const m = getComputedStyle(node).backgroundColor.match(/\\d+/g);
  return m && (m.length < 4 || Number(m[3]) > 0) && m.slice(0, 3).every(c => Number(c) > 200);
}).map(node => node.tagName + (node.id ? '#' + node.id : '') + '.' + node.className)"""
