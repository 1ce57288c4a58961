"""The read API: pages and NDJSON of stored events, filters, keyset pagination, auth, visibility, 503."""

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import AsyncClient

from streams import api_tokens
from streams.auth import issue_api_token
from streams.models import ApiToken, Batch, Event
from tests import ingest, processes
from tests.conftest import payload

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"
NDJSON = "/api/v1/events.ndjson"
AUDIT_TYPE = "com.adobe.platform.marketo.audit.user.email"
OTHER_TYPE = "com.adobe.platform.observability.heartbeat"
DELETE_LEAD_TYPE = "com.adobe.platform.marketo.activity.standard.deletelead"


# --- Personas -------------------------------------------------------------------------------------------


def token_for(user, **options):
    return api_tokens.create(user, **options)[1]


@pytest.fixture
def admin_token(admin_user):
    return token_for(admin_user)


@pytest.fixture
def get(client, admin_token):
    """GET with a Bearer token (the superuser's unless told otherwise)."""

    def send(path=EVENTS, token=None, **params):
        return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {token or admin_token}")

    return send


def results(response):
    assert response.status_code == 200, response.content
    return json.loads(response.content)["results"]


def ndjson_lines(response):
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content)
    return [json.loads(line) for line in body.splitlines()]


# --- Events, made by the real receivers --------------------------------------------------------------------


def activity(n, type_id=3, lead=12345, name="Click Link", **extra):
    """Activity ``n``: marketoGUID g-n (the same n again is a redelivery), primary attribute "value n"."""
    return ingest.activity(type_id, lead, name, f"value {n}", marketoGUID=f"g-{n}", activityDate=ingest.APRIL, **extra)


@pytest.fixture
def push(client, source, api_token):
    """Push activities through the legacy receiver (to ``source`` unless told otherwise)."""
    tokens = {source.id: api_token}

    def send(activities, to=None, message_id="m-1"):
        to = to or source
        if to.id not in tokens:
            tokens[to.id] = issue_api_token(to)
        body = {"munchkinId": to.munchkin_id, "messageId": message_id, "activities": activities}
        return ingest.legacy_push(client, to, tokens[to.id], json.dumps(body))  # json: integers of any size

    return send


def _io_events():
    audit = {
        "eventid": "audit-1",
        "event": {
            "body": {
                "type": AUDIT_TYPE,
                "time": "2024-07-11 13:20:42.755",
                "data": {
                    "munchkinId": "123-ABC-456",
                    "componentType": "Email",
                    "componentId": 232459,
                    "eventAction": "approve",
                    "user": 253,
                    "userId": "user@marketo.com",
                },
            }
        },
    }
    notification = {
        "eventid": "notification-1",
        "event": {
            "body": {
                "type": "com.adobe.platform.marketo.notification.campaign_abort",
                "time": "2024-12-18T07:35:12Z",
                "data": {
                    "munchkinId": "123-ABC-456",
                    "componentType": "campaign_abort",
                    "subType": "user_campaign_abort",
                    "eventAction": {"campaignId": 1234, "userId": "foo@bar.com"},
                },
            }
        },
    }
    other = {"eventid": "other-1", "type": OTHER_TYPE, "time": "2024-12-18T07:35:12Z", "data": {}}
    return [audit, notification, other]


@pytest.fixture
def mixed(client, source, other_source, push, key_server, signed_headers):
    """Acme: the 3 recorded legacy activities, then an audit, a notification and an other event over
    Adobe I/O. Acme EU: one Visit Webpage activity for lead 555."""
    push(orjson.loads(payload("lads_legacy_push_batch.json"))["activities"])
    body = orjson.dumps(_io_events())
    response = client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **signed_headers(body)
    )
    assert response.status_code == 200, response.content
    push([activity("eu-1", type_id=1, lead=555, name="Visit Webpage")], to=other_source)


# --- A page ----------------------------------------------------------------------------------------------


def test_a_page_carries_the_normalised_fields_and_the_raw_payload(get, push, source):
    recorded = orjson.loads(payload("lads_legacy_push_batch.json"))["activities"]
    push(recorded)
    response = get()
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["next"] is None
    deleted = next(row for row in body["results"] if row["activity_type_id"] == 37)
    stored = Event.objects.get(activity_type_id=37)
    assert deleted["id"] == stored.id
    assert deleted["source_id"] == source.id
    assert deleted["batch_id"] == stored.batch_id
    assert deleted["munchkin_id"] == "123-ABC-456"
    assert deleted["stream"] == "activity"
    assert deleted["type"] == DELETE_LEAD_TYPE
    assert deleted["activity_type_name"] == "Delete Lead"
    assert deleted["lead_id"] == "67890"
    assert deleted["primary_attribute"] == "Jane Doe"
    assert deleted["primary_attribute_id"] == "67890"
    assert deleted["activity_key"] == "123-ABC-456|12345678-9876-a191-4567-000000054323"
    assert deleted["event_uid"] is None
    assert deleted["occurred_at"] == "2026-04-20T18:45:00+00:00"
    assert datetime.fromisoformat(deleted["received_at"]) == stored.received_at
    assert deleted["flags"] == []
    assert deleted["details"] is None
    assert deleted["raw"] == recorded[2]


def test_audit_and_notification_fields_are_shown_and_details_parsed(get, mixed):
    audit = results(get(stream="audit"))[0]
    assert (audit["component_type"], audit["component_id"], audit["action"]) == ("Email", "232459", "approve")
    assert (audit["user_numeric"], audit["user_email"]) == ("253", "user@marketo.com")
    assert audit["event_uid"] == "audit-1"
    assert "time_no_zone" in audit["flags"]
    notification = results(get(stream="notification"))[0]
    assert (notification["kind"], notification["subtype"]) == ("campaign_abort", "user_campaign_abort")
    assert notification["details"] == {"campaignId": 1234, "userId": "foo@bar.com"}
    assert notification["campaign_id"] == "1234"
    assert notification["raw"]["event"]["body"]["data"]["subType"] == "user_campaign_abort"


def test_integers_beyond_64_bits_in_the_raw_payload_come_back_exact(get, push):
    huge = 123456789012345678901234567890
    push([activity(1, attributes=[{"name": "Score", "value": huge}])])
    (page_row,) = results(get())
    assert page_row["raw"]["attributes"][0]["value"] == huge
    (line,) = ndjson_lines(get(NDJSON))
    assert line["raw"]["attributes"][0]["value"] == huge


def test_results_are_oldest_first_in_id_order(get, push):
    push([activity(n) for n in range(5)], message_id="first")
    push([activity(n) for n in range(5, 8)], message_id="second")
    ids = [row["id"] for row in results(get())]
    assert ids == sorted(ids)
    assert ids == list(Event.objects.order_by("id").values_list("id", flat=True))


# --- Pagination ------------------------------------------------------------------------------------------


def follow(client, token, url, **extra):
    """Every page from ``url`` on, following ``next``; returns (ids, the next URLs seen)."""
    ids, nexts = [], []
    while url:
        parts = urlsplit(url)
        response = client.get(f"{parts.path}?{parts.query}", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)
        body = json.loads(response.content)
        assert len(body["results"]) <= int(parse_qs(parts.query).get("limit", ["100"])[0])
        ids += [row["id"] for row in body["results"]]
        url = body["next"]
        nexts.append(url)
    return ids, nexts


def test_pages_follow_next_with_no_gap_and_no_duplicate(client, admin_token, push):
    push([activity(n) for n in range(7)])
    ids, nexts = follow(client, admin_token, f"http://testserver{EVENTS}?limit=3")
    assert ids == list(Event.objects.order_by("id").values_list("id", flat=True))
    assert len(nexts) == 3
    assert nexts[-1] is None


def test_next_is_an_absolute_url_on_the_requests_own_host_and_keeps_the_filters(get, client, admin_token, push):
    settings.ALLOWED_HOSTS.append("fluxo.example.test")
    try:
        push([activity(n) for n in range(3)])
        response = client.get(
            EVENTS,
            {"limit": 2, "stream": "activity"},
            HTTP_AUTHORIZATION=f"Bearer {admin_token}",
            HTTP_HOST="fluxo.example.test",
            secure=True,
        )
    finally:
        settings.ALLOWED_HOSTS.remove("fluxo.example.test")
    following = json.loads(response.content)["next"]
    parts = urlsplit(following)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "fluxo.example.test", EVENTS)
    second = results(get(EVENTS, limit=2, stream="activity"))[1]
    assert parse_qs(parts.query) == {"limit": ["2"], "stream": ["activity"], "after": [str(second["id"])]}


def test_pages_only_walk_the_filtered_events(client, admin_token, push):
    push([activity(n, lead=7 if n % 2 else 8) for n in range(9)])
    ids, _ = follow(client, admin_token, f"http://testserver{EVENTS}?limit=2&lead_id=7")
    assert ids == list(Event.objects.filter(lead_id="7").order_by("id").values_list("id", flat=True))
    assert len(ids) == 4


def test_events_that_arrive_between_pages_are_on_later_pages(client, admin_token, push):
    push([activity(n) for n in range(3)], message_id="first")
    first = client.get(EVENTS, {"limit": 2}, HTTP_AUTHORIZATION=f"Bearer {admin_token}")
    push([activity(n) for n in range(3, 5)], message_id="second")
    seen = [row["id"] for row in json.loads(first.content)["results"]]
    more, _ = follow(client, admin_token, json.loads(first.content)["next"])
    assert seen + more == list(Event.objects.order_by("id").values_list("id", flat=True))


def test_after_resumes_from_an_event_id(get, push):
    push([activity(n) for n in range(4)])
    ids = list(Event.objects.order_by("id").values_list("id", flat=True))
    assert [row["id"] for row in results(get(after=ids[1]))] == ids[2:]


# --- limit -----------------------------------------------------------------------------------------------


def test_the_default_limit_is_100(get, push):
    push([activity(n) for n in range(101)])
    body = json.loads(get().content)
    assert len(body["results"]) == 100
    assert body["next"] is not None


def test_a_limit_of_1000_is_honoured(get, push):
    push([activity(n) for n in range(1001)])
    body = json.loads(get(limit=1000).content)
    assert len(body["results"]) == 1000
    assert parse_qs(urlsplit(body["next"]).query)["after"] == [str(body["results"][-1]["id"])]


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "1.5", "1e3", "5_0"])
def test_a_bad_limit_is_a_400_with_a_json_error(get, limit):
    response = get(limit=limit)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_parameter"
    assert "limit" in response.json()["detail"]


# --- Filters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"stream": "activity"}, {("activity", "3"), ("activity", "13"), ("activity", "37"), ("activity", "1")}),
        ({"stream": "audit"}, {("audit", AUDIT_TYPE)}),
        ({"stream": "notification"}, {("notification", "campaign_abort")}),
        ({"stream": "other"}, {("other", OTHER_TYPE)}),
        ({"activity_type_id": "13"}, {("activity", "13")}),
        ({"type": DELETE_LEAD_TYPE}, {("activity", "37")}),
        ({"lead_id": "12345"}, {("activity", "3"), ("activity", "13")}),
        ({"lead_id": "12345", "activity_type_id": "3", "stream": "activity"}, {("activity", "3")}),
        ({"lead_id": "12345", "stream": "audit"}, set()),
        ({"lead_id": ""}, None),  # an empty value is no filter
    ],
)
def test_each_filter_narrows_the_results(get, mixed, params, expected):
    def label(row):
        if row["stream"] == "activity":
            return ("activity", str(row["activity_type_id"]))
        if row["stream"] == "notification":
            return ("notification", row["kind"])
        return (row["stream"], row["type"])

    rows = results(get(**params))
    assert len(rows) == len({label(row) for row in rows})  # no event twice
    assert {label(row) for row in rows} == (expected if expected is not None else {label(r) for r in results(get())})
    assert len(rows) == (len(expected) if expected is not None else 7)


def test_the_source_filter_takes_a_source_id(get, mixed, source, other_source):
    assert [row["lead_id"] for row in results(get(source=other_source.id))] == ["555"]
    assert {row["source_id"] for row in results(get(source=source.id))} == {source.id}
    assert len(results(get(source=source.id))) == 6


@pytest.fixture
def three_hours(push):
    """Three events received at 10:00, 11:00 and 12:00 UTC on 2026-04-20 (pinned: the clock is not)."""
    for hour in (10, 11, 12):
        push([activity(hour)], message_id=f"m-{hour}")
        Event.objects.filter(activity_key=f"123-ABC-456|g-{hour}").update(
            received_at=datetime(2026, 4, 20, hour, tzinfo=UTC)
        )


@pytest.mark.parametrize(
    ("params", "hours"),
    [
        ({"since": "2026-04-20T11:00:00Z"}, [11, 12]),  # since is inclusive
        ({"until": "2026-04-20T11:00:00Z"}, [10]),  # until is exclusive, so windows tile
        ({"since": "2026-04-20T10:30:00Z", "until": "2026-04-20T12:00:00Z"}, [11]),
        ({"since": "2026-04-20T13:00:00+02:00"}, [11, 12]),  # the offset is honoured
        ({"since": "2026-04-20T13:00:00 02:00"}, [11, 12]),  # a "+" lost to URL decoding is put back
        ({"since": "2026-04-20T11:00:00"}, [11, 12]),  # no zone: UTC
        ({"since": "2026-04-20T11:00:00.000001Z"}, [12]),
        ({"since": "2026-04-20"}, [10, 11, 12]),
        ({"until": "2026-04-20"}, []),
        ({"since": "2026-04-20T12:00:00Z", "until": "2026-04-20T10:00:00Z"}, []),
    ],
)
def test_since_and_until_select_a_window_on_received_time(get, three_hours, params, hours):
    rows = results(get(**params))
    assert [row["primary_attribute"] for row in rows] == [f"value {hour}" for hour in hours]
    assert [row["primary_attribute"] for row in ndjson_lines(get(NDJSON, **params))] == [
        f"value {hour}" for hour in hours
    ]


@pytest.fixture
def out_of_order(push):
    """30 events, a request each, id order = received order (a minute apart from 09:00) but for two:
    the third request was stamped late (09:28:30), the 28th early (09:00:30, as a request stamped on
    arrival that committed half an hour later). An event has its request's (its batch's) time."""
    for n in range(30):
        push([activity(n)])
    ids = list(Event.objects.order_by("id").values_list("id", flat=True))
    base = datetime(2026, 4, 20, 9, tzinfo=UTC)
    for n, event_id in enumerate(ids):
        at = base + timedelta(minutes={2: 28.5, 27: 0.5}.get(n, n))
        Batch.objects.filter(events__id=event_id).update(received_at=at)
        Event.objects.filter(id=event_id).update(received_at=at)
    return ids


@pytest.mark.parametrize(
    ("params", "after", "picked"),
    [
        ({"since": "2026-04-20T09:25:00Z"}, None, [2, 25, 26, 28, 29]),  # the tail: the API starts from an id floor
        ({"since": "2026-04-20T09:00:15Z", "until": "2026-04-20T09:02:00Z"}, None, [1, 27]),
        ({"since": "2026-04-20T08:00:00Z"}, None, list(range(30))),  # from the oldest: no floor needed
        ({"since": "2026-04-20T09:25:00Z"}, 0, [2, 25, 26, 28, 29]),
        ({"since": "2026-04-20T09:25:00Z"}, 2, [25, 26, 28, 29]),
        ({"since": "2026-04-20T10:00:00Z"}, None, []),
    ],
)
def test_since_finds_every_event_of_the_window_whatever_its_id(get, out_of_order, params, after, picked):
    if after is not None:
        params = {**params, "after": str(out_of_order[after])}
    expected = [out_of_order[n] for n in picked]
    assert [row["id"] for row in results(get(**params))] == expected
    assert [row["id"] for row in ndjson_lines(get(NDJSON, **params))] == expected


def test_a_batch_records_the_lowest_id_of_the_events_it_stored(push):
    push([activity(n) for n in range(3)])
    push([activity(n) for n in range(5)])  # three redelivered, two new
    for batch in Batch.objects.order_by("id"):
        assert batch.first_event_id == min(Event.objects.filter(batch=batch).values_list("id", flat=True))
    assert Batch.objects.count() == 2


def test_since_reads_a_window_of_batches_from_before_first_event_id_from_their_events(get, out_of_order):
    """An upgraded database's batches have no first_event_id: their windows are still exact."""
    Batch.objects.filter(events__id=out_of_order[26]).update(first_event_id=None)
    expected = [out_of_order[n] for n in (2, 25, 26, 28, 29)]
    assert [row["id"] for row in results(get(since="2026-04-20T09:25:00Z"))] == expected


def test_since_pages_follow_next_through_an_out_of_order_window(client, admin_token, out_of_order):
    ids, nexts = follow(client, admin_token, f"http://testserver{EVENTS}?limit=2&since=2026-04-20T09:25:00Z")
    assert ids == [out_of_order[n] for n in (2, 25, 26, 28, 29)]
    assert len(nexts) == 3


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"stream": "Activity"}, "bad_parameter"),
        ({"stream": "observability"}, "bad_parameter"),
        ({"source": "acme"}, "bad_parameter"),
        ({"source": "99999999999999999999"}, "bad_parameter"),
        ({"activity_type_id": "x"}, "bad_parameter"),
        ({"activity_type_id": "3000000000"}, "bad_parameter"),  # beyond the 32-bit column
        ({"since": "yesterday"}, "bad_parameter"),
        ({"until": "2026-13-01T00:00:00Z"}, "bad_parameter"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "bad_parameter"),  # before year 1 in UTC
        ({"after": "g-1"}, "bad_parameter"),
        ({"type": "a\x00b"}, "bad_parameter"),
        ({"strem": "audit"}, "unknown_parameter"),
        ({"offset": "100"}, "unknown_parameter"),
    ],
)
def test_a_bad_filter_is_a_400_with_a_json_error_on_both_endpoints(get, params, error):
    for path in (EVENTS, NDJSON):
        response = get(path, **params)
        assert response.status_code == 400, (path, params)
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"] == error
        assert next(iter(params)) in response.json()["detail"]


# --- Authentication ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [EVENTS, NDJSON])
def test_no_credentials_is_a_401_with_a_bearer_challenge(client, db, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    "header", ["Bearer fxp_not-a-token", "Bearer", "Bearer ", "Basic YWRtaW46cGFzc3dvcmQ=", "fxp_bare", ""]
)
def test_a_wrong_or_malformed_token_is_a_401(client, admin_token, header):
    for path in (EVENTS, NDJSON):
        response = client.get(path, HTTP_AUTHORIZATION=header)
        assert response.status_code == 401
        assert 'error="invalid' in response["WWW-Authenticate"]
        assert response.json()["error"] == "unauthorized"


def test_a_bare_token_without_bearer_is_refused(client, admin_token):
    assert client.get(EVENTS, HTTP_AUTHORIZATION=admin_token).status_code == 401


def test_a_source_push_token_does_not_open_the_read_api(client, api_token):
    assert client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {api_token}").status_code == 401


def test_a_revoked_or_expired_token_is_a_401(client, admin_user, push):
    push([activity(1)])
    revoked, revoked_secret = api_tokens.create(admin_user)
    expired_secret = token_for(admin_user, expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {revoked_secret}").status_code == 200
    revoked.revoked_at = datetime(2026, 1, 1, tzinfo=UTC)
    revoked.save()
    for secret in (revoked_secret, expired_secret):
        response = client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {secret}")
        assert response.status_code == 401
        assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_token_of_a_deactivated_user_is_a_401(client, teammate):
    secret = token_for(teammate)
    teammate.is_active = False
    teammate.save()
    assert client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_a_logged_in_browser_session_may_read(client, admin_user, mixed):
    client.force_login(admin_user)
    assert len(results(client.get(EVENTS))) == 7
    assert len(ndjson_lines(client.get(NDJSON))) == 7


def test_a_presented_token_is_checked_even_with_a_session(client, admin_user, mixed):
    client.force_login(admin_user)
    assert client.get(EVENTS, HTTP_AUTHORIZATION="Bearer fxp_wrong").status_code == 401


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "head", "options"])
def test_anything_but_get_is_a_405_with_a_session_or_a_token(client, admin_user, admin_token, method):
    for path in (EVENTS, NDJSON):
        response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {admin_token}")
        assert response.status_code == 405
        assert response["Allow"] == "GET"
    client.force_login(admin_user)
    assert getattr(client, method)(EVENTS).status_code == 405


def test_using_a_token_records_when_it_was_last_used(client, admin_user):
    token, secret = api_tokens.create(admin_user)
    assert token.last_used_at is None
    client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {secret}")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {secret}")  # within the minute: not written again
    token.refresh_from_db()
    assert token.last_used_at == first
    ApiToken.objects.filter(id=token.id).update(last_used_at=first - timedelta(minutes=2))
    client.get(EVENTS, HTTP_AUTHORIZATION=f"Bearer {secret}")
    token.refresh_from_db()
    assert token.last_used_at > first


# --- Who sees what ----------------------------------------------------------------------------------------


def test_a_teammate_sees_only_the_sources_shared_with_their_groups(get, mixed, teammate, source):
    secret = token_for(teammate)
    rows = results(get(token=secret))
    assert {row["source_id"] for row in rows} == {source.id}
    assert len(rows) == 6
    assert {row["source_id"] for row in ndjson_lines(get(NDJSON, token=secret))} == {source.id}


def test_asking_for_a_source_not_shared_with_you_finds_nothing(get, mixed, teammate, other_source):
    assert results(get(token=token_for(teammate), source=other_source.id)) == []
    assert ndjson_lines(get(NDJSON, token=token_for(teammate), source=other_source.id)) == []


def test_a_user_in_no_viewer_group_sees_nothing(get, mixed, stranger):
    assert results(get(token=token_for(stranger))) == []


def test_a_user_in_two_groups_sharing_one_source_sees_each_event_once(get, mixed, teammate, source):
    second = Group.objects.create(name="Acme marketing")
    source.viewer_groups.add(second)
    teammate.groups.add(second)
    rows = results(get(token=token_for(teammate)))
    assert len(rows) == len({row["id"] for row in rows}) == 6


def test_a_superuser_sees_every_source(get, mixed, source, other_source):
    assert {row["source_id"] for row in results(get())} == {source.id, other_source.id}


def test_a_session_user_sees_only_what_their_groups_share(client, mixed, teammate, source):
    client.force_login(teammate)
    assert {row["source_id"] for row in results(client.get(EVENTS))} == {source.id}


# --- NDJSON ---------------------------------------------------------------------------------------------


def test_ndjson_streams_the_same_events_as_the_pages(get, mixed):
    response = get(NDJSON, stream="activity")
    assert response["Content-Type"] == "application/x-ndjson"
    assert response.streaming
    assert ndjson_lines(response) == results(get(stream="activity"))


def test_ndjson_streams_a_range_longer_than_a_chunk_without_gaps_or_duplicates(get, push):
    push([activity(n) for n in range(2100)])
    lines = ndjson_lines(get(NDJSON))
    assert [line["id"] for line in lines] == list(Event.objects.order_by("id").values_list("id", flat=True))
    assert len(lines) == 2100
    resumed = ndjson_lines(get(NDJSON, after=lines[999]["id"]))
    assert [line["id"] for line in resumed] == [line["id"] for line in lines[1000:]]


def test_ndjson_is_read_and_sent_in_keyset_chunks_of_a_thousand(get, push):
    push([activity(n) for n in range(2100)])
    chunks = list(get(NDJSON).streaming_content)
    assert [chunk.count(b"\n") for chunk in chunks] == [1000, 1000, 100]


def test_under_asgi_ndjson_streams_from_an_async_iterator_chunk_by_chunk(admin_token, push):
    # Django reads a synchronous iterator whole into memory before sending a byte under ASGI.
    push([activity(n) for n in range(1500)])
    response = async_to_sync(AsyncClient().get)(NDJSON, headers={"Authorization": f"Bearer {admin_token}"})
    assert response.status_code == 200
    assert response.is_async

    async def collect():
        return [chunk async for chunk in response.streaming_content]

    chunks = async_to_sync(collect)()
    assert [chunk.count(b"\n") for chunk in chunks] == [1000, 500]
    ids = [json.loads(line)["id"] for line in b"".join(chunks).splitlines()]
    assert ids == list(Event.objects.order_by("id").values_list("id", flat=True))


def test_ndjson_of_an_empty_range_is_an_empty_200(get, db):
    response = get(NDJSON, stream="audit")
    assert ndjson_lines(response) == []


def test_ndjson_streams_the_whole_range_so_limit_is_refused(get):
    response = get(NDJSON, limit=10)
    assert response.status_code == 400
    assert response.json()["error"] == "unknown_parameter"


# --- A real server ----------------------------------------------------------------------------------------


def _redis_for_subprocesses():
    return settings.FLUXO_REDIS_URL


@pytest.mark.slow
def test_the_database_unavailable_is_a_503_with_retry_after_never_a_500(tmp_path):
    env = processes.bare_env(
        tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:1/nope", REDIS_URL=_redis_for_subprocesses()
    )
    with processes.daphne(env) as base:
        for path, headers in [
            (EVENTS, {"Authorization": "Bearer fxp_anything"}),
            (NDJSON, {"Authorization": "Bearer fxp_anything"}),
            (f"{EVENTS}?stream=audit", {"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz012345"}),
        ]:
            status, response_headers, body = processes.http("GET", base + path, headers=headers)
            assert status == 503, (path, body)
            assert response_headers["Retry-After"] == "30"
            assert json.loads(body)["error"] == "unavailable"


@pytest.mark.slow
def test_under_daphne_ndjson_streams_past_a_chunk_and_next_uses_the_servers_host(tmp_path):
    env = processes.bare_env(tmp_path, REDIS_URL=_redis_for_subprocesses())
    processes.manage(env, "migrate", "--noinput")
    processes.manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": "pw-ada-123456"},
        *("createsuperuser", "--noinput", "--username", "ada", "--email", "ada@example.test"),
    )
    token = processes.manage(env, "create_api_token", "ada").split()[-1]
    acme = json.loads(processes.manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    with processes.daphne(env) as base:
        ingest.http_push(base, acme, [activity(n) for n in range(2100)], timeout=60)
        reader = {"Authorization": f"Bearer {token}"}
        status, headers, streamed = processes.http("GET", f"{base}{NDJSON}", headers=reader, timeout=60)
        assert (status, headers["Content-Type"]) == (200, "application/x-ndjson")
        ids = [json.loads(line)["id"] for line in streamed.splitlines()]
        assert len(ids) == len(set(ids)) == 2100
        assert ids == sorted(ids)
        status, _, page = processes.http("GET", f"{base}{EVENTS}?limit=5", headers=reader)
        assert json.loads(page)["next"] == f"{base}{EVENTS}?limit=5&after={ids[4]}"
