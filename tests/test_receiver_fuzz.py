"""A bounded, seeded fuzz run: 2,000 mutated bodies thrown at each receiver, authenticated.

Valid deliveries (from the sandbox generator and the recorded payloads) are mutated: bytes flipped,
cut or inserted, values replaced by odd JSON (huge integers, NaN, deep nesting, lone surrogates,
wrong types, huge strings), keys duplicated, a byte order mark put in front. The I/O bodies are
signed after mutation with a key pinned on the source and the pushes carry a valid token, so every
body reaches the parser. For each answer: never a 5xx; a refusal stores nothing (events, batches,
validation requests); a 200 counts every element the body had when it parses. At the end the
receiver still answers a valid delivery with 200.

The run is deterministic (SEED); a failure names the case number and the mutations that made it.
"""

import codecs
import copy
import json
import random
from dataclasses import dataclass, field

import orjson
import pytest
from django.db import connection

from streams.models import Batch, Event, Source, ValidationRequest
from streams.simulator import envelopes
from streams.simulator.generators import ACTIVITY, Generator
from tests.conftest import payload
from tests.ingest import activity, audit, io_post, legacy_post, legacy_push

pytestmark = pytest.mark.django_db

SEED = 20261202
CASES = 2000
BODY_LIMIT = 256 * 1024  # small, so that huge strings reach it (and sometimes pass it) cheaply
MUNCHKIN = "123-ABC-456"
IO_PAYLOADS = [
    "lads_io_batch.json",
    "uads_batch_current.json",
    "notification_batch.json",
    "uads_single_v1.json",
    "uads_single_nested_rcid.json",
]
ID_FIELDS = {"eventid", "event_id", "id", "marketoGUID", "messageId"}


# --- JSON text, including what a Python value cannot say ---------------------------------------------


@dataclass
class Raw:
    """A fragment of JSON text written as is (NaN, 400-digit integers, lone surrogate escapes…)."""

    text: bytes


@dataclass
class Pairs:
    """An object whose members are written in this order, keys repeated as given."""

    members: list = field(default_factory=list)


def encode(value):
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return b"{" + b",".join(encode(k) + b":" + encode(v) for k, v in value.members) + b"}"
    if isinstance(value, dict):
        return encode(Pairs(list(value.items())))
    if isinstance(value, list):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return json.dumps(value).encode()


def odd_values(rng):
    """Values a sender should not send but a receiver must survive."""
    depth = rng.choice([50, 300, 900, 1100, 5000])
    return [
        Raw(b"9" * rng.choice([19, 20, 21, 40, 400, 5000])),
        Raw(b"-" + b"9" * rng.choice([19, 20, 400])),
        Raw(b"1e400"),
        Raw(b"-1e400"),
        Raw(b"NaN"),
        Raw(b"Infinity"),
        Raw(b"-Infinity"),
        Raw(b"-0"),
        Raw(b"0.1e-999"),
        Raw(b"01"),
        Raw(b"[" * depth + b"]" * depth),
        Raw(b'{"a":' * depth + b"1" + b"}" * depth),
        Raw(b'"\\ud800"'),
        Raw(b'"x\\udfffy"'),
        Raw(b'"\\udc00\\ud800"'),
        Raw(b'"\\u0000"'),
        Raw(b'"\xed\xa0\x80"'),  # a surrogate encoded as UTF-8: not UTF-8
        Raw(b'"\xff\xfe"'),
        Raw(b'"\xef\xbb\xbf"'),  # a byte order mark inside a string
        None,
        True,
        0,
        -1,
        2**63,
        -(2**63) - 1,
        1.5,
        "",
        "\x00",
        "2024-02-30T25:61:61Z",
        "😀" * 50,
        [],
        {},
        [None, 1, "x"],
        {"": {"": []}},
        "x" * rng.choice([1_000, 60_000, BODY_LIMIT // 2, BODY_LIMIT - 1_000, BODY_LIMIT + 1]),
    ]


# --- The mutator ---------------------------------------------------------------------------------------


class Mutator:
    """Seeded mutations of a document, then of its bytes; ``log`` says what was done to the last body."""

    def __init__(self, rng):
        self.rng = rng
        self.log = []

    def body(self, document):
        self.log = []
        document = copy.deepcopy(document)
        if self.rng.random() < 0.7:
            for _ in range(self.rng.randint(1, 4)):
                document = self._structural(document)
        body = encode(document)
        if self.rng.random() < 0.4:
            for _ in range(self.rng.randint(1, 3)):
                body = self._bytes(body)
        if self.rng.random() < 0.1:
            self.log.append("bom")
            body = codecs.BOM_UTF8 + body
        return body

    def _structural(self, document):
        containers = list(_containers(document))
        kind = self.rng.choice(["replace", "replace", "replace", "delete", "duplicate_key", "retype_top"])
        self.log.append(kind)
        if kind == "retype_top" or not containers:
            return self.rng.choice(odd_values(self.rng))
        parent = self.rng.choice(containers)
        if isinstance(parent, list):
            if not parent:
                parent.append(self.rng.choice(odd_values(self.rng)))
                return document
            at = self.rng.randrange(len(parent))
            if kind == "delete":
                del parent[at]
            else:
                parent[at] = self.rng.choice(odd_values(self.rng))
            return document
        return self._mutate_object(document, parent, kind)

    def _mutate_object(self, document, parent, kind):
        keys = list(parent) or ["eventid"]
        key = self.rng.choice(keys)
        if kind == "delete":
            parent.pop(key, None)
        elif kind == "duplicate_key":
            # Written twice, the mutated value last or first: parsers differ on which one wins.
            odd = self.rng.choice(odd_values(self.rng))
            pairs = [(key, parent.get(key)), (key, odd)]
            if self.rng.random() < 0.5:
                pairs.reverse()
            written = Pairs([*((k, v) for k, v in parent.items() if k != key), *pairs])
            if parent is document:
                return written
            self._replace(document, parent, written)
        else:
            parent[key] = self.rng.choice(odd_values(self.rng))
        return document

    def _replace(self, document, old, new):
        """Put ``new`` where ``old`` is inside ``document`` (by identity)."""
        for container in _containers(document):
            items = container.items() if isinstance(container, dict) else enumerate(container)
            for key, value in list(items):
                if value is old:
                    container[key] = new
                    return

    def _bytes(self, body):
        if not body:
            return self.rng.randbytes(self.rng.randint(1, 8))
        at = self.rng.randrange(len(body))
        kind = self.rng.choice(["flip", "set", "truncate", "insert", "delete", "repeat"])
        self.log.append(f"{kind}@{at}")
        if kind == "flip":
            return body[:at] + bytes([body[at] ^ (1 << self.rng.randrange(8))]) + body[at + 1 :]
        if kind == "set":
            return body[:at] + bytes([self.rng.randrange(256)]) + body[at + 1 :]
        if kind == "truncate":
            return body[:at]
        if kind == "insert":
            junk = self.rng.choice([b"NaN", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\\ud800", b"{" * 40, b"\x00", b","])
            return body[:at] + junk + body[at:]
        if kind == "delete":
            return body[:at] + body[at + self.rng.randint(1, 64) :]
        return body[:at] + body[at : at + 256] * self.rng.randint(2, 4) + body[at + 256 :]


def _containers(value):
    """Every dict and list inside ``value``, itself included (Raw and Pairs are leaves)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            yield item
            stack.extend(item)


# --- Valid deliveries to start from --------------------------------------------------------------------


class Deliveries:
    """Valid bodies: mostly fresh ones from the sandbox generator, some recorded payloads."""

    def __init__(self, rng):
        self.rng = rng
        self.io_events = Generator(MUNCHKIN, seed=SEED, reuse_ids=True)
        self.activities = Generator(MUNCHKIN, seed=SEED + 1, streams=(ACTIVITY,), reuse_ids=True)
        self.recorded = [orjson.loads(payload(name)) for name in IO_PAYLOADS]
        self.legacy_recorded = orjson.loads(payload("lads_legacy_push_batch.json"))
        self.serial = 0

    def io(self):
        if self.rng.random() < 0.25:
            return self._fresh_ids(copy.deepcopy(self.rng.choice(self.recorded)))
        events = [event.io for event in self.io_events.take(self.rng.randint(1, 5))]
        return events[0] if len(events) == 1 and self.rng.random() < 0.5 else events

    def legacy(self):
        if self.rng.random() < 0.25:
            return self._fresh_ids(copy.deepcopy(self.legacy_recorded))
        activities = [event.legacy for event in self.activities.take(self.rng.randint(1, 5))]
        return orjson.loads(envelopes.legacy_body(MUNCHKIN, str(self.rng.randrange(10**8)), "2026-01-01", activities))

    def _fresh_ids(self, document):
        """Half the time new ids (stored anew), else the recorded ones (duplicates after the first)."""
        if self.rng.random() < 0.5:
            for container in _containers(document):
                if isinstance(container, dict):
                    for key in ID_FIELDS & container.keys():
                        self.serial += 1
                        container[key] = f"fuzz-{self.serial}"
        return document


# --- Observing ----------------------------------------------------------------------------------------


class Watermark:
    """The newest event, batch and validation request, read in one query after every answer: one
    round trip per case (counting whole tables each time cost more than the requests on PostgreSQL)."""

    def __init__(self):
        event, batch, validation = (model._meta.db_table for model in (Event, Batch, ValidationRequest))
        self.sql = (
            f"SELECT (SELECT COALESCE(MAX(id), 0) FROM {event}), (SELECT COUNT(*) FROM {event} WHERE id > %s),"
            f" (SELECT COALESCE(MAX(id), 0) FROM {batch}), (SELECT COUNT(*) FROM {batch} WHERE id > %s),"
            f" (SELECT COALESCE(MAX(id), 0) FROM {validation})"
        )
        self.last = (0, 0, 0)
        self.advance()

    def advance(self):
        """Move to the newest rows; returns (events, batches, validation requests) stored since the
        last call. A rolled-back insert leaves no row, so a refusal must return (0, 0, 0)."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [self.last[0], self.last[1]])
            event, new_events, batch, new_batches, validation = cursor.fetchone()
        added = (new_events, new_batches, int(validation > self.last[2]))
        self.last = (event, batch, validation)
        return added


def elements_of(body, io):
    """How many elements the body carries, parsed here independently; None when it does not parse
    as a delivery of that receiver's shape (or the parsers may disagree on it)."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if b'"activities"' in body and body.count(b'"activities"') > 1:
        return None  # a duplicated key: which value counts is the parser's choice
    if io:
        return 1 if isinstance(document, dict) else len(document) if isinstance(document, list) else None
    found = document.get("activities") if isinstance(document, dict) else None
    return len(found) if isinstance(found, list) else None


def check(case, response, stored, body, io):
    """The properties of one answer, given what it stored (Watermark.advance), the case in every message."""
    status = response.status_code
    assert status < 500, f"{case}: {status} {response.content[:300]!r}"
    assert status in (200, 400, 413), f"{case}: an authenticated body got {status} {response.content[:300]!r}"
    answer = response.json()
    if status != 200:
        assert stored == (0, 0, 0), f"{case}: refused with {status} but stored (events, batches, validations) {stored}"
        return
    events, batches, validations = stored
    if "validation" in answer:
        assert stored == (0, 0, 1), f"{case}: a validation post stored {stored}"
        return
    assert validations == 0, f"{case}: a delivery stored a validation request"
    accepted, duplicates = answer["accepted"], answer["duplicates"]
    assert events == accepted, f"{case}: answered {accepted} accepted, stored {events}"
    assert batches == (1 if accepted else 0), f"{case}: {batches} batches for {accepted} accepted"
    expected = elements_of(body, io)
    if expected is not None:
        assert accepted + duplicates == expected, f"{case}: {accepted} + {duplicates} for {expected} elements"


# --- The runs -----------------------------------------------------------------------------------------


@pytest.fixture
def pinned_source(db, key_pairs):
    """A source whose Adobe key is pinned: signed bodies are verified without a key host."""
    return Source.objects.create(name="Fuzzed", munchkin_id=MUNCHKIN, pinned_public_keys=key_pairs[0].pem.decode())


@pytest.fixture
def small_bodies(settings):
    settings.FLUXO_MAX_BODY_BYTES = BODY_LIMIT


def signed(key_pairs):
    def headers(body):
        return {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": key_pairs[0].sign(body)}

    return headers


def run(send, make, io):
    """CASES mutated bodies through ``send``; returns how many answers of each status there were."""
    rng = random.Random(f"{SEED}:{'io' if io else 'legacy'}")
    mutator = Mutator(rng)
    statuses = {}
    watermark = Watermark()
    for n in range(CASES):
        body = mutator.body(make())
        case = f"case {n} ({', '.join(mutator.log) or 'unmutated'}; {len(body)} bytes: {body[:120]!r})"
        try:
            response = send(body)
        except Exception as exc:  # the test client re-raises what a view raised: a 500 in production
            raise AssertionError(f"{case}: the view raised {exc!r}") from exc
        check(case, response, watermark.advance(), body, io)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


def test_2000_mutated_signed_bodies_never_break_the_adobe_io_receiver(client, pinned_source, key_pairs, small_bodies):
    url = f"/ingest/{pinned_source.ingest_key}/adobe-io/"
    sign = signed(key_pairs)

    def send(body):
        return client.generic("POST", url, body, content_type="application/json", **sign(body))

    statuses = run(send, Deliveries(random.Random(SEED)).io, io=True)
    print("IO", statuses)
    assert statuses.get(200, 0) > CASES // 10 and statuses.get(400, 0) > CASES // 10, statuses  # both paths fuzzed
    assert Event.objects.filter(source=pinned_source).exists()
    answer = io_post(client, pinned_source, sign, [audit("Email", "approve")])
    assert answer == {"accepted": 1, "duplicates": 0}


def test_2000_mutated_authenticated_pushes_never_break_the_legacy_receiver(client, source, api_token, small_bodies):
    def send(body):
        return legacy_post(client, source, api_token, body)

    statuses = run(send, Deliveries(random.Random(SEED)).legacy, io=False)
    print("LEGACY", statuses)
    assert statuses.get(200, 0) > CASES // 10 and statuses.get(400, 0) > CASES // 10, statuses
    assert Event.objects.filter(source=source).exists()
    assert legacy_push(client, source, api_token, [activity(1)]) == {"accepted": 1, "duplicates": 0}
