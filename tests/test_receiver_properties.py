"""Property-based tests: random bodies and headers thrown at both receivers.

Whatever arrives, the answer is 200, 400, 401 or 413, never a 500; a refusal stores nothing; a 200
stores exactly what it counts, the whole batch or none of it, every raw payload losslessly; and a
redelivery is answered 200 without storing anything twice.

The bounds are set by a hypothesis profile: ``fluxo-ci`` by default (fast enough for every run),
``HYPOTHESIS_PROFILE=fluxo-deep`` for a longer hunt. Run on SQLite and on PostgreSQL: the
latter is stricter (NUL bytes, text widths, integer ranges).
"""

import base64
import copy
import itertools
import json
import os
import re
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from streams import signatures
from streams.models import Batch, Event, Source, ValidationRequest
from tests.conftest import payload
from tests.ingest import legacy_post

pytestmark = pytest.mark.django_db

settings.register_profile(
    "fluxo-ci",
    max_examples=150,
    deadline=None,
    # The Django client, the database and the key server are function-scoped fixtures shared by the
    # examples of one test; every property below compares counts before and after each request.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("fluxo-deep", parent=settings.get_profile("fluxo-ci"), max_examples=2000)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "fluxo-ci"))
STRUCTURED = settings(PROFILE, max_examples=max(PROFILE.max_examples, 200))

ANSWERS = {200, 400, 401, 413}
CLIENT_ID = "your_client_id"
FRESH_EVENT = "@@fresh-event@@"
FRESH_ACTIVITY = "@@fresh-activity@@"
DELETE = object()
_fresh = itertools.count()
_SURROGATE = re.compile("[\ud800-\udfff]")


# --- JSON text, including what Python values cannot express ------------------------------------------


class Raw:
    """A fragment of JSON text written as is; ``storable`` when a receiver must accept it."""

    def __init__(self, text, storable):
        self.text, self.storable = text, storable

    def __repr__(self):
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def _nested(depth, opener=b"[", closer=b"]"):
    return opener * depth + b"1" + closer * depth


STORABLE_RAW = [
    b"-0",
    b"1E2",
    b"0.1e-5",
    b"-9223372036854775809",  # below int64: orjson would read a float
    b"18446744073709551616",  # above uint64
    b"1" + b"0" * 30,
    b"9" * 1000,
    b"0.00000000000000000000000000001",
    b'"\\ud800"',  # lone surrogates, only expressible as escapes
    b'"a\\udfffb"',
    b'"\\udc00\\ud800"',  # a pair the wrong way round
    b'"\\ud83d\\ude00"',  # a proper pair: an emoji
    b'"\\u0000"',
    b'"nul\\u0000in the middle"',
    _nested(100),
    _nested(300),
    _nested(300, b'{"a":', b"}"),
]
UNSTORABLE_RAW = [
    b"1e400",
    b"-1e400",
    b"NaN",
    b"Infinity",
    b"01",
    b'"\xff\xfe"',  # not UTF-8
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 (CESU): not UTF-8 either
    b"9" * 5000,
    _nested(900),
    _nested(1000),
    _nested(1030),
    _nested(1000, b'{"":', b"}"),
]


def encode(value, ascii_only=True):
    """JSON text for a generated value; lone surrogates are always written as escapes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        members = (_string(k, ascii_only) + b":" + encode(v, ascii_only) for k, v in value.items())
        return b"{" + b",".join(members) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(v, ascii_only) for v in value) + b"]"
    if isinstance(value, str):
        return _string(value, ascii_only)
    return json.dumps(value).encode()


def _string(value, ascii_only):
    return json.dumps(value, ensure_ascii=ascii_only or bool(_SURROGATE.search(value))).encode()


def storable(value):
    if isinstance(value, Raw):
        return value.storable
    if isinstance(value, dict):
        return all(storable(v) for v in value.values())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


ODD_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "null",
    "2024-12-17T18:39:33Z",
    "2024-07-11 13:20:42.755",
    "2024-12-17T18:39:33-5:00",
    "9998-12-31T23:59:59-14:00",
    "1970-01-01T00:00:00+14:00",
    "0001-01-01",
    "2024-02-30",
    "-5",
    "--5",
    "+7",
    " 12 ",
    "1_000",
    "²",
    "٣",
    "1e3",
    "99999999999999999999",
    "123-ABC-456",
    "987-xyz-654",
    "ß" * 40,
    "\ud800",
    "x\udbff",
    "\udc00y",
    "😀",
    "\u2028",
    "com.adobe.platform.marketo.activity.standard.openemail",
]
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**19, -(10**19)]),
    st.sampled_from([1e11, 1e11 + 1, 1.7e12, -1e10, 1e300, -1e300, 5e-324, 0.5, -0.0, 1.0, 2.0**53]),
    st.floats(allow_nan=False, allow_infinity=False),
)
STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(ODD_STRINGS),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=4), st.sampled_from(ODD_STRINGS), st.text(max_size=4)),
    st.builds(
        lambda unit, n: unit * n, st.sampled_from(["x", "é", "😀", "\x00", "7", "\ud800"]), st.integers(60, 1200)
    ),
)
KEYS = st.one_of(
    st.text(max_size=8), st.sampled_from(["", "\x00", "eventid", "type", "data", "id", "validationUrl", "\ud800"])
)
# What some senders put around a JSON text: a UTF-8 byte order mark, whitespace.
WRAPPINGS = st.sampled_from([(b"", b""), (b"\xef\xbb\xbf", b""), (b" \r\n\t", b"\n"), (b"\xef\xbb\xbf\n", b" ")])


def json_values(raw):
    scalars = st.one_of(
        st.none(), st.booleans(), NUMBERS, STRINGS, st.sampled_from([Raw(t, t in STORABLE_RAW) for t in raw])
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)),
        max_leaves=8,
    )


STORABLE_JSON = json_values(STORABLE_RAW)
ANY_JSON = json_values(STORABLE_RAW + UNSTORABLE_RAW)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


# --- Near-valid Marketo envelopes ------------------------------------------------------------------------


def _io_templates():
    """One element of every I/O envelope variant, with placeholders for fresh ids."""
    found = []
    for name in ("lads_io_batch.json", "uads_batch_current.json", "notification_batch.json"):
        found.extend(json.loads(payload(name)))
    found.extend(json.loads(payload(name)) for name in ("uads_single_v1.json", "uads_single_nested_rcid.json"))
    for element in found:
        for name in ("eventid", "event_id"):
            if name in element:
                element[name] = FRESH_EVENT
        inner = _cloudevent(element)
        if "id" in inner:
            inner["id"] = FRESH_ACTIVITY
    return found


def _cloudevent_path(element):
    wrapper = element.get("event")
    if isinstance(wrapper, dict):
        return ("event", "body") if isinstance(wrapper.get("body"), dict) else ("event",)
    return ()


def _cloudevent(element):
    for name in _cloudevent_path(element):
        element = element[name]
    return element


def _legacy_template():
    push = json.loads(payload("lads_legacy_push_batch.json"))
    for activity in push["activities"]:
        activity["marketoGUID"] = FRESH_ACTIVITY
    return push


IO_TEMPLATES = _io_templates()
LEGACY_TEMPLATE = _legacy_template()
IO_TYPES = st.one_of(
    st.sampled_from(
        [
            "com.adobe.platform.marketo.activity.standard.openemail",
            "com.adobe.platform.marketo.activity.standard.nosuchthing",
            "com.adobe.platform.marketo.activity.custom",
            "com.adobe.platform.marketo.activity.",
            "com.adobe.platform.marketo.audit.user.email",
            "com.adobe.platform.marketo.notification.campaign_abort",
            "com.adobe.platform.marketo.notification.",
            "com.adobe.io.observability.event",
            "com.adobe.platform.marketo.activity.\x00",
            "com.adobe.platform.marketo.notification." + "x" * 300,
        ]
    ),
    STORABLE_JSON,
)
TOP_FIELDS = ["eventid", "event_id", "recipientclientid", "recipient_client_id", "event", "source", "specversion"]
CE_FIELDS = ["type", "id", "time", "data", "body", "source"]
DATA_FIELDS = [
    "munchkinId",
    "leadId",
    "activityTypeId",
    "activityType",
    "activityDate",
    "attributes",
    "primaryAttributeValue",
    "primaryAttributeValueId",
    "campaignId",
    "campaignName",
    "programId",
    "programName",
    "componentType",
    "componentId",
    "eventAction",
    "user",
    "userId",
    "subType",
]
MUNCHKINS = st.sampled_from(["123-ABC-456", "987-XYZ-654", "987-xyz-654", "555-NOP-555", ""])
LEGACY_FIELDS = ["marketoGUID", "id", "munchkinId", *DATA_FIELDS]


def _value_for(field):
    """A replacement: usually any storable JSON, for some fields also plausible odd values."""
    if field == "type":
        return IO_TYPES
    if field == "munchkinId":
        return st.one_of(MUNCHKINS, STORABLE_JSON)
    return STORABLE_JSON


@st.composite
def io_elements(draw):
    """A genuine I/O element with a few fields replaced by values of any type, or removed."""
    element = copy.deepcopy(draw(st.sampled_from(IO_TEMPLATES)))
    for _ in range(draw(st.integers(0, 5))):
        where = draw(st.sampled_from(["top", "cloudevent", "data", "nested_recipient"]))
        field = draw(
            st.sampled_from({"top": TOP_FIELDS, "cloudevent": CE_FIELDS, "data": DATA_FIELDS}.get(where, [""]))
        )
        value = draw(st.one_of(_value_for(field), st.just(DELETE)))
        path = {
            "top": (field,),
            "cloudevent": (*_cloudevent_path(element), field),
            "data": (*_cloudevent_path(element), "data", field),
            "nested_recipient": ("event", "recipientclientid"),
        }[where]
        _set(element, path, value)
    return element


@st.composite
def legacy_pushes(draw):
    """A genuine legacy push, its envelope and activities with fields replaced by anything."""
    push = copy.deepcopy(LEGACY_TEMPLATE)
    activities = [
        copy.deepcopy(draw(st.sampled_from(LEGACY_TEMPLATE["activities"]))) for _ in range(draw(st.integers(0, 6)))
    ]
    for activity in activities:
        for _ in range(draw(st.integers(0, 4))):
            field = draw(st.sampled_from(LEGACY_FIELDS))
            _set(activity, (field,), draw(st.one_of(_value_for(field), st.just(DELETE))))
    push["activities"] = activities
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(["sourceApplication", "munchkinId", "messageId", "messageCreatedDate", "extra"]))
        _set(push, (field,), draw(st.one_of(_value_for(field), st.just(DELETE))))
    return push


def _set(obj, path, value):
    for name in path[:-1]:
        obj = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(obj, dict):
        return
    if value is DELETE:
        obj.pop(path[-1], None)
    else:
        obj[path[-1]] = value


def with_fresh_ids(element):
    """The element with its placeholders replaced by ids never seen before (one per element)."""
    n = next(_fresh)
    ids = {FRESH_EVENT: f"fz-event-{n}-{uuid.uuid4()}", FRESH_ACTIVITY: f"fz-activity-{n}-{uuid.uuid4()}"}
    return _replace(element, ids)


def _replace(value, ids):
    if isinstance(value, dict):
        return {k: _replace(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, ids) for v in value]
    return ids.get(value, value) if isinstance(value, str) else value


def _no_key(value):
    """True for an id that yields no de-duplication key (nothing left once NULs are dropped)."""
    return value is None or isinstance(value, (dict, list)) or (isinstance(value, str) and not value.strip("\x00"))


def io_cannot_be_duplicate(element):
    """Before ids are filled in: True when the element's keys (eventid, else event_id, and the
    CloudEvent id) are each a fresh placeholder or absent, so it cannot meet an earlier event."""
    first = element.get("eventid")
    first = element.get("event_id") if first in (None, "") else first
    activity_id = _cloudevent(element).get("id")
    return (first == FRESH_EVENT or _no_key(first)) and (activity_id == FRESH_ACTIVITY or _no_key(activity_id))


def legacy_cannot_be_duplicate(activity):
    """The same for a legacy activity, whose key is its marketoGUID, else its id."""
    guid = activity.get("marketoGUID")
    guid = activity.get("id") if guid is None else guid
    return guid == FRESH_ACTIVITY or _no_key(guid)


# --- Sending and observing ------------------------------------------------------------------------------


def io_url(source):
    return f"/ingest/{source.ingest_key}/adobe-io/"


class Ledger:
    """What the database held before a request, to compare with what it holds after."""

    def __init__(self):
        self.events = Event.objects.count()
        self.batches = Batch.objects.count()
        self.validations = ValidationRequest.objects.count()
        self.last_validation = ValidationRequest.objects.order_by("-id").values_list("id", flat=True).first() or 0
        self.last_event = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def new_events(self):
        return Event.objects.filter(id__gt=self.last_event)

    def unchanged(self):
        return (Event.objects.count(), Batch.objects.count(), ValidationRequest.objects.count()) == (
            self.events,
            self.batches,
            self.validations,
        )


def check(response, ledger, body=None, io=True):
    """The properties every answer has; returns the new events of a 200 that stored a batch."""
    note(f"answer: {response.status_code} {response.content[:300]!r}")
    assert response.status_code in ANSWERS
    answer = response.json()
    if response.status_code != 200:
        assert set(answer) == {"error", "detail"}
        assert ledger.unchanged(), "a refused request stored something"
        return None
    if "validation" in answer:
        # One row more, or as many when the source's oldest was dropped to keep the last 20.
        assert ValidationRequest.objects.filter(id__gt=ledger.last_validation).count() == 1
        assert ledger.new_events().count() == 0
        return None
    return _check_stored(answer, ledger, None if body is None else parsed_elements(body, io))


def _check_stored(answer, ledger, elements):
    accepted, duplicates = answer["accepted"], answer["duplicates"]
    stored = list(ledger.new_events())
    assert len(stored) == accepted, "the answer does not count what was stored"
    assert Event.objects.count() == ledger.events + accepted
    for event in stored:
        assert event.occurred_at is None or 1969 <= event.occurred_at.year <= 9999, "an implausible time"
    if elements is not None:
        assert accepted + duplicates == len(elements), "part of the batch went missing"
        for event in stored:
            assert json.loads(event.raw) in elements, "the raw payload is not what was delivered"
    if accepted:
        batch = Batch.objects.get(id__in={event.batch_id for event in stored})
        assert Batch.objects.count() == ledger.batches + 1
        assert (batch.accepted, batch.duplicates) == (accepted, duplicates)
        per_kind = Counter((e.source_id, e.stream, e.type, e.activity_type_id) for e in stored)
        assert {tuple(row[:-1]): row[-1] for row in batch.counts} == per_kind, "batch counts differ from rows"
    else:
        assert Batch.objects.count() == ledger.batches
    return stored


def parsed_elements(body, io):
    """The elements a body carries, parsed here independently, when it is JSON of the stream's shape."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if io:
        return [document] if isinstance(document, dict) else document if isinstance(document, list) else None
    activities = document.get("activities") if isinstance(document, dict) else None
    return activities if isinstance(activities, list) else None


def check_redelivery(send, body, stored, io=True):
    """Sending the same body again: 200, and only events without any de-duplication key stored again."""
    keyless = sum(1 for event in stored if event.event_uid is None and event.activity_key is None)
    ledger = Ledger()
    response = send(body)
    assert response.status_code == 200
    check(response, ledger, body, io)
    assert response.json()["accepted"] == keyless


# --- Fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def send_io(client, source, other_source, key_server, signed_headers):
    """POST a body to the source's I/O URL, genuinely signed unless headers are given."""

    def send(body, headers=None, content_type="application/json", **extra):
        headers = signed_headers(body) if headers is None else headers
        return client.generic("POST", io_url(source), body, content_type=content_type, **headers, **extra)

    return send


@pytest.fixture
def send_push(client, source, other_source, api_token):
    """POST a body to the source's legacy push URL with its API token unless headers are given."""

    def send(body, headers=None, content_type="application/json", **extra):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"} if headers is None else headers
        return legacy_post(client, source, None, body, content_type=content_type, **headers, **extra)

    return send


@pytest.fixture
def checked_source(db):
    return Source.objects.create(name="Checked", munchkin_id="555-CHK-555", adobe_client_id=CLIENT_ID)


# --- Random bytes and random JSON -----------------------------------------------------------------------

NEAR_JSON_BYTES = st.builds(
    lambda body, at, junk: body[:at] + junk + body[at + len(junk) :],
    st.sampled_from(
        [payload("lads_io_batch.json"), payload("uads_single_v1.json"), payload("lads_legacy_push_batch.json")]
    ),
    st.integers(0, 3000),
    st.binary(max_size=4),
)
BYTES = st.one_of(st.binary(max_size=2000), NEAR_JSON_BYTES)


@PROFILE
@given(body=BYTES, signed=st.booleans())
def test_random_bytes_never_break_the_adobe_io_receiver(send_io, body, signed):
    ledger = Ledger()
    check(send_io(body, headers=None if signed else {}), ledger, body)


@PROFILE
@given(body=BYTES)
def test_random_bytes_never_break_the_legacy_push(send_push, body):
    ledger = Ledger()
    check(send_push(body), ledger, body, io=False)


@PROFILE
@given(document=ANY_JSON, ascii_only=st.booleans())
def test_any_json_document_is_stored_whole_or_refused_whole_by_adobe_io(send_io, document, ascii_only):
    body = encode(document, ascii_only)
    ledger = Ledger()
    response = send_io(body)
    stored = check(response, ledger, body)
    elements = parsed_elements(body, io=True)
    if storable(document) and elements is not None and all(isinstance(e, dict) for e in elements):
        assert response.status_code == 200, "an event was refused for a quirk"
    if stored is not None:
        check_redelivery(send_io, body, stored)


@PROFILE
@given(document=ANY_JSON, ascii_only=st.booleans())
def test_any_json_document_is_stored_whole_or_refused_whole_by_the_legacy_push(send_push, document, ascii_only):
    body = encode(document, ascii_only)
    ledger = Ledger()
    stored = check(send_push(body), ledger, body, io=False)
    if stored is not None:
        check_redelivery(send_push, body, stored, io=False)


# --- Near-valid deliveries: never lose an event over a cosmetic quirk -----------------------------------


@st.composite
def io_deliveries(draw):
    """A delivery of near-valid elements: one object, or a batch that may repeat an element."""
    templates = draw(st.lists(io_elements(), min_size=1, max_size=6))
    fresh = all(io_cannot_be_duplicate(e) for e in templates)
    elements = [with_fresh_ids(e) for e in templates]
    if draw(st.booleans()) and len(elements) > 1:
        elements.append(copy.deepcopy(elements[draw(st.integers(0, len(elements) - 1))]))
        fresh = False
    single = len(elements) == 1 and draw(st.booleans())
    return (elements[0] if single else elements), elements, fresh


@STRUCTURED
@given(delivery=io_deliveries(), ascii_only=st.booleans(), wrapping=WRAPPINGS)
def test_a_near_valid_io_delivery_is_stored_whole_and_exactly_once(
    send_io, source, other_source, delivery, ascii_only, wrapping
):
    document, elements, fresh = delivery
    body = wrapping[0] + encode(document, ascii_only) + wrapping[1]
    ledger = Ledger()
    response = send_io(body)
    assert response.status_code == 200, "an event was refused for a quirk"
    stored = check(response, ledger, body)
    if fresh:
        assert response.json() == {"accepted": len(elements), "duplicates": 0}
    assert {event.source_id for event in stored} <= {source.id, other_source.id}
    check_redelivery(send_io, body, stored)


@STRUCTURED
@given(push=legacy_pushes(), ascii_only=st.booleans(), wrapping=WRAPPINGS)
def test_a_near_valid_legacy_push_is_stored_whole_and_exactly_once(send_push, push, ascii_only, wrapping):
    fresh = all(legacy_cannot_be_duplicate(activity) for activity in push["activities"])
    push["activities"] = [with_fresh_ids(activity) for activity in push["activities"]]
    body = wrapping[0] + encode(push, ascii_only) + wrapping[1]
    ledger = Ledger()
    response = send_push(body)
    assert response.status_code == 200, "an activity was refused for a quirk"
    stored = check(response, ledger, body, io=False)
    if fresh:
        assert response.json() == {"accepted": len(push["activities"]), "duplicates": 0}
    check_redelivery(send_push, body, stored, io=False)


@PROFILE
@given(elements=st.lists(io_elements(), min_size=1, max_size=5), intruder=STORABLE_JSON, at=st.integers(0, 5))
def test_a_batch_with_one_element_that_is_not_an_object_is_refused_whole(send_io, elements, intruder, at):
    assume(not isinstance(json.loads(encode(intruder)), dict))
    elements = [with_fresh_ids(e) for e in elements]
    elements.insert(at, intruder)
    ledger = Ledger()
    response = send_io(encode(elements))
    assert response.status_code == 400
    check(response, ledger)


@PROFILE
@given(push=legacy_pushes(), intruder=STORABLE_JSON, at=st.integers(0, 6), where=st.sampled_from(["element", "list"]))
def test_a_push_whose_activities_are_not_objects_is_refused_whole(send_push, push, intruder, at, where):
    assume(not isinstance(json.loads(encode(intruder)), dict if where == "element" else list))
    activities = [with_fresh_ids(activity) for activity in push["activities"]]
    if where == "element":
        activities.insert(at, intruder)
        push["activities"] = activities
    else:
        push["activities"] = intruder
    ledger = Ledger()
    response = send_push(encode(push))
    assert response.status_code == 400
    check(response, ledger)


def _recipients(element):
    """Every recipient client id the element states, in either spelling, at every level."""
    names = ("recipientclientid", "recipient_client_id")
    wrapper = element.get("event") if isinstance(element.get("event"), dict) else {}
    body = wrapper.get("body") if isinstance(wrapper.get("body"), dict) else {}
    return [place[name] for place in (element, wrapper, body) for name in names if name in place]


@PROFILE
@given(elements=st.lists(io_elements(), min_size=1, max_size=5))
def test_a_batch_is_refused_whole_or_stored_whole_when_recipients_are_checked(
    client, checked_source, key_server, signed_headers, elements
):
    elements = [with_fresh_ids(e) for e in elements]
    body = encode(elements)
    ledger = Ledger()
    response = client.generic(
        "POST", io_url(checked_source), body, content_type="application/json", **signed_headers(body)
    )
    check(response, ledger, body)
    # Stored only when every client id stated anywhere is this source's (an empty or non-string one
    # is a mismatch); an element stating none is stored, flagged.
    matching = all(value == CLIENT_ID for e in elements for value in _recipients(e))
    assert response.status_code == (200 if matching else 401)


@PROFILE
@given(url=STORABLE_JSON, extra=st.dictionaries(KEYS, STORABLE_JSON, max_size=2), ascii_only=st.booleans())
def test_an_unsigned_validation_post_is_kept_when_it_is_one_and_refused_otherwise(send_io, url, extra, ascii_only):
    body = encode({**extra, "validationUrl": url}, ascii_only)
    document = json.loads(body)
    ledger = Ledger()
    response = send_io(body, headers={})
    check(response, ledger, body)
    looks_like_one = (
        isinstance(document["validationUrl"], str)
        and not {"type", "data", "event", "eventid", "event_id"} & document.keys()
    )
    assert response.status_code == (200 if looks_like_one and len(body) < 4096 else 401)
    if response.status_code == 200:
        kept = ValidationRequest.objects.latest("id").url
        assert "\x00" not in kept and len(kept) <= 2000
        kept.encode("utf-8")  # storable text: lone surrogates replaced


# --- Random headers ------------------------------------------------------------------------------------

KEY_PATHS = st.one_of(
    HEADER_TEXT,
    st.sampled_from(
        [
            "",
            "/prod/keys/pub-key-unknown.pem",
            "/prod/keys/pub-key-../../x.pem",
            "@evil.example/prod/keys/pub-key-a.pem",
            "//evil.example/prod/keys/pub-key-a.pem",
            "/prod/keys/pub-key-a.pem/../../etc",
            "/prod/keys/pub-key-a.pem\n",
            "http://127.0.0.1/prod/keys/pub-key-a.pem",
        ]
    ),
    st.from_regex(r"\A/prod/keys/pub-key-[A-Za-z0-9-]{1,20}\.pem\Z"),
)


@st.composite
def signature_pair(draw, genuine_signature, genuine_path):
    """One signature header and its key path: each genuine, missing, or anything at all."""
    signature = draw(
        st.one_of(
            st.just(("genuine", genuine_signature)),
            st.just(("padded", f"  {genuine_signature} ")),
            st.just(("missing", None)),
            st.tuples(st.just("junk"), st.one_of(HEADER_TEXT, st.binary(max_size=300).map(_b64))),
        )
    )
    path = draw(
        st.one_of(st.just(("genuine", genuine_path)), st.just(("missing", None)), st.tuples(st.just("junk"), KEY_PATHS))
    )
    return signature, path


def _b64(raw):
    return base64.b64encode(raw).decode()


@PROFILE
@given(data=st.data(), elements=st.lists(io_elements(), min_size=1, max_size=3))
def test_random_signature_headers_let_only_a_genuine_signature_through(send_io, key_pairs, data, elements):
    signatures.clear_cache()  # each example a fresh process: examples together would spend the key-fetch budget
    body = encode([with_fresh_ids(e) for e in elements])
    headers, verifies = {}, False
    for n, pair in enumerate(key_pairs, start=1):
        (sig_kind, sig), (path_kind, path) = data.draw(signature_pair(pair.sign(body), pair.path))
        verifies |= sig_kind in ("genuine", "padded") and path_kind == "genuine"
        if sig is not None:
            headers[f"HTTP_X_ADOBE_DIGITAL_SIGNATURE_{n}"] = sig
        if path is not None:
            headers[f"HTTP_X_ADOBE_PUBLIC_KEY{n}_PATH"] = path
    ledger = Ledger()
    response = send_io(body, headers=headers)
    check(response, ledger, body)
    assert response.status_code == (200 if verifies else 401)


@PROFILE
@given(data=st.data(), body=st.one_of(st.builds(encode, legacy_pushes()), BYTES))
def test_random_authorization_headers_let_only_the_token_through(send_push, api_token, data, body):
    genuine = [api_token, f"Bearer {api_token}", f"bearer {api_token}", f"  BEARER   {api_token}  "]
    value = data.draw(
        st.one_of(
            st.sampled_from(genuine),
            HEADER_TEXT,
            st.builds(lambda cut: api_token[:cut], st.integers(0, len(api_token) - 1)),
            st.builds(lambda junk: f"Bearer {api_token}{junk}", HEADER_TEXT.filter(lambda j: j.strip())),
            st.just(None),
        )
    )
    ledger = Ledger()
    response = send_push(body, headers={} if value is None else {"HTTP_AUTHORIZATION": value})
    check(response, ledger, body, io=False)
    if value not in genuine:
        assert response.status_code == 401


CONTENT_TYPES = st.one_of(
    HEADER_TEXT,
    st.sampled_from(
        [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "application/json; charset=nonsense",
        ]
    ),
)


@st.composite
def content_lengths(draw, actual):
    """A Content-Length header: the true one, understated, over the limit, negative or not a number."""
    return draw(
        st.one_of(
            st.just(str(actual)),
            st.integers(0, max(actual - 1, 0)).map(str),
            st.integers(10**8, 10**20).map(str),
            st.integers(-(10**6), -1).map(str),
            HEADER_TEXT.filter(lambda t: not t.strip().isdigit()),
        )
    )


@PROFILE
@given(data=st.data(), push=legacy_pushes(), protocol=st.sampled_from(["io", "legacy"]))
def test_random_content_type_and_length_never_break_either_receiver(send_io, send_push, data, push, protocol):
    push["activities"] = [with_fresh_ids(activity) for activity in push["activities"]]
    body = encode(push if protocol == "legacy" else push["activities"] or [{}])
    length = data.draw(content_lengths(len(body)))
    send = send_io if protocol == "io" else send_push
    ledger = Ledger()
    response = send(body, content_type=data.draw(CONTENT_TYPES), CONTENT_LENGTH=length)
    check(response, ledger, body, io=protocol == "io")
    if length == str(len(body)):
        assert response.status_code == 200, "Content-Type is not enforced"
