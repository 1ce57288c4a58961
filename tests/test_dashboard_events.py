"""The event page (every field, flags, the raw payload, the batch, the lead around it), the links to it from
every table, and the search across stored events with its CSV."""

import csv
import io
import itertools
import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from dashboard import payloads, search, tail
from streams.models import Batch, Event
from tests.ingest import activity, audit, legacy_push, notification

pytestmark = pytest.mark.django_db
HOSTILE = '</script><img src=x onerror="alert(1)">'
BIG = 123456789012345678901234567890  # beyond 64 bits: a float would lose digits


def event_of(**lookups):
    return Event.objects.get(**lookups)


def page_of(client, event):
    return client.get(f"/events/{event.pk}/", {"at": event.received_at.isoformat()})


# --- The event page --------------------------------------------------------------------------------------


def test_the_event_page_shows_every_field_its_flags_its_batch_and_the_raw_payload_escaped(
    client, source, api_token, teammate
):
    item = activity(46, lead="77", primary=HOSTILE, campaignId=55, campaignName="Spring <b>Send</b>")
    item["activityDate"] = "2026-12-01 10:00:00"  # no zone: flagged time_no_zone
    item["attributes"] = [{"name": "Score", "value": 0}]
    # Written by json, not orjson: orjson cannot write an integer beyond 64 bits.
    body = json.dumps({"munchkinId": source.munchkin_id, "messageId": "msg-1", "activities": [item]})
    legacy_push(client, source, api_token, body.replace('"value": 0', f'"value": {BIG}'))
    client.force_login(teammate)
    event = event_of(lead_id="77")
    response = page_of(client, event)
    assert response.status_code == 200
    html = response.content.decode()
    assert HOSTILE not in html and "<b>Send</b>" not in html
    assert "&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert f"&quot;value&quot;: {BIG}" in html  # pretty-printed (and escaped), the integer exact
    assert "time_no_zone" in html and "taken as UTC" in html
    assert "<th>campaign_id</th><td>55</td>" in html and "<th>primary_attribute_id</th>" in html
    assert "legacy activity push" in html and "1 new, 0 duplicates" in html and "msg-1" in html
    assert f"/leads/{source.pk}/77/" in html
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_an_event_is_found_by_its_id_alone_and_by_a_wrong_received_time_too(client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [activity(1, lead="5")])
    event = event_of(lead_id="5")
    client.force_login(admin_user)
    assert client.get(f"/events/{event.pk}/").status_code == 200
    wrong = (event.received_at - timedelta(hours=5)).isoformat()
    assert client.get(f"/events/{event.pk}/", {"at": wrong}).status_code == 200
    assert client.get(f"/events/{event.pk}/", {"at": "yesterday"}).status_code == 200


def test_an_event_of_a_source_one_may_not_see_is_a_404_as_one_that_does_not_exist(
    client, source, other_source, api_token, teammate, stranger
):
    legacy_push(client, source, api_token, [activity(1, lead="5")])
    event = event_of(lead_id="5")
    client.force_login(stranger)
    assert page_of(client, event).status_code == 404
    client.force_login(teammate)
    assert page_of(client, event).status_code == 200
    Event.objects.filter(pk=event.pk).update(source=other_source)  # now another tenant's
    assert page_of(client, event).status_code == 404
    assert client.get(f"/events/{event.pk + 10**6}/").status_code == 404
    assert client.get(f"/events/{2**63}/").status_code == 404
    client.logout()
    assert page_of(client, event).status_code == 302  # to the log-in page


def test_the_event_page_shows_the_same_lead_around_it_by_occurred_time(client, source, api_token, admin_user):
    hours = [f"2026-12-01T{h:02d}:00:00Z" for h in range(1, 14)]
    legacy_push(
        client, source, api_token, [activity(1, lead="9", primary=f"/h{at[11:13]}", activityDate=at) for at in hours]
    )
    legacy_push(client, source, api_token, [activity(1, lead="10", primary="/someone-else", activityDate=hours[6])])
    legacy_push(
        client, source, api_token, [activity(1, lead="9", primary="/a-week-later", activityDate="2026-12-08T07:00:00Z")]
    )
    client.force_login(admin_user)
    middle = event_of(lead_id="9", primary_attribute="/h07")
    html = page_of(client, middle).content.decode()
    around = html[html.index('id="around"') :]
    shown = [f"/h{h:02d}" for h in range(2, 13)]  # 5 before, itself, 5 after
    assert [p for p in (f"/h{h:02d}" for h in range(1, 14)) if p in around] == shown
    assert all(around.index(a) < around.index(b) for a, b in itertools.pairwise(shown))
    assert "/someone-else" not in around and "/a-week-later" not in around
    assert "<td>/h07</td>" in around and "(this event)" in around


# --- Every table row links to its event -------------------------------------------------------------------


def test_rows_of_the_snapshots_and_the_live_frames_link_to_their_event(client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [activity(1, lead="5", primary="/linked")])
    event = event_of(lead_id="5")
    client.force_login(admin_user)
    expected = f"/events/{event.pk}/?at="
    assert client.get("/api/v1/tail").json()["events"][0]["url"].startswith(expected)
    assert client.get("/api/v1/overview").json()["feed"][0]["url"].startswith(expected)
    assert client.get(client.get("/api/v1/tail").json()["events"][0]["url"]).status_code == 200
    batch = Batch.objects.get(pk=event.batch_id)
    announced = {"batch": batch.pk, "received_at": batch.received_at.isoformat(), "counts": batch.counts}
    frames = payloads.build_frames([announced], {source.pk}, {(source.pk, tail.Filter().key()): tail.Filter()})
    assert len(frames) == 2  # the overview's delta and the tail's frame
    assert all(frame["events"][0]["url"].startswith(expected) for frame in frames.values())
    assert f'href="{expected}' in client.get(f"/leads/{source.pk}/5/").content.decode()


def test_audit_and_notification_rows_link_to_their_event(client, source, admin_user, key_server, signed_headers):
    from tests.ingest import io_post

    io_post(client, source, signed_headers, [audit("Email", "edit"), notification("campaign_abort", "x", {})])
    client.force_login(admin_user)
    feed = client.get("/api/v1/audit", {"range": "1h"}).json()["feed"]
    problems = client.get("/api/v1/notifications", {"range": "1h"}).json()["problems"]
    for row in (feed[0], problems[0]):
        assert row["url"].startswith(f"/events/{row['id']}/?at=")
        assert client.get(row["url"]).status_code == 200


# --- Search -------------------------------------------------------------------------------------------


def found(client, **params):
    response = client.get("/events/", params)
    assert response.status_code == 200, response.content
    return [row["detail"] for row in response.context["rows"]]


def test_search_filters_by_lead_email_type_campaign_user_and_text(
    client, source, api_token, admin_user, key_server, signed_headers
):
    from tests.ingest import io_post

    email = [{"name": "Email", "value": "jane@example.com"}]
    activities = [
        activity(1, lead="1", primary="/pricing"),
        activity(12, lead="2", primary="Jane Doe", attributes=email),
        activity(6, lead="3", primary="Newsletter", campaignId=55, campaignName="Spring Send"),
        activity(1, lead="3", primary="/careers"),
    ]
    legacy_push(client, source, api_token, activities)
    io_post(client, source, signed_headers, [audit("Email", "edit", user_id="ops@example.com")])
    client.force_login(admin_user)
    assert len(found(client)) == 5
    edit = found(client, stream="audit")
    assert len(edit) == 1 and edit[0].startswith("Email ") and edit[0].endswith(" edit")
    assert sorted(found(client, lead="3")) == ["/careers", "Newsletter"]
    assert found(client, email="JANE@example.com") == ["Jane Doe"]  # in the payload, any case
    assert found(client, email="ops@example.com") == edit  # a user's
    assert found(client, type="6") == found(client, campaign="55") == found(client, campaign="spring") == ["Newsletter"]
    assert found(client, type="com.adobe.platform.marketo.audit.user.email") == edit
    assert found(client, user="ops@example.com") == edit
    assert found(client, text="RICING") == ["/pricing"]
    assert found(client, text="%") == found(client, text="_") == []  # LIKE's wildcards are plain text
    assert found(client, lead="3", text="care") == ["/careers"]


def test_a_type_asked_for_by_its_text_is_kept_by_the_form(client, source, admin_user, key_server, signed_headers):
    from tests.ingest import io_post

    io_post(client, source, signed_headers, [audit("Email", "edit"), notification("campaign_abort", "x", {})])
    client.force_login(admin_user)
    audit_type = "com.adobe.platform.marketo.audit.user.email"
    response = client.get("/events/", {"stream": "audit", "type": audit_type, "range": "1h"})
    assert [row["label"] for row in response.context["rows"]] == ["Audit: user email"]
    assert f'<option value="{audit_type}" selected>' in response.content.decode()
    listed = client.get("/events/", {"type": "1", "range": "1h"}).content.decode()
    assert listed.count('<option value="1" selected>') == 1  # a listed type gets no second option


def test_search_is_always_within_a_bounded_time_range(client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [activity(1, lead="1", primary="/old")])
    legacy_push(client, source, api_token, [activity(1, lead="1", primary="/new")])
    Event.objects.filter(primary_attribute="/old").update(received_at=timezone.now() - timedelta(days=3))
    client.force_login(admin_user)
    assert found(client) == ["/new"]  # the last 24 hours by default
    assert found(client, range="7d") == ["/new", "/old"]
    now = timezone.now()
    custom = {"range": "custom", "tz": "Europe/Paris"}
    since, until = (now - timedelta(days=4)).isoformat(), (now - timedelta(days=2)).isoformat()
    assert found(client, **custom, since=since, until=until) == ["/old"]
    for bad in (
        {"range": "90d"},
        {"range": "custom", "since": (now - timedelta(days=40)).isoformat(), "until": now.isoformat()},
        {"range": "custom", "since": "soon", "until": "later"},
        {"type": "99999999999"},
        {"before": "x"},
        {"lead": "a\x00b"},
    ):
        response = client.get("/events/", bad)
        assert response.status_code == 400, bad
        assert response.context["error"]


def test_search_shows_only_the_sources_one_may_see(client, source, other_source, api_token, teammate):
    legacy_push(client, source, api_token, [activity(1, lead="1", primary="/mine")])
    Event.objects.create(
        source=other_source, batch_id=Event.objects.get().batch_id, stream="activity", type="x",
        received_at=Event.objects.get().received_at, lead_id="1", primary_attribute="/theirs", raw="{}",
    )  # fmt: skip
    client.force_login(teammate)
    assert found(client) == ["/mine"]
    assert found(client, lead="1") == ["/mine"]
    assert client.get("/events/", {"source": other_source.pk}).status_code == 400
    assert b"/theirs" not in client.get("/events/search.csv").content


def test_search_pages_by_id_newest_first(client, source, api_token, admin_user, monkeypatch):
    monkeypatch.setattr(search, "PAGE", 2)
    for n in range(5):
        legacy_push(client, source, api_token, [activity(1, lead="1", primary=f"/p{n}")])
    client.force_login(admin_user)
    pages, params = [], {}
    while True:
        response = client.get("/events/", params)
        pages.append([row["detail"] for row in response.context["rows"]])
        if "next_url" not in response.context:
            break
        params = {"before": str(response.context["result"].next_before)}
    assert pages == [["/p4", "/p3"], ["/p2", "/p1"], ["/p0"]]
    assert 'id="older"' not in response.content.decode() and 'id="newest"' in response.content.decode()


def test_a_scan_stops_at_its_row_bound_says_so_and_goes_on_from_there(
    client, source, api_token, admin_user, monkeypatch
):
    monkeypatch.setattr(search, "SCAN_ROWS", 3)
    legacy_push(client, source, api_token, [activity(1, primary="/needle")])
    legacy_push(client, source, api_token, [activity(1, primary="/hay") for _ in range(4)])
    client.force_login(admin_user)
    response = client.get("/events/", {"text": "needle"})
    assert response.context["rows"] == [] and response.context["result"].capped
    html = response.content.decode()
    assert 'id="search-bound"' in html and "newest 3 events" in html
    older = client.get("/events/" + response.context["next_url"])
    assert [row["detail"] for row in older.context["rows"]] == ["/needle"]
    assert not older.context["result"].capped  # nothing older is left to read
    # Without a filter that needs a scan there is no bound: the indexes serve it.
    assert len(found(client)) == 5


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="statement_timeout is PostgreSQL's")
def test_a_search_over_its_time_limit_is_stopped_and_says_so(client, source, admin_user, monkeypatch):
    client.force_login(admin_user)
    monkeypatch.setattr(search, "TIMEOUT_MS", 60_000)
    assert client.get("/events/", {"text": "x"}).context["result"].timed_out is False
    with connection.cursor() as cursor:  # a search that finished set the request's transaction back
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "1min"
    monkeypatch.setattr(search, "TIMEOUT_MS", 50)

    def slow(*_args):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(2)")

    monkeypatch.setattr(search, "_page", slow)
    response = client.get("/events/", {"text": "x"})
    assert response.status_code == 200
    assert response.context["result"].timed_out
    assert "stopped after 0.05 s" in response.content.decode()
    with transaction.atomic(), connection.cursor() as cursor:  # the timeout was for that transaction only
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "50ms"


def test_the_search_page_escapes_what_events_carry(client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [activity(1, lead="1", primary=HOSTILE)])
    client.force_login(admin_user)
    html = client.get("/events/", {"text": "script"}).content.decode()
    assert HOSTILE not in html and "&lt;/script&gt;&lt;img" in html
    assert html.count('href="/events/') >= 1


# --- CSV --------------------------------------------------------------------------------------------------


def test_the_csv_holds_the_search_s_rows_with_formula_cells_neutralised(client, source, api_token, admin_user):
    formulas = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "/plain"]
    legacy_push(client, source, api_token, [activity(1, lead="4", primary=p) for p in formulas])
    legacy_push(client, source, api_token, [activity(1, lead="5", primary="=other lead")])
    client.force_login(admin_user)
    response = client.get("/events/search.csv", {"lead": "4"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sorted(r["primary_attribute"] for r in rows) == sorted(["/plain", "'@cmd", "'-2+3", "'+SUM(A1)", "'=1+1"])
    assert all(r["raw"].startswith("{") for r in rows)
    assert response["Fluxo-Search-Complete"] == "yes"
    assert client.get("/events/search.csv", {"range": "1y"}).status_code == 400
    client.logout()
    assert client.get("/events/search.csv").status_code == 302
