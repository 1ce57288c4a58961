"""The overview page and its JSON snapshot: who sees what, what the numbers say, what is refused."""

import re

import orjson
import pytest

from dashboard import health
from streams import announce
from streams.auth import issue_api_token
from streams.models import Batch
from tests.ingest import april_activity, legacy_post, legacy_push

pytestmark = pytest.mark.django_db

SNAPSHOT = "/api/v1/overview"
VISIT = "com.adobe.platform.marketo.activity.standard.visitwebpage"


# --- Personas -------------------------------------------------------------------------------------------


@pytest.fixture
def acme_events(client, source, api_token, redis_client):
    activities = [
        april_activity(1, marketoGUID="a-1"),
        april_activity(1, marketoGUID="a-2"),
        april_activity(11, name="Click Email", marketoGUID="a-3"),
    ]
    legacy_push(client, source, api_token, activities)
    return source


@pytest.fixture
def eu_events(client, other_source, redis_client):
    secret = april_activity(1, lead=99, primary="secret EU page", marketoGUID="eu-1")
    legacy_push(client, other_source, issue_api_token(other_source), [secret])
    return other_source


def snapshot(client, **params):
    response = client.get(SNAPSHOT, params)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


# --- Access -----------------------------------------------------------------------------------------------


def test_the_overview_page_asks_an_anonymous_visitor_to_log_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_snapshot_answers_an_anonymous_visitor_401_in_json(client, source):
    response = client.get(SNAPSHOT)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_the_snapshot_answers_get_only(client, admin_user):
    client.force_login(admin_user)
    response = client.post(SNAPSHOT)
    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_a_teammate_sees_only_the_sources_shared_with_their_group(client, teammate, acme_events, eu_events):
    client.force_login(teammate)
    found = snapshot(client)
    assert [s["name"] for s in found["sources"]] == ["Acme"]
    assert [h["name"] for h in found["health"]] == ["Acme"]
    assert found["totals"]["events"] == 3
    assert {item["source"] for item in found["feed"]} == {acme_events.id}
    assert "secret EU page" not in orjson.dumps(found).decode()


def test_asking_for_a_source_one_may_not_see_is_a_404_like_one_that_does_not_exist(client, stranger, eu_events):
    client.force_login(stranger)
    assert client.get(SNAPSHOT, {"source": eu_events.id}).status_code == 404
    assert client.get(SNAPSHOT, {"source": 999999}).status_code == 404
    assert snapshot(client)["sources"] == []


def test_a_superuser_sees_every_source_or_one(client, admin_user, acme_events, eu_events):
    client.force_login(admin_user)
    assert snapshot(client)["totals"]["events"] == 4
    only_eu = snapshot(client, source=eu_events.id)
    assert only_eu["totals"]["events"] == 1
    assert [item["detail"] for item in only_eu["feed"]] == ["secret EU page"]


@pytest.mark.parametrize(
    "params",
    [{"range": "1y"}, {"tz": "Nowhere/Else"}, {"source": "1 OR 1=1"}, {"sourc": "1"}, {"range": "custom"}],
)
def test_a_bad_parameter_is_a_400_that_says_which(client, admin_user, params):
    client.force_login(admin_user)
    response = client.get(SNAPSHOT, params)
    assert response.status_code == 400
    assert response.json()["error"] in ("bad_parameter", "unknown_parameter")


# --- What it shows --------------------------------------------------------------------------------------


def test_the_live_window_charts_what_was_just_received_by_type(client, admin_user, acme_events):
    client.force_login(admin_user)
    found = snapshot(client, tz="Europe/Paris")
    assert found["window"]["live"] is True
    assert found["window"]["bucket_seconds"] == 60
    assert found["zone"] == "Europe/Paris"
    traces = {t["name"]: t for t in found["figure"]["data"]}
    assert set(traces) == {"Visit Webpage", "Click Email"}
    assert sum(traces["Visit Webpage"]["y"]) == 2
    assert traces["Visit Webpage"]["y"][-1] == 2  # the current minute, the last bar
    assert [t["label"] for t in found["top_types"]] == ["Visit Webpage", "Click Email"]
    assert found["totals"]["by_stream"]["activity"] == 3


def test_the_chart_zooms_its_time_axis_only_and_each_custom_range_is_drawn_whole(client, admin_user, acme_events):
    client.force_login(admin_user)
    layout = snapshot(client)["figure"]["layout"]
    assert layout["yaxis"]["fixedrange"] is True  # a drag picks times (the page's range), not rates
    assert layout["uirevision"] == "rate-15m"  # a sliding range keeps its view across re-syncs
    one = snapshot(client, range="custom", since="2026-04-20T18:00", until="2026-04-20T19:00", tz="Asia/Kolkata")
    again = snapshot(client, range="custom", since="2026-04-20T18:00", until="2026-04-20T19:00", tz="Asia/Kolkata")
    zoomed = snapshot(client, range="custom", since="2026-04-20T18:10", until="2026-04-20T18:20", tz="Asia/Kolkata")
    revisions = [s["figure"]["layout"]["uirevision"] for s in (one, again, zoomed)]
    assert revisions[0] == revisions[1] != revisions[2]


def test_the_overview_page_takes_its_range_and_source_from_its_address(client, admin_user, acme_events):
    client.force_login(admin_user)
    query = {"source": acme_events.id, "range": "custom", "since": "2026-04-20T18:10", "until": "2026-04-20T18:20"}
    html = client.get("/", query).content.decode()
    assert '<option value="custom" selected>' in html
    assert 'value="2026-04-20T18:10"' in html and 'value="2026-04-20T18:20"' in html
    assert f'<option value="{acme_events.id}" selected>' in html
    assert '"eventsUrl": "/events/"' in html  # where the chart's clicks lead


def test_the_feed_lists_the_latest_events_newest_first_with_what_a_person_reads(client, admin_user, acme_events):
    client.force_login(admin_user)
    feed = snapshot(client)["feed"]
    assert [item["label"] for item in feed] == ["Click Email", "Visit Webpage", "Visit Webpage"]
    assert feed[0]["lead"] == "7"
    assert feed[0]["detail"] == "/pricing"
    assert feed[0]["id"] > feed[1]["id"]


def test_the_snapshot_names_the_batches_its_counts_hold(client, admin_user, acme_events):
    client.force_login(admin_user)
    assert snapshot(client)["included"] == {"through": Batch.objects.get().id, "pending": []}


def test_health_counts_duplicates_refusals_and_503s_per_source(client, admin_user, source, api_token, acme_events):
    legacy_push(client, source, api_token, [april_activity(1, marketoGUID="a-1")])  # a duplicate
    assert legacy_post(client, source, "wrong-token", [april_activity(1, marketoGUID="a-9")]).status_code == 401
    announce.unavailable(source.ingest_key)
    client.force_login(admin_user)
    (row,) = snapshot(client)["health"]
    assert row["name"] == "Acme"
    assert row["state"] == "ok"
    assert row["silent_minutes"] == 0
    assert row["accepted"] == 3
    assert row["duplicates"] == 1
    assert row["rejected"] == {"auth": 1, "signature": 0, "malformed": 0, "too_large": 0}
    assert row["unavailable"] == 1
    assert 1.5 <= row["per_minute"] <= 3  # 3 events just now: over at least a minute, at most two
    assert row["lag_p50_s"] > 0
    # What the page keeps the row live with: the rate window's minutes and the lag sample by batch.
    assert sum(n for _minute, n in row["minutes"]) == 3
    batches = set(Batch.objects.values_list("id", flat=True))
    assert len(row["lags"]) == 3 and {lag[0] for lag in row["lags"]} <= batches
    assert snapshot(client)["health_rules"]["rate_window_s"] == 900


def test_a_source_that_never_received_anything_says_so(client, admin_user, source, redis_client):
    client.force_login(admin_user)
    (row,) = snapshot(client)["health"]
    assert (row["state"], row["last_event_at"], row["lag_p50_s"]) == ("never", None, None)


def test_a_source_quiet_for_longer_than_the_limit_is_silent(client, admin_user, source, redis_client):
    quiet_since = "2026-01-01T10:00:00+00:00"
    redis_client.hset(announce.counters_key(source.id), "last_event_at", quiet_since)
    client.force_login(admin_user)
    (row,) = snapshot(client)["health"]
    assert row["state"] == "silent"
    assert row["silent_minutes"] > health.SILENT_AFTER.total_seconds() / 60


def test_a_longer_range_reads_the_rollups_in_coarser_buckets(client, admin_user, acme_events):
    client.force_login(admin_user)
    found = snapshot(client, range="7d")
    assert found["window"]["bucket_seconds"] == 3600
    assert found["window"]["live"] is True
    assert found["totals"]["events"] == 3
    assert sum(sum(t["y"]) for t in found["figure"]["data"]) == pytest.approx(3 / 60, abs=0.001)


def test_a_custom_range_without_the_events_shows_none(client, admin_user, acme_events):
    client.force_login(admin_user)
    found = snapshot(client, range="custom", since="2020-01-01T00:00", until="2020-01-02T00:00")
    assert found["window"]["live"] is False
    assert found["totals"]["events"] == 0


# --- The page ---------------------------------------------------------------------------------------------


def test_the_page_escapes_source_names_and_loads_only_its_own_files(client, admin_user, db):
    from streams.models import Source

    Source.objects.create(name="<img src=x onerror=alert(1)>", munchkin_id="111-AAA-111")
    client.force_login(admin_user)
    response = client.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert re.search(r'/static/vendor/plotly\.min\.[0-9a-f]{12}\.js"', html)
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy


def test_plotly_is_served_from_static_files(client):
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly.js v" in b"".join(response.streaming_content)[:400]
