"""Marketo's wire formats: regressions found by the property-based tests (test_receiver_properties.py).

Each test pins one quirk that used to lose a whole batch (a 400, which Adobe answers by dropping the
events) or crash the receiver (a 500), or that silently changed what an event carried.
"""

import codecs
import json

import orjson
import pytest

from streams import wire
from streams.models import Batch, Event
from tests.ingest import legacy_post

SURROGATE_ELEMENT = (
    b'{"eventid":"e-sur","type":"com.adobe.platform.marketo.activity.standard.openemail","id":"a-sur",'
    b'"data":{"munchkinId":"123-ABC-456","leadId":"1","activityTypeId":10,'
    b'"primaryAttributeValue":"cut emoji \\ud83d"}}'
)


def _deeply_nested(depth):
    """A Python list nested ``depth`` levels, built without recursion."""
    value = 1
    for _ in range(depth):
        value = [value]
    return value


# --- Parsing ---------------------------------------------------------------------------------------------


def test_a_lone_surrogate_escape_is_parsed_not_refused():
    assert wire.parse_json(b'{"a": "x\\ud800", "b": "\\udc00"}') == {"a": "x\ud800", "b": "\udc00"}


def test_a_lone_surrogate_is_kept_in_the_raw_payload_as_its_escape():
    row = wire.normalise_io(wire.parse_json(SURROGATE_ELEMENT))
    assert "\\ud83d" in row["raw"]
    assert json.loads(row["raw"])["data"]["primaryAttributeValue"] == "cut emoji \ud83d"
    row["raw"].encode("utf-8")  # storable text


def test_a_lone_surrogate_becomes_a_replacement_character_in_a_column():
    assert wire.text("cut emoji \ud83d") == "cut emoji \ufffd"
    assert wire.key("e-\udfff") == "e-\ufffd"


def test_a_leading_byte_order_mark_is_ignored():
    assert wire.parse_json(codecs.BOM_UTF8 + b'{"eventid": "e-1"}') == {"eventid": "e-1"}


def test_an_integer_below_the_64_bit_range_keeps_every_digit():
    parsed = wire.parse_json(b'{"leadId": -9223372036854775809}')
    assert parsed == {"leadId": -9223372036854775809}
    assert wire.dump_json(parsed) == '{"leadId":-9223372036854775809}'


def test_a_number_too_large_for_a_double_is_refused_even_beside_a_huge_integer():
    # Alone it was refused; beside a 20-digit integer it was read as infinity and kept as null.
    for body in (b"[1e400]", b"[1e400, 100000000000000000000]"):
        with pytest.raises(wire.Malformed):
            wire.parse_json(body)


def test_an_element_nested_too_deeply_to_write_back_is_malformed_not_a_crash():
    with pytest.raises(wire.Malformed):
        wire.dump_json(_deeply_nested(5000))


# --- Lenient readers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["²", "--5", "1_000", "12345678901234567890", "-"])
def test_an_integer_text_of_anything_but_ascii_digits_is_no_integer(value):
    assert wire.as_int(value) is None


@pytest.mark.parametrize(("value", "expected"), [("12", 12), (" 12 ", 12), ("-7", -7), ("2147483648", None)])
def test_an_integer_text_of_ascii_digits_is_read(value, expected):
    assert wire.as_int(value) == expected


@pytest.mark.parametrize("value", [-1e10, -1, 253402300799000])  # the last in milliseconds: 9999
def test_an_epoch_time_outside_1970_to_9998_is_flagged_unreadable_as_text_times_are(value):
    flags = set()
    assert wire.parse_time(value, flags) is None
    assert "time_unreadable" in flags


# --- Through the receivers --------------------------------------------------------------------------------

receivers = pytest.mark.django_db


@pytest.fixture
def post_io(client, source, key_server, signed_headers):
    def post(body, **extra):
        url = f"/ingest/{source.ingest_key}/adobe-io/"
        return client.generic("POST", url, body, content_type="application/json", **signed_headers(body), **extra)

    return post


@pytest.fixture
def post_push(client, source, api_token):
    def post(body, **extra):
        return legacy_post(client, source, api_token, body, **extra)

    return post


def _push(*activities):
    return orjson.dumps({"munchkinId": "123-ABC-456", "messageId": "m-1", "activities": list(activities)})


@receivers
def test_a_batch_with_a_truncated_emoji_is_stored_not_refused(post_io):
    response = post_io(b"[" + SURROGATE_ELEMENT + b"]")
    assert response.status_code == 200
    event = Event.objects.get()
    assert event.primary_attribute == "cut emoji \ufffd"
    assert json.loads(event.raw)["data"]["primaryAttributeValue"] == "cut emoji \ud83d"


@receivers
def test_a_push_with_a_byte_order_mark_is_stored(post_push):
    response = post_push(codecs.BOM_UTF8 + _push({"marketoGUID": "g-bom", "activityTypeId": 1}))
    assert response.json() == {"accepted": 1, "duplicates": 0}


@receivers
def test_an_activity_type_id_with_a_superscript_digit_is_stored_not_a_500(post_push):
    response = post_push(_push({"marketoGUID": "g-sup", "activityTypeId": "²"}))
    assert response.status_code == 200
    assert Event.objects.get().activity_type_id is None


@receivers
def test_a_delivery_nested_too_deeply_to_store_is_400_and_nothing_is_stored(post_io):
    # orjson reads up to 1024 levels; writing the raw payload back gives up before that.
    body = b'[{"eventid":"e-deep","data":' + b"[" * 1020 + b"]" * 1020 + b"}]"
    response = post_io(body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert (Event.objects.count(), Batch.objects.count()) == (0, 0)


@receivers
@pytest.mark.parametrize("length", ["abc", "", "-5", "1e3"])
def test_a_content_length_that_is_not_a_number_is_a_refusal_not_a_500(post_push, length):
    response = post_push(_push({"marketoGUID": "g-len"}), CONTENT_LENGTH=length)
    assert response.status_code == 400  # the body is read as empty: not JSON
    assert Event.objects.count() == 0
