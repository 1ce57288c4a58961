"""The Adobe I/O Events webhook: challenge, signatures, recipients, envelopes, de-duplication."""

import json

import orjson
import pytest

from streams.models import Batch, Event, ValidationRequest
from tests.conftest import KeyPair, payload

pytestmark = pytest.mark.django_db


def url(source):
    return f"/ingest/{source.ingest_key}/adobe-io/"


@pytest.fixture
def post_signed(client, source, key_server, signed_headers):
    def post(body, to=None, **overrides):
        headers = {**signed_headers(body), **overrides}
        return client.post(url(to or source), body, content_type="application/json", **headers)

    return post


def _event(eventid="e-1", activity_id="a-1", munchkin="123-ABC-456", type_id=10, **extra):
    return {
        "eventid": eventid,
        "specversion": "1.0",
        "type": "com.adobe.platform.marketo.activity.standard.openemail",
        "source": "urn:marketo_activity_stream",
        "id": activity_id,
        "time": "2024-12-17T18:39:33Z",
        "data": {"munchkinId": munchkin, "leadId": "1234", "activityTypeId": type_id, "activityType": "Open Email"},
        **extra,
    }


# --- Challenge ------------------------------------------------------------------------------------------


def test_it_echoes_a_sane_challenge_as_json_without_a_signature(client, source):
    response = client.get(url(source), {"challenge": "8ec8d794-e0ab-42df-9017-e3dada8e84f7"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"challenge": "8ec8d794-e0ab-42df-9017-e3dada8e84f7"}


@pytest.mark.parametrize("challenge", ["<script>alert(1)</script>", "a" * 300, "", "x y"])
def test_it_refuses_to_reflect_an_odd_challenge(client, source, challenge):
    response = client.get(url(source), {"challenge": challenge})
    assert response.status_code == 400
    assert b"script" not in response.content


def test_an_unknown_source_is_404(client, db):
    assert client.get("/ingest/nope/adobe-io/", {"challenge": "abc"}).status_code == 404
    assert client.post("/ingest/nope/adobe-io/", b"[]", content_type="application/json").status_code == 404


def test_a_wrong_method_is_405(client, source):
    assert client.put(url(source), b"[]").status_code == 405
    assert client.delete(url(source)).status_code == 405


def test_the_url_without_its_trailing_slash_works_too(client, source, key_server, signed_headers):
    body = orjson.dumps([_event()])
    response = client.post(url(source).rstrip("/"), body, content_type="application/json", **signed_headers(body))
    assert response.status_code == 200


def test_the_async_validation_post_is_kept_for_an_admin_and_answered_200(client, source):
    body = json.dumps({"validationUrl": "https://csm.adobe.io/csm/registrations/validate?id=g1&challenge=g2"})
    response = client.post(url(source), body, content_type="application/json")
    assert response.status_code == 200
    assert ValidationRequest.objects.get().url.startswith("https://csm.adobe.io/")
    assert Event.objects.count() == 0


# --- Signatures -------------------------------------------------------------------------------------------


def test_it_stores_a_signed_batch_and_acknowledges_with_counts(post_signed):
    response = post_signed(payload("lads_io_batch.json"))
    assert response.status_code == 200
    assert response.json() == {"accepted": 4, "duplicates": 0}
    assert Event.objects.count() == 4


def test_only_the_first_signature_valid_is_enough(client, source, key_server, signed_headers):
    body = payload("uads_batch_current.json")
    response = client.post(url(source), body, content_type="application/json", **signed_headers(body, second=False))
    assert response.status_code == 200
    assert Event.objects.count() == 2


def test_only_the_second_signature_valid_is_enough(client, source, key_server, signed_headers):
    body = payload("uads_batch_current.json")
    response = client.post(url(source), body, content_type="application/json", **signed_headers(body, first=False))
    assert response.status_code == 200


def test_no_valid_signature_is_401_and_nothing_is_stored(client, source, key_server, signed_headers):
    body = payload("uads_batch_current.json")
    headers = signed_headers(body, first=False, second=False)
    response = client.post(url(source), body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    assert Event.objects.count() == 0


def test_a_tampered_body_is_401(client, source, key_server, signed_headers):
    body = payload("notification_batch.json")
    headers = signed_headers(body)
    tampered = body.replace(b'"percent": 25', b'"percent": 99')
    assert tampered != body
    response = client.post(url(source), tampered, content_type="application/json", **headers)
    assert response.status_code == 401
    assert Event.objects.count() == 0


def test_a_missing_signature_is_401(client, source):
    response = client.post(url(source), payload("lads_io_batch.json"), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "missing_signature"


@pytest.mark.parametrize(
    "path",
    [
        "@evil.example/prod/keys/pub-key-1.pem",
        "/prod/keys/../keys/pub-key-1.pem",
        "//evil.example/prod/keys/pub-key-1.pem",
        "/prod/keys/pub-key-1.pem?x=1",
        "/prod/keys/pub-key-1.pem/../../x",
        "/prod/keys/pub-key-a_b.pem",
        "https://evil.example/prod/keys/pub-key-1.pem",
        "/prod/keys/pub-key-.pem\n",
    ],
)
def test_a_key_path_of_the_wrong_shape_is_401_and_nothing_is_fetched(client, source, key_server, key_pairs, path):
    body = payload("uads_batch_current.json")
    one, _two = key_pairs
    headers = {
        "HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": one.sign(body),
        "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": path,
    }
    response = client.post(url(source), body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert key_server.requests == []


def test_a_key_the_host_answers_404_for_is_401(client, source, key_server):
    body = payload("uads_batch_current.json")
    stranger = KeyPair()  # signs correctly, but its key is not on the key host
    headers = {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": stranger.sign(body), "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": stranger.path}
    response = client.post(url(source), body, content_type="application/json", **headers)
    assert response.status_code == 401
    assert key_server.requests == [stranger.path]


def test_the_key_host_answering_5xx_is_503_so_adobe_retries(post_signed, key_server):
    key_server.fail_with = 502
    response = post_signed(payload("uads_batch_current.json"))
    assert response.status_code == 503
    assert response["Retry-After"]
    assert Event.objects.count() == 0


def test_the_key_host_unreachable_is_503_never_401(client, source, settings, signed_headers):
    settings.ADOBE_IO_KEY_BASE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    body = payload("uads_batch_current.json")
    response = client.post(url(source), body, content_type="application/json", **signed_headers(body))
    assert response.status_code == 503
    assert Event.objects.count() == 0


def test_keys_are_fetched_once_and_then_cached(post_signed, key_server):
    post_signed(orjson.dumps([_event("e-1", "a-1")]))
    post_signed(orjson.dumps([_event("e-2", "a-2")]))
    assert len(key_server.requests) == 1


def test_a_trailing_slash_on_the_key_base_url_is_fine(post_signed, key_server, settings):
    settings.ADOBE_IO_KEY_BASE_URL = key_server.url + "/"
    assert post_signed(orjson.dumps([_event()])).status_code == 200
    assert all(not path.startswith("//") for path in key_server.requests)


def test_a_source_can_pin_its_keys_instead_of_fetching(client, source, key_pairs, signed_headers, settings):
    settings.ADOBE_IO_KEY_BASE_URL = "http://127.0.0.1:9"
    source.pinned_public_keys = key_pairs[1].pem.decode()
    source.save()
    body = orjson.dumps([_event()])
    response = client.post(url(source), body, content_type="application/json", **signed_headers(body, first=False))
    assert response.status_code == 200


# --- Recipient client id ----------------------------------------------------------------------------------


def test_a_recipient_mismatch_in_one_element_refuses_the_whole_batch(post_signed, source):
    source.adobe_client_id = "fluxo-client"
    source.save()
    batch = [
        _event("e-1", "a-1", recipientclientid="fluxo-client"),
        _event("e-2", "a-2", recipient_client_id="someone-else"),
    ]
    response = post_signed(orjson.dumps(batch))
    assert response.status_code == 401
    assert response.json()["error"] == "wrong_recipient"
    assert Event.objects.count() == 0


def test_a_recipient_nested_under_event_is_checked(post_signed, source):
    source.adobe_client_id = "another"
    source.save()
    assert post_signed(payload("uads_single_nested_rcid.json")).status_code == 401
    source.adobe_client_id = "your_client_id"
    source.save()
    assert post_signed(payload("uads_single_nested_rcid.json")).status_code == 200


def test_an_old_event_without_a_recipient_is_accepted_and_flagged(post_signed, source):
    source.adobe_client_id = "fluxo-client"
    source.save()
    assert post_signed(payload("uads_single_v1.json")).status_code == 200
    assert "no_recipient_client_id" in Event.objects.get().flags


def test_a_source_without_a_client_id_does_not_check_it(post_signed):
    response = post_signed(orjson.dumps([_event(recipientclientid="whoever")]))
    assert response.status_code == 200


# --- Envelopes and normalisation --------------------------------------------------------------------------


def test_every_envelope_variant_is_normalised(post_signed):
    for name in (
        "lads_io_batch.json",
        "uads_batch_current.json",
        "uads_single_v1.json",
        "uads_single_nested_rcid.json",
        "notification_batch.json",
    ):
        assert post_signed(payload(name)).status_code == 200, name
    assert Event.objects.filter(stream="activity").count() == 4
    assert Event.objects.filter(stream="audit").count() == 4
    assert Event.objects.filter(stream="notification").count() == 3
    v1 = Event.objects.get(event_uid="a1b2c3d4-zyxw-9876-9z8y-a1b2c3d4e5f6")
    assert (v1.user_numeric, v1.user_email, v1.action, v1.component_type) == (
        "253",
        "example@marketo.com",
        "approve",
        "Email",
    )
    abort = Event.objects.get(kind="campaign_abort")
    assert (abort.subtype, abort.campaign_id, abort.user_email) == ("user_campaign_abort", "1234", "foo@bar.com")
    quota = Event.objects.get(kind="web_services")
    assert json.loads(quota.details)["percent"] == 25


def test_the_raw_payload_is_kept_losslessly(post_signed):
    body = payload("lads_io_batch.json")
    post_signed(body)
    stored = [json.loads(e.raw) for e in Event.objects.order_by("id")]
    assert sorted(stored, key=lambda e: e["eventid"]) == sorted(json.loads(body), key=lambda e: e["eventid"])


def test_a_single_event_object_is_accepted(post_signed):
    response = post_signed(orjson.dumps(_event()))
    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_unknown_types_are_stored_never_refused(post_signed):
    events = [
        {**_event("e-1", "a-1"), "type": "com.adobe.platform.marketo.notification.test_group"},
        {**_event("e-2", "a-2", type_id=999), "type": "com.adobe.platform.marketo.activity.standard.brandnew"},
        {**_event("e-3", "a-3"), "type": "com.adobe.platform.marketo.observability.metrics"},
        {"eventid": "e-4", "surprise": True},
    ]
    response = post_signed(orjson.dumps(events))
    assert response.json() == {"accepted": 4, "duplicates": 0}
    streams = dict(Event.objects.values_list("event_uid", "stream"))
    assert streams == {"e-1": "notification", "e-2": "activity", "e-3": "other", "e-4": "other"}
    assert "unknown_activity_type" in Event.objects.get(event_uid="e-2").flags
    assert "no_type" in Event.objects.get(event_uid="e-4").flags


@pytest.mark.parametrize(
    ("raw_time", "expected", "flag"),
    [
        ("2024-12-17T18:39:33Z", "2024-12-17T18:39:33+00:00", None),
        ("2024-07-11 13:20:42.755", "2024-07-11T13:20:42.755000+00:00", "time_no_zone"),
        ("2021-05-27T10:22:37.489-5:00", "2021-05-27T15:22:37.489000+00:00", "time_short_offset"),
        ("yesterday-ish", None, "time_unreadable"),
    ],
)
def test_odd_timestamps_are_read_leniently_and_flagged(post_signed, raw_time, expected, flag):
    event = {**_event(), "time": raw_time}
    event["data"].pop("activityDate", None)
    assert post_signed(orjson.dumps([event])).status_code == 200
    stored = Event.objects.get()
    assert (stored.occurred_at.isoformat() if stored.occurred_at else None) == expected
    if flag:
        assert flag in stored.flags


def test_an_event_for_a_linked_munchkin_is_filed_under_that_source(post_signed, source, other_source):
    source.delivers_for.add(other_source)
    post_signed(orjson.dumps([_event("e-1", "a-1", munchkin="987-XYZ-654"), _event("e-2", "a-2")]))
    assert Event.objects.get(event_uid="e-1").source == other_source
    assert Event.objects.get(event_uid="e-2").source == source


def test_an_event_for_an_unknown_munchkin_stays_with_the_receiving_source_flagged(post_signed, source):
    post_signed(orjson.dumps([_event(munchkin="555-NEW-555")]))
    stored = Event.objects.get()
    assert stored.source == source
    assert "munchkin_foreign" in stored.flags


# --- Malformed ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"a string"', b"[{}, 3]", b"{", b"\xff\xfe"])
def test_a_body_that_is_not_an_io_delivery_is_400_and_nothing_is_stored(post_signed, body):
    response = post_signed(body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert Event.objects.count() == 0
    assert Batch.objects.count() == 0


def test_a_body_over_the_limit_is_413(post_signed, settings):
    settings.FLUXO_MAX_BODY_BYTES = 100_000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    big = orjson.dumps([_event(f"e-{i}", f"a-{i}", padding="x" * 10_000) for i in range(20)])
    response = post_signed(big)
    assert response.status_code == 413
    assert Event.objects.count() == 0


def test_a_full_adobe_batch_of_20_events_and_nearly_2mb_is_accepted(post_signed):
    events = [_event(f"e-{i}", f"a-{i}", padding="x" * 95_000) for i in range(20)]
    body = orjson.dumps(events)
    assert len(body) > 1_900_000
    assert post_signed(body).json() == {"accepted": 20, "duplicates": 0}


# --- Exactly once ------------------------------------------------------------------------------------------


def test_a_redelivered_batch_gets_the_same_2xx_and_is_stored_once(post_signed):
    body = payload("lads_io_batch.json")
    first = post_signed(body)
    again = post_signed(body, HTTP_X_ADOBE_RETRY_COUNT="1")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"accepted": 0, "duplicates": 4}
    assert Event.objects.count() == 4


def test_duplicates_within_one_batch_are_stored_once(post_signed):
    response = post_signed(orjson.dumps([_event("e-1", "a-1"), _event("e-1", "a-1")]))
    assert response.json() == {"accepted": 1, "duplicates": 1}


def test_the_same_activity_under_a_new_eventid_is_a_duplicate(post_signed):
    post_signed(orjson.dumps([_event("e-1", "a-1")]))
    response = post_signed(orjson.dumps([_event("e-2", "a-1")]))
    assert response.json() == {"accepted": 0, "duplicates": 1}


def test_dedup_keys_are_scoped_to_the_source_an_event_is_filed_under(post_signed, other_source):
    post_signed(orjson.dumps([_event("e-1", "a-1")]))
    # Another tenant sending the same ids first or later shadows nothing.
    response = post_signed(orjson.dumps([_event("e-1", "a-1", munchkin="987-XYZ-654")]), to=other_source)
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert Event.objects.filter(event_uid="e-1").count() == 2


def test_the_event_id_header_is_never_used_for_dedup(post_signed):
    post_signed(orjson.dumps([_event("e-1", "a-1")]), HTTP_X_ADOBE_EVENT_ID="same")
    response = post_signed(orjson.dumps([_event("e-2", "a-2")]), HTTP_X_ADOBE_EVENT_ID="same")
    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_audit_events_without_id_but_with_different_eventids_are_two_events(post_signed):
    body = json.loads(payload("uads_batch_current.json"))
    second = json.loads(json.dumps(body[0]))
    second["eventid"] = "another-eventid"
    assert post_signed(orjson.dumps([body[0], second])).json() == {"accepted": 2, "duplicates": 0}


def test_ids_are_opaque_strings(post_signed):
    post_signed(payload("uads_single_v1.json"))
    assert Event.objects.get().event_uid == "a1b2c3d4-zyxw-9876-9z8y-a1b2c3d4e5f6"


# --- The batch row -------------------------------------------------------------------------------------------


def test_each_committed_request_writes_one_batch_row_with_counts(post_signed, source, other_source):
    source.delivers_for.add(other_source)
    post_signed(
        orjson.dumps([_event("e-1", "a-1"), _event("e-2", "a-2", munchkin="987-XYZ-654"), _event("e-3", "a-3")])
    )
    batch = Batch.objects.get()
    assert batch.accepted == 3
    assert set(Event.objects.values_list("batch_id", flat=True)) == {batch.id}
    counts = {(row[0], row[1], row[2]): row[4] for row in batch.counts}
    openemail = "com.adobe.platform.marketo.activity.standard.openemail"
    assert counts == {(source.id, "activity", openemail): 2, (other_source.id, "activity", openemail): 1}


def test_a_batch_of_only_duplicates_leaves_no_batch_row(post_signed):
    body = orjson.dumps([_event()])
    post_signed(body)
    post_signed(body)
    assert Batch.objects.count() == 1
