"""The overview's activity chart in real Chromium: a bar opens the search listing exactly its type's events
of its bucket, a legend entry those of its type over the range, and a drag across the time axis sets the
page's range (a double-click goes back to the one before)."""

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.browser import needs_chromium, running_site, wait_for, watch
from tests.processes import manage
from tests.screenshots import screenshot

pytestmark = [pytest.mark.slow, needs_chromium]

ZONE = ZoneInfo("Asia/Kolkata")  # UTC+05:30: local minutes differ from UTC's
AUDIT_TYPE = "com.adobe.platform.marketo.audit.user.email"
# Stored as received at given times (the receivers stamp the present); prints the ids of each group.
STORE = """
import json
from datetime import datetime
from streams.models import Event, Source
from tests.ingest import activity, audit, store_at
source = Source.objects.get()
def ids(stored):
    return sorted(Event.objects.filter(batch_id=stored.batch_id).values_list("id", flat=True))
a, b = datetime.fromisoformat({a!r}), datetime.fromisoformat({b!r})
visits = ids(store_at(source, a, [activity(1, name="Visit Webpage", primary="/a") for _ in range(3)]))
clicks = ids(store_at(source, a, [activity(11, name="Click Email") for _ in range(2)]))
audits = ids(store_at(source, a, elements=[audit("Email", "Create")]))
later = ids(store_at(source, b, [activity(1, name="Visit Webpage", primary="/b") for _ in range(4)]))
print(json.dumps({{"visits": visits, "clicks": clicks, "audits": audits, "later": later}}))
"""


def minute(moment):
    return moment.replace(second=0, microsecond=0)


def chart_time(moment):
    """A bucket's start as the chart's axis has it: the viewer's local time."""
    return moment.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two buckets of the last 15 minutes: one with 3 Visit Webpage, 2 Click Email and an audit event, a
    later one with 4 Visit Webpage."""
    with running_site(tmp_path_factory.mktemp("drilldown")) as found:
        a = minute(datetime.now(UTC)) - timedelta(minutes=10)
        b = a + timedelta(minutes=5)
        code = STORE.format(a=(a + timedelta(seconds=20)).isoformat(), b=(b + timedelta(seconds=20)).isoformat())
        found["ids"] = json.loads(manage(found["env"], "shell", "-c", code).strip().splitlines()[-1])
        found["a"], found["b"] = a, b
        yield found


@pytest.fixture
def page(browser, logged_in):
    context = browser.new_context(
        timezone_id="Asia/Kolkata", storage_state=logged_in, viewport={"width": 1280, "height": 900}
    )
    yield watch(context.new_page())
    context.close()


def open_overview(page, site):
    page.goto(site["base"] + "/")
    wait_for(page, "document.getElementById('live-status').textContent === 'live'")
    wait_for(page, "(document.getElementById('rate-chart').data || []).length >= 3")


BAR_CENTRE = """([key, x]) => {
  const chart = document.getElementById('rate-chart');
  const groups = [...chart.querySelectorAll('.barlayer .trace')];
  const group = groups.find(g => g.__data__[0].trace.meta.key === key);
  if (!group) throw new Error('no trace ' + key + ' among ' + groups.map(g => g.__data__[0].trace.meta.key));
  const point = [...group.querySelectorAll('.point')].find(p => p.__data__.p !== undefined &&
    chart._fullLayout.xaxis.d2c(x) === p.__data__.p);
  if (!point) throw new Error('no bar at ' + x + ' among ' + group.__data__.map(d => chart._fullLayout.xaxis.c2d(d.p)));
  const box = point.getBoundingClientRect();
  return [box.left + box.width / 2, box.top + box.height / 2, box.left, box.right];
}"""


def bar(page, key, moment):
    """(x, y, left, right) on the screen of the bar of ``key`` in the bucket starting at ``moment``."""
    return page.evaluate(BAR_CENTRE, [key, chart_time(moment)])


def listed(page):
    page.wait_for_load_state("load")
    return sorted(int(i) for i in page.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.id)"))


def search_params(page):
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def local_input(moment):
    return moment.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")


def test_a_bar_opens_the_search_listing_exactly_its_type_in_its_bucket(site, page):
    open_overview(page, site)
    screenshot(page, "wide-overview-before-a-drill-down")
    x, y, _, _ = bar(page, "activity|com.adobe.platform.marketo.activity.standard.visitwebpage|1", site["a"])
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(r".*/events/\?.*"))
    assert listed(page) == site["ids"]["visits"]  # not the Click Email of that bucket, nor the later visits
    params = search_params(page)
    assert params["stream"] == "activity" and params["type"] == "1" and params["range"] == "custom"
    assert (params["since"], params["until"]) == (local_input(site["a"]), local_input(site["a"] + timedelta(minutes=1)))
    assert page.input_value("#since") == params["since"] and page.input_value("#type") == "1"
    screenshot(page, "wide-events-drilled-down")
    assert page.errors == []


def test_an_audit_bar_opens_its_type_by_its_text_and_the_form_keeps_it(site, page):
    open_overview(page, site)
    x, y, _, _ = bar(page, f"audit|{AUDIT_TYPE}|", site["a"])
    page.mouse.click(x, y)
    page.wait_for_url(re.compile(r".*/events/\?.*"))
    assert listed(page) == site["ids"]["audits"]
    assert page.input_value("#type") == AUDIT_TYPE and page.input_value("#stream") == "audit"
    page.click("#search button[type=submit]")  # the same search again, from the form
    assert listed(page) == site["ids"]["audits"]


def test_a_legend_entry_opens_its_type_over_the_range(site, page):
    open_overview(page, site)
    page.locator("#rate-chart .legend .traces", has_text="Click Email").click()
    page.wait_for_url(re.compile(r".*/events/\?.*"))
    assert listed(page) == site["ids"]["clicks"]
    assert search_params(page)["type"] == "11"


def test_a_drag_across_the_time_axis_sets_the_range_and_a_double_click_goes_back(site, page):
    open_overview(page, site)
    visit = "activity|com.adobe.platform.marketo.activity.standard.visitwebpage|1"
    _, y, start, _ = bar(page, visit, site["a"])
    _, _, _, end = bar(page, visit, site["b"])
    snapshots = sum("/api/v1/overview" in url for url in page.urls)
    page.mouse.move(start - 2, y)
    page.mouse.down()
    page.mouse.move(end + 2, y, steps=8)
    page.mouse.up()
    wait_for(page, "document.getElementById('rate-chart').layout.uirevision.startsWith('rate-custom-')")
    assert page.input_value("#range") == "custom" and page.is_visible("#custom-range")
    since, until = page.input_value("#since"), page.input_value("#until")
    # From the first dragged bucket (or the one before it) to the end of the last one, no more.
    assert since in (local_input(site["a"]), local_input(site["a"] - timedelta(minutes=1)))
    assert until in (local_input(site["b"] + timedelta(minutes=1)), local_input(site["b"] + timedelta(minutes=2)))
    assert sum("/api/v1/overview" in url and "range=custom" in url for url in page.urls) == 1
    assert sum("/api/v1/overview" in url for url in page.urls) == snapshots + 1
    # The chart shows that range: a bar a minute, from its first minute on.
    x = page.evaluate("document.getElementById('rate-chart').data[0].x")
    first = datetime.fromisoformat(since).replace(tzinfo=ZONE)
    assert (
        x[0] == chart_time(first)
        and len(x) == (datetime.fromisoformat(until) - datetime.fromisoformat(since)).seconds // 60
    )
    assert f"since={since.replace(':', '%3A')}" in page.url  # the page's address keeps it (a reload, a link)
    screenshot(page, "wide-overview-zoomed")
    page.mouse.dblclick(*bar(page, visit, site["b"])[:2])
    wait_for(page, "document.getElementById('rate-chart').layout.uirevision === 'rate-15m'")
    assert page.input_value("#range") == "15m"
    assert page.errors == []
