"""The overview in real headless Chromium against real daphne processes: live updates, escaping, no
request off the machine, reconnection and re-sync.
"""

import contextlib
import json
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from dashboard.health import LAG_SAMPLE
from tests.browser import WAIT_MS, needs_chromium, prepare, wait_for, watch
from tests.conftest import KeyPair
from tests.ingest import april_activity, http_push
from tests.processes import BIN, ROOT, _wait_until_listening, free_port, http, manage, stop_embedded_redis
from tests.screenshots import PHONE, screenshot

SOURCE_NAME = "Acme <b>EMEA</b>"
EVIL = '<img src=x onerror="window.__pwned=1">'
EVIL_SCRIPT = "<script>window.__pwned=2</script>"

SIGNER = KeyPair()

pytestmark = [
    pytest.mark.slow,
    needs_chromium,
]


@contextlib.contextmanager
def daphne_on(env, port):
    """A real daphne on a given loopback port (so one can stop and start it again at the same address)."""
    log = open(Path(env["FLUXO_VAR_DIR"]) / f"daphne-{port}.log", "a")  # noqa: SIM115
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "fluxo.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_listening(port, process, log.name)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two web processes on one database and Redis, an admin, and a source."""
    var_dir = tmp_path_factory.mktemp("dashboard-browser")
    # Adobe I/O deliveries are verified against a key pinned on the source (no key host needed).
    env, source = prepare(var_dir, source_name=SOURCE_NAME, pinned_key=SIGNER.pem.decode())
    try:
        with daphne_on(env, free_port()) as base, daphne_on(env, free_port()) as other:
            yield {"env": env, "base": base, "other": other, "source": source}
    finally:
        stop_embedded_redis(var_dir)


@pytest.fixture
def page(browser, logged_in):
    context = browser.new_context(timezone_id="Asia/Kolkata", storage_state=logged_in)
    page = watch(context.new_page())
    yield page
    context.close()


def wait_for_frame_with(page, text):
    for _ in range(WAIT_MS // 50):
        if any(text in frame for frame in page.frames_received):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"no frame carried {text!r}")


_guids = iter(range(10**6))


def push(site, *activities, base=None):
    """Activities to the site's source, through its first web process unless ``base`` is the other's."""
    return http_push(base or site["base"], site["source"], activities)


def open_overview(page, site, base=None):
    base = base or site["base"]
    page.goto(base + "/")
    assert page.url == base + "/"
    wait_until_live(page)


def wait_until_live(page, timeout=WAIT_MS):
    wait_for(page, "document.getElementById('live-status').textContent === 'live'", timeout=timeout)
    wait_for(page, "document.getElementById('rate-chart').data !== undefined", timeout=timeout)


def charted(page):
    """Events per minute over every trace and bucket of the chart, as drawn."""
    return page.evaluate(
        "() => document.getElementById('rate-chart').data.reduce((s, t) => s + t.y.reduce((a, b) => a + b, 0), 0)"
    )


def wait_for_charted(page, at_least):
    wait_for(
        page,
        "n => document.getElementById('rate-chart').data.reduce((s, t) => s + t.y.reduce((a, b) => a + b, 0), 0) >= n",
        arg=at_least,
        timeout=WAIT_MS,
    )


def feed_texts(page):
    return page.eval_on_selector_all("#feed tbody td", "cells => cells.map(c => c.textContent)")


def test_the_chart_totals_and_feed_update_live_without_reloading(site, page):
    open_overview(page, site)
    page.evaluate("window.__sameDocument = true")
    before = charted(page)
    push(
        site,
        april_activity(1, primary="/live-1"),
        april_activity(1, primary="/live-2"),
        april_activity(11, primary="/live-3", name="Click Email"),
    )
    wait_for_charted(page, before + 3)
    wait_for(page, "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/live-3')")
    assert page.evaluate("window.__sameDocument") is True
    assert {"/live-1", "/live-2", "/live-3"} <= set(feed_texts(page))
    legend = page.eval_on_selector_all("#rate-chart .legendtext", "nodes => nodes.map(n => n.textContent)")
    assert {"Visit Webpage", "Click Email"} <= set(legend)
    assert int(page.inner_text("#total-events").replace(",", "")) >= 3
    health = page.eval_on_selector_all("#health tbody tr:first-child td", "cells => cells.map(c => c.textContent)")
    assert health[0] == SOURCE_NAME
    assert health[2] == "receiving"
    assert page.errors == []


def test_with_two_web_processes_each_socket_gets_each_batch_once(site, page):
    open_overview(page, site)
    # A second tab on the other process: both processes' ticks now watch the source.
    second = watch(page.context.new_page())
    open_overview(second, site, base=site["other"])
    before = [charted(page), charted(second)]
    push(
        site,
        april_activity(1, primary="/two-processes-1"),
        april_activity(1, primary="/two-processes-2"),
        base=site["other"],
    )
    push(site, april_activity(1, primary="/two-processes-3"))
    for tab, start in zip((page, second), before, strict=True):
        wait_for(tab, "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/two-processes-3')")
        wait_for_charted(tab, start + 3)
    # One more batch: by the time it shows, any doubled delivery of the first two would have too.
    push(site, april_activity(1, primary="/two-processes-4"))
    for tab, start in zip((page, second), before, strict=True):
        wait_for_charted(tab, start + 4)
        assert charted(tab) == pytest.approx(start + 4)


def test_untrusted_text_shows_as_text_and_runs_nowhere(site, page):
    open_overview(page, site)
    custom_name = '<img src=x onerror="window.__pwned=3">Webinar'
    push(
        site, april_activity(1, primary=EVIL_SCRIPT, lead=EVIL), april_activity(100001, primary=EVIL, name=custom_name)
    )
    wait_for(page, "t => [...document.querySelectorAll('#feed td')].some(td => td.textContent === t)", arg=EVIL_SCRIPT)
    texts = feed_texts(page)
    assert EVIL in texts and EVIL_SCRIPT in texts and custom_name in texts
    legend = page.eval_on_selector_all("#rate-chart .legendtext", "nodes => nodes.map(n => n.textContent)")
    assert custom_name in legend
    assert page.locator("#feed img, #feed script, #rate-chart img, #top-types img").count() == 0
    assert page.evaluate("window.__pwned") is None
    # After a reload the same text comes from the snapshot instead of the socket: still only text.
    page.reload()
    wait_for(page, "document.getElementById('live-status').textContent === 'live'", timeout=WAIT_MS)
    wait_for(page, "t => [...document.querySelectorAll('#feed td')].some(td => td.textContent === t)", arg=EVIL_SCRIPT)
    assert page.locator("#feed img, #rate-chart img, #top-types img, #health img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == []


def test_no_request_leaves_the_machine(site, page):
    open_overview(page, site)
    push(site, april_activity(1, primary="/local-only"))
    wait_for(page, "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/local-only')")
    page.select_option("#range", "7d")
    wait_for(page, "document.getElementById('rate-chart').layout.uirevision === 'rate-7d'")
    assert page.urls
    assert {urlsplit(url).hostname for url in page.urls} == {"127.0.0.1"}
    assert any(re.search(r"/static/vendor/plotly\.min\.[0-9a-f]{12}\.js$", url) for url in page.urls)
    assert any(url.startswith("ws://127.0.0.1") for url in page.urls)


def test_times_are_shown_in_the_viewer_s_time_zone(site, page):
    open_overview(page, site)
    zone = page.inner_text("#zone")
    assert zone in ("Asia/Kolkata", "Asia/Calcutta")  # ICU may name the zone by its older alias
    assert any(f"tz={zone.replace('/', '%2F')}" in url for url in page.urls if "/api/v1/overview" in url)
    push(site, april_activity(1, primary="/what-time"))
    wait_for(page, "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/what-time')")
    last_bar = page.evaluate("document.getElementById('rate-chart').data[0].x.slice(-1)[0]")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: a zone whose minutes differ from UTC's
    assert last_bar in {(now + timedelta(minutes=d)).astimezone(kolkata).strftime("%Y-%m-%d %H:%M:00") for d in (-1, 0)}


def test_drawing_pauses_while_the_tab_is_hidden_and_catches_up_when_shown(site, page):
    open_overview(page, site)
    before = charted(page)
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    assert page.inner_text("#live-status") == "paused while the tab is hidden"
    push(site, april_activity(1, primary="/while-hidden"))
    wait_for_frame_with(page, "/while-hidden")
    page.wait_for_timeout(1000)  # four redraw periods: the frame waits in the buffer meanwhile
    assert "/while-hidden" not in feed_texts(page)
    assert charted(page) == pytest.approx(before)
    page.evaluate(
        """() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    wait_for(page, "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/while-hidden')")
    wait_for_charted(page, before + 1)


def test_after_its_server_restarts_the_page_reconnects_and_resyncs(site, page):
    port = free_port()
    with daphne_on(site["env"], port) as base:
        open_overview(page, site, base=base)
        before = charted(page)
    wait_for(page, "document.getElementById('live-status').textContent.startsWith('reconnecting')", timeout=WAIT_MS)
    # While the page's process is away, events arrive through another one: no delta reaches the page.
    push(
        site, april_activity(1, primary="/while-away-1"), april_activity(1, primary="/while-away-2"), base=site["other"]
    )
    # The badge does not claim the page is current: away for over 10 s, it says since when it is stale.
    wait_for(page, "document.getElementById('live-status').textContent.startsWith('stale since')", timeout=WAIT_MS)
    screenshot(page, "overview-stale")
    with daphne_on(site["env"], port):
        wait_until_live(page, timeout=WAIT_MS + 30000)  # the backoff grows to 30 s at most
        wait_for(
            page,
            "[...document.querySelectorAll('#feed td')].some(td => td.textContent === '/while-away-2')",
            timeout=WAIT_MS,
        )
        wait_for_charted(page, before + 2)


def test_the_lead_tail_shows_only_what_its_filters_ask_for_live_and_links_to_the_lead(site, page):
    page.goto(site["base"] + "/leads/?type=13")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    change = april_activity(13, primary=EVIL, lead=4242, name="Change Data Value")
    change["attributes"] = [
        {"name": "Attribute Name", "value": "City"},
        {"name": "Old Value", "value": EVIL_SCRIPT},
        {"name": "New Value", "value": "Paris"},
    ]
    push(site, *[april_activity(1, primary=f"/noise-{i}") for i in range(60)], change)
    wait_for(page, "t => [...document.querySelectorAll('#tail td')].some(td => td.textContent === t)", arg=EVIL)
    shown = page.eval_on_selector_all("#tail tbody td:nth-child(4)", "cells => cells.map(c => c.textContent)")
    assert set(shown) == {"Change Data Value"}
    page.click("#tail a:text('4242')")
    page.wait_for_url(f"{site['base']}/leads/{site['source']['id']}/4242/")
    assert f"City: {EVIL_SCRIPT} → Paris" in page.inner_text("#timeline")
    assert page.locator("#timeline img, #timeline script").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == [] and page.errors == []


def post_io(site, *elements):
    body = json.dumps(list(elements)).encode()
    headers = {"Content-Type": "application/json", "x-adobe-digital-signature-1": SIGNER.sign(body)}
    status, _, answer = http("POST", site["base"] + site["source"]["endpoints"]["adobe_io"], body, headers)
    assert status == 200, answer
    return json.loads(answer)


def io_event(type_suffix, data):
    body = {"specversion": "1.0", "type": "com.adobe.platform.marketo." + type_suffix, "source": "urn:mlm",
            "time": "2026-04-20T18:43:56Z", "data": {"munchkinId": "123-ABC-456", **data}}  # fmt: skip
    return {"eventid": f"browser-io-{next(_guids)}", "event": {"body": body}}


def test_the_audit_page_shows_changes_live_and_login_failures_stand_out(site, page):
    page.goto(site["base"] + "/audit/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    post_io(
        site,
        io_event("audit.user.email", {"componentType": "Email", "componentId": 5, "eventAction": "edit",
                                      "userId": EVIL}),
        io_event("audit.user.login", {"componentType": "Login", "componentId": 0, "eventAction": "login failure",
                                      "userId": "mallory@x.io"}),
    )  # fmt: skip
    wait_for(page, "[...document.querySelectorAll('#feed tr.alert td')].some(td => td.textContent === 'mallory@x.io')")
    assert EVIL in page.eval_on_selector_all("#feed td", "cells => cells.map(c => c.textContent)")
    # The counters and the heat map follow from a refreshed snapshot.
    wait_for(page, "document.getElementById('login-failures').classList.contains('some')")
    wait_for(
        page,
        "t => (document.getElementById('heatmap').data[0].y || []).includes(t)",
        arg=EVIL.replace("<", "&lt;").replace(">", "&gt;"),
    )
    screenshot(page, "audit-heatmap")
    assert page.locator("#feed img, #heatmap img, #people img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == [] and page.errors == []


def test_the_notifications_page_shows_the_quota_and_aborts_live(site, page):
    page.goto(site["base"] + "/notifications/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    post_io(
        site,
        io_event("notification.web_services", {"componentType": "web_services", "subType": "dailyQuota",
                                               "eventAction": {"dailyQuota": 50000, "percent": 91}}),
        io_event("notification.campaign_abort", {"componentType": "campaign_abort", "subType": "user_campaign_abort",
                                                 "eventAction": {"campaignId": 777, "userId": EVIL}}),
    )  # fmt: skip
    wait_for(page, "document.getElementById('gauge').data && document.getElementById('gauge').data[0].value === 91")
    wait_for(page, "t => [...document.querySelectorAll('#problems td')].some(td => td.textContent === t)", arg=EVIL)
    assert "Campaign aborted" in page.inner_text("#problems")
    assert page.evaluate("window.__pwned") is None
    assert page.dialogs == [] and page.errors == []


def health_cells(page, name=SOURCE_NAME):
    return page.evaluate(
        "name => [...document.querySelectorAll('#health tbody tr')].map(tr => [...tr.cells].map(c => c.textContent))"
        ".find(cells => cells[0] === name)",
        name,
    )


def snapshots_requested(page):
    return sum("/api/v1/overview" in url for url in page.urls)


def test_stream_health_follows_the_deltas_without_a_new_snapshot(site, page):
    open_overview(page, site)
    snapshots = snapshots_requested(page)
    before = health_cells(page)
    per_minute, duplicates = float(before[4]), int(before[6])
    # A whole lag sample of events that just happened: p50 and p95 are seconds, not the earlier tests'
    # April activities, whatever day the suite runs on.
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    again = april_activity(1, primary="/health-dup", activityDate=now)
    push(site, *[april_activity(1, primary=f"/health-{i}", activityDate=now) for i in range(LAG_SAMPLE - 1)], again)
    push(site, again)  # stored once: a duplicate, and no batch of its own
    wait_for(page, "n => Number(document.querySelector('#health tbody td.per-minute').textContent) >= n",
             arg=per_minute + 2 - 0.01)  # fmt: skip
    wait_for(page, "n => Number(document.querySelector('#health tbody tr').cells[6].textContent) >= n",
             arg=duplicates + 1)  # fmt: skip
    after = health_cells(page)
    assert re.fullmatch(r"[0-9.]+ s / [0-9.]+ s", after[5])  # a lag p50 / p95 from the deltas' sample
    assert after[2] == "receiving"
    assert snapshots_requested(page) == snapshots  # all of it from the socket
    assert page.errors == []


def local_minute(moment, zone="Asia/Kolkata"):
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def test_a_custom_range_that_holds_now_fills_up_live(site, page):
    open_overview(page, site)
    now = datetime.now(UTC)
    page.select_option("#range", "custom")
    page.fill("#since", local_minute(now - timedelta(hours=1)))
    page.fill("#until", local_minute(now + timedelta(hours=1)))
    page.click("#apply-range")
    wait_for(page, "document.getElementById('rate-chart').layout.uirevision.startsWith('rate-custom-')")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    before = charted(page)
    push(site, april_activity(1, primary="/custom-live-1"), april_activity(1, primary="/custom-live-2"))
    wait_for_charted(page, before + 2)  # minute buckets: events per minute add up to the events
    assert page.evaluate("document.getElementById('rate-chart').data[0].x.length") == 120  # it did not slide


def tail_rows(page):
    return page.eval_on_selector_all("#tail tbody td:nth-child(6)", "cells => cells.map(c => c.textContent)")


def test_the_lead_tail_has_a_range_and_a_past_one_takes_nothing_live(site, page):
    page.goto(site["base"] + "/leads/?range=custom&since=2020-01-01T00:00&until=2020-01-02T00:00")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    assert page.input_value("#range") == "custom"
    assert page.is_visible("#custom-range")
    assert tail_rows(page) == []
    push(site, april_activity(1, primary="/tail-range-1"))
    wait_for_frame_with(page, "/tail-range-1")
    page.wait_for_timeout(1000)  # four redraw periods
    assert tail_rows(page) == []
    page.select_option("#range", "1h")
    wait_for(page, "[...document.querySelectorAll('#tail td')].some(td => td.textContent === '/tail-range-1')")
    assert "range=1h" in page.url
    push(site, april_activity(1, primary="/tail-range-2"))
    wait_for(page, "[...document.querySelectorAll('#tail td')].some(td => td.textContent === '/tail-range-2')")
    assert page.errors == []


# Last: it adds a source to the module's site.
def test_a_source_added_while_the_overview_is_open_appears_without_reloading(site, page):
    open_overview(page, site)
    page.evaluate("window.__sameDocument = true")
    name = "Late <i>EMEA</i>"
    manage(site["env"], "add_source", name, "--munchkin-id", "222-BBB-222", "--json")
    wait_for(page, "n => [...document.querySelectorAll('#health td')].some(td => td.textContent === n)", arg=name,
             timeout=WAIT_MS)  # fmt: skip
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#health i").count() == 0
    assert page.errors == []


def test_health_says_what_duplicates_are_and_its_rate_is_the_server_s(site, page):
    open_overview(page, site)
    # A whole lag sample of April activities (an earlier test's fresh ones leave it).
    push(site, *[april_activity(1, primary=f"/rate-{i}") for i in range(LAG_SAMPLE)])
    wait_for(page, "t => [...document.querySelectorAll('#feed td')].some(td => td.textContent === t)",
             arg=f"/rate-{LAG_SAMPLE - 1}")  # fmt: skip
    shown = float(health_cells(page)[4])
    # The events occurred in April: a lag of months reads in days, not in millions of seconds.
    assert re.fullmatch(r"\d+ days / \d+ days", health_cells(page)[5]), health_cells(page)[5]
    server = page.evaluate(
        "() => fetch('/api/v1/overview?source=all&range=15m').then(r => r.json()).then(s => s.health[0].per_minute)"
    )
    assert abs(shown - server) <= 0.05 * max(server, 1)  # the page and the server compute it alike
    page.click("#health th a:text('Duplicates')")
    page.click("#health-help summary")
    assert "harmless" in page.inner_text("#health-help")
    screenshot(page, "overview-health-help")


def test_the_quota_chart_follows_the_range_and_the_gauge_reads_whole(site, page):
    page.goto(site["base"] + "/notifications/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    page.select_option("#range", "1h")
    # The selected range, not Jan to Nov 2000 (the range follows the choice of "Last hour").
    wait_for(page, "(r => r && Date.parse(r[1]) - Date.parse(r[0]) === 3600000)"
                   "(document.getElementById('quota-line').layout?.xaxis?.range)")  # fmt: skip
    span = page.evaluate("document.getElementById('quota-line').layout.xaxis.range")
    assert datetime.strptime(span[1], "%Y-%m-%d %H:%M:%S").year == datetime.now(UTC).year
    # Every text of the gauge lies inside its box (the "100" was clipped).
    inside = page.evaluate(
        """() => { const box = document.getElementById('gauge').getBoundingClientRect();
        const ticks = [...document.querySelectorAll('#gauge svg text')].filter(t => t.textContent.trim());
        return ticks.some(t => t.textContent === '100') && ticks.every(t => { const r = t.getBoundingClientRect();
          return r.left >= box.left && r.right <= box.right && r.top >= box.top; }); }"""
    )
    screenshot(page, "notifications-empty-range")
    assert inside


def test_a_type_keeps_its_colour_live_after_a_new_snapshot_and_on_the_server(site, page):
    from dashboard.figures import colour_of

    open_overview(page, site)
    push(site, april_activity(6, primary="/colour", name="Send Email"))
    find = "() => (document.getElementById('rate-chart').data.find(t => t.name === 'Send Email') || {}).marker"
    wait_for(page, find + " !== undefined")
    key, live = page.evaluate(
        "() => { const t = document.getElementById('rate-chart').data.find(t => t.name === 'Send Email');"
        " return [t.meta.key, t.marker.color]; }"
    )
    assert live == colour_of(key)  # the colour the server gives it
    page.reload()
    wait_until_live(page)
    assert page.evaluate(find + ".color") == live  # the same after a snapshot
    for other in ("activity|x|1", "notification|com.adobe.platform.marketo.notification.x|", "Ümlaut 😀", "other"):
        assert page.evaluate("k => FluxoLive.colourOf(k)", other) == colour_of(other)


def open_event_from(page, selector, text):
    """Click the received time of the row of ``selector`` whose cells hold ``text``; the event page opens."""
    row = page.locator(f"{selector} tbody tr", has_text=text).first
    row.locator("td a[href^='/events/']").first.click()
    page.wait_for_url(re.compile(r".*/events/[0-9]+/\?at=.*"))
    assert text in page.inner_text("#raw")


def test_a_row_of_the_latest_events_or_the_tail_opens_its_event_and_a_search_finds_it(site, page, browser, logged_in):
    big = "123456789012345678901234567890"
    item = april_activity(1, primary="/inspect-me " + EVIL, lead=5151)
    item["attributes"] = [{"name": "Score", "value": 0}]
    body = json.dumps({"munchkinId": "123-ABC-456", "activities": [item]}).replace('"value": 0', f'"value": {big}')
    http_push(site["base"], site["source"], body)  # as written: an integer beyond 64 bits (orjson has none)
    open_overview(page, site)
    wait_for(page, "[...document.querySelectorAll('#feed td')].some(td => td.textContent.startsWith('/inspect-me'))")
    open_event_from(page, "#feed", "/inspect-me")
    assert f'"value": {big}' in page.inner_text("#raw")  # exact, as delivered
    assert "Visit Webpage" in page.inner_text("h1")
    assert "legacy activity push" in page.inner_text("#batch")
    screenshot(page, "wide-event-opened-from-the-feed")
    page.goto(site["base"] + "/leads/?lead=5151")
    wait_for(page, "[...document.querySelectorAll('#tail td')].some(td => td.textContent.startsWith('/inspect-me'))")
    open_event_from(page, "#tail", "/inspect-me")
    event_url = page.url
    # A search by text in the primary attribute, in the form, finds it; its row opens the same page.
    page.goto(site["base"] + "/events/")
    page.fill("#text", "inspect-me")
    page.click("#search button[type=submit]")
    page.wait_for_selector("#results")
    assert page.locator("#results tbody tr").count() == 1
    assert "5151" in page.inner_text("#results")
    screenshot(page, "wide-events-searched")
    open_event_from(page, "#results", "/inspect-me")
    assert page.url == event_url
    assert page.locator("img").count() == 0 and page.evaluate("window.__pwned") is None
    assert page.dialogs == [] and page.errors == []
    # On a phone neither page scrolls sideways.
    phone = browser.new_context(viewport=PHONE, timezone_id="Asia/Kolkata", storage_state=logged_in).new_page()
    for name, url in (("event", event_url), ("events", site["base"] + "/events/?text=inspect-me")):
        phone.goto(url)
        phone.wait_for_load_state("networkidle")
        if name == "events":  # a custom activity type with a long name widens the type list
            phone.evaluate(
                "() => { const o = document.createElement('option'); o.textContent = 'Long custom type '.repeat(8);"
                " document.querySelector('#search select[name=type]').append(o); }"
            )
        screenshot(phone, f"phone-{name}-searched")
        assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, name
    phone.context.close()
