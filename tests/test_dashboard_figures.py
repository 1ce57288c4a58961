"""Figure specs, labels, ranges and health rules as plain functions: no database, no browser."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dashboard import figures, health, labels, ranges
from dashboard.rollups import TypeCount

VISIT = "com.adobe.platform.marketo.activity.standard.visitwebpage"
CUSTOM = "com.adobe.platform.marketo.activity.custom"
NOW = datetime(2026, 4, 20, 18, 43, 12, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def minute(m):
    return int(datetime(2026, 4, 20, 18, m, tzinfo=UTC).timestamp())


def test_the_live_window_is_the_last_fifteen_minutes_in_minute_buckets_ending_with_the_current_one():
    window = ranges.relative("15m", NOW)
    assert window.live and window.bucket_seconds == 60
    assert (window.since, window.until) == (NOW.replace(minute=29, second=0), NOW.replace(minute=44, second=0))
    assert len(window.bucket_starts()) == 15


@pytest.mark.parametrize(("name", "bucket"), [("1h", 60), ("6h", 300), ("24h", 600), ("7d", 3600), ("30d", 6 * 3600)])
def test_longer_ranges_use_buckets_that_keep_a_chart_under_the_point_limit(name, bucket):
    window = ranges.relative(name, NOW)
    assert window.bucket_seconds == bucket
    assert len(window.bucket_starts()) <= ranges.MAX_BUCKETS


def test_a_custom_range_is_read_in_the_viewer_s_zone():
    window = ranges.custom("2026-04-20T08:00", "2026-04-20T10:00", PARIS)
    assert (window.since, window.until) == (datetime(2026, 4, 20, 6, tzinfo=UTC), datetime(2026, 4, 20, 8, tzinfo=UTC))
    assert not window.live


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"range": "2w"}, "range must be one of"),
        ({"range": "custom", "since": "yesterday", "until": "2026-04-20T10:00"}, "since:"),
        ({"range": "custom", "since": "2026-04-20T10:00", "until": "2026-04-20T09:00"}, "after since"),
        ({"range": "custom", "since": "2020-01-01T00:00", "until": "2026-04-20T09:00"}, "at most"),
    ],
)
def test_a_range_that_cannot_be_drawn_is_refused_with_the_reason(params, message):
    with pytest.raises(ranges.BadRange, match=message):
        ranges.window(params, UTC, NOW)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "x" * 300])
def test_an_unknown_time_zone_is_refused(name):
    with pytest.raises(ranges.BadRange):
        ranges.viewer_zone(name)


def test_activity_types_read_as_marketo_names_and_other_streams_as_words():
    assert labels.type_label("activity", VISIT, 1) == "Visit Webpage"
    assert labels.type_label("activity", CUSTOM, 100001, {100001: "Attended Webinar"}) == "Attended Webinar"
    assert labels.type_label("activity", CUSTOM, 100002) == "Activity type 100002"
    assert labels.type_label("audit", "com.adobe.platform.marketo.audit.user.email", None) == "Audit: user email"
    notification = "com.adobe.platform.marketo.notification.campaign_abort"
    assert labels.type_label("notification", notification, None) == "Campaign abort"
    assert labels.type_label("other", "", None) == "(no type)"


def test_custom_activities_with_different_ids_have_different_keys():
    assert labels.type_key("activity", CUSTOM, 100001) != labels.type_key("activity", CUSTOM, 100002)
    assert labels.type_key("notification", "x", None) == "notification|x|"


def counts_of(*rows):
    return [TypeCount(bucket, "activity", type_, type_id, n) for bucket, type_, type_id, n in rows]


def test_the_rate_figure_stacks_one_bar_trace_per_type_in_events_per_minute():
    window = ranges.Window("custom", NOW.replace(minute=40, second=0), NOW.replace(minute=45, second=0), 60, False)
    counts = counts_of((minute(41), VISIT, 1, 30), (minute(43), VISIT, 1, 6), (minute(43), CUSTOM, 100001, 3))
    names = labels.labels_for([("activity", VISIT, 1)]) | {labels.type_key("activity", CUSTOM, 100001): "Webinar"}
    figure = figures.rate_figure(counts, window, names, UTC)
    assert figure["layout"]["barmode"] == "stack"
    assert [t["name"] for t in figure["data"]] == ["Visit Webpage", "Webinar"]
    visit = figure["data"][0]
    assert visit["type"] == "bar"
    assert visit["meta"] == {"key": labels.type_key("activity", VISIT, 1)}
    assert visit["x"] == [f"2026-04-20 18:{m}:00" for m in range(40, 45)]
    assert visit["y"] == [0, 30, 0, 6, 0]


def test_rates_are_per_minute_whatever_the_bucket():
    window = ranges.relative("24h", NOW)
    bucket = window.bucket_starts()[-1]
    figure = figures.rate_figure(counts_of((bucket, VISIT, 1, 50)), window, {}, UTC)
    assert figure["data"][0]["y"][-1] == 5.0  # 50 events in a 10-minute bucket


def test_times_on_the_axis_are_the_viewer_s_local_times():
    window = ranges.Window("custom", NOW.replace(minute=40, second=0), NOW.replace(minute=42, second=0), 60, False)
    figure = figures.rate_figure(counts_of((minute(40), VISIT, 1, 1)), window, {}, PARIS)
    assert figure["data"][0]["x"] == ["2026-04-20 20:40:00", "2026-04-20 20:41:00"]


def test_beyond_the_trace_limit_the_quietest_types_are_summed_as_other_types():
    window = ranges.Window("custom", NOW.replace(minute=40, second=0), NOW.replace(minute=41, second=0), 60, False)
    counts = counts_of(*[(minute(40), CUSTOM, 100000 + i, 100 - i) for i in range(12)])
    figure = figures.rate_figure(counts, window, {}, UTC, max_traces=5)
    assert len(figure["data"]) == 5
    assert figure["data"][-1]["name"] == figures.OTHER_LABEL
    assert figure["data"][-1]["meta"]["key"] == figures.OTHER_KEY
    assert figure["data"][-1]["y"] == [sum(100 - i for i in range(4, 12))]


def test_no_data_still_gives_an_empty_chart_over_the_window():
    figure = figures.rate_figure([], ranges.relative("15m", NOW), {}, UTC)
    assert figure["data"] == []
    assert figure["layout"]["xaxis"] == {"type": "date", "range": ["2026-04-20 18:29:00", "2026-04-20 18:44:00"]}
    assert figure["layout"]["annotations"][0]["text"] == "No events in this range"


def test_a_type_name_that_carries_markup_is_escaped_for_plotly():
    window = ranges.Window("custom", NOW.replace(minute=40, second=0), NOW.replace(minute=41, second=0), 60, False)
    key = labels.type_key("activity", CUSTOM, 100001)
    figure = figures.rate_figure(
        counts_of((minute(40), CUSTOM, 100001, 1)), window, {key: "<b>x</b><img src=x onerror=alert(1)>"}, UTC
    )
    assert figure["data"][0]["name"] == "&lt;b&gt;x&lt;/b&gt;&lt;img src=x onerror=alert(1)&gt;"


def test_top_types_rank_the_busiest_with_their_share():
    totals = {"a": 30, "b": 60, "c": 10}
    rows = figures.top_types(totals, {"a": "A", "b": "B"}, limit=2)
    assert rows == [
        {"key": "b", "label": "B", "events": 60, "share": 0.6},
        {"key": "a", "label": "A", "events": 30, "share": 0.3},
    ]


def test_a_source_is_silent_after_five_minutes_without_an_event():
    assert health.silence(None, NOW) == {"state": "never", "silent_minutes": None}
    assert health.silence(NOW - timedelta(minutes=2), NOW) == {"state": "ok", "silent_minutes": 2}
    assert health.silence(NOW - timedelta(minutes=17, seconds=5), NOW) == {"state": "silent", "silent_minutes": 17}


def test_lag_percentiles_are_nearest_rank():
    values = sorted(float(v) for v in range(1, 101))
    assert (health.percentile(values, 0.5), health.percentile(values, 0.95)) == (50.0, 95.0)
    assert health.percentile([], 0.5) is None
    assert health.percentile([3.25], 0.95) == 3.2
