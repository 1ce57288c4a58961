"""Request bodies for the bench, made once before any timing starts.

Activities come from the sandbox simulator's generator (streams/simulator: its realistic mix of
types and attributes), then get fresh ids, lead ids and dates, so every body is new to the database
(nothing is answered as a duplicate). Adobe I/O bodies are signed with two generated RSA keys, as Adobe signs them.
"""

import base64
import multiprocessing
import random
import uuid
from datetime import UTC, datetime, timedelta

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

MUNCHKIN_ID = "123-ABC-456"
CLIENT_ID = "bench_client"
KEY_PATHS = ("/prod/keys/pub-key-bench-one.pem", "/prod/keys/pub-key-bench-two.pem")


TEMPLATES = 2000


def _simulated():
    """A fixed mix of lead activities from the simulator (seeded: every run sends the same content)."""
    from streams.simulator.generators import ACTIVITY, Generator

    return Generator(MUNCHKIN_ID, seed=7, client_id=CLIENT_ID, streams=(ACTIVITY,)).take(TEMPLATES)


def legacy_templates():
    """Activities as the legacy push carries them."""
    return [event.legacy for event in _simulated()]


def io_templates():
    """The same activities as Adobe I/O CloudEvents."""
    return [event.io for event in _simulated()]


class Ids:
    """Deterministic fresh ids (a seeded generator: two runs send the same bodies)."""

    def __init__(self, seed):
        self.random = random.Random(seed)
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def uuid(self):
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def lead(self):
        return self.random.randrange(1, 5_000_000)

    def when(self):
        return (self.start + timedelta(seconds=self.random.randrange(3600))).isoformat().replace("+00:00", "Z")


def legacy_body(ids, templates, size):
    activities = []
    for n in range(size):
        # A shallow copy: only top-level fields change, the attribute lists are shared (read-only).
        activity = {**templates[n % len(templates)], "marketoGUID": ids.uuid(), "leadId": ids.lead()}
        activity.update(activityDate=ids.when(), activityLogItemId=ids.random.getrandbits(40))
        activities.append(activity)
    wrapper = {
        "sourceApplication": "Marketo",
        "munchkinId": MUNCHKIN_ID,
        "messageId": ids.uuid(),
        "messageCreatedDate": ids.when(),
        "activities": activities,
    }
    return orjson.dumps(wrapper)


def legacy_bodies(count, size=500, seed=1):
    ids, templates = Ids(seed), legacy_templates()
    return [legacy_body(ids, templates, size) for _ in range(count)]


def io_body(ids, templates, size):
    events = []
    for n in range(size):
        template, when = templates[n % len(templates)], ids.when()
        event = {k: v for k, v in template.items() if k not in ("event_id", "recipient_client_id")}
        event.update(eventid=ids.uuid(), id=ids.uuid(), time=when, recipientclientid=CLIENT_ID)
        event["data"] = {**template["data"], "munchkinId": MUNCHKIN_ID, "leadId": str(ids.lead()), "activityDate": when}
        events.append(event)
    return orjson.dumps(events)


class Signer:
    """Two RSA key pairs, as Adobe's two signing keys; public halves served by bench's key server."""

    def __init__(self):
        self.keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in KEY_PATHS]

    def public_pems(self):
        pem = serialization.PublicFormat.SubjectPublicKeyInfo
        return {
            path: key.public_key().public_bytes(serialization.Encoding.PEM, pem)
            for path, key in zip(KEY_PATHS, self.keys, strict=True)
        }

    def private_pems(self):
        encoding, private = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
        return [key.private_bytes(encoding, private, serialization.NoEncryption()) for key in self.keys]


_signing_keys = None


def _load_signing_keys(pems):
    global _signing_keys
    _signing_keys = [serialization.load_pem_private_key(pem, password=None) for pem in pems]


def _signed(body):
    signatures = [
        base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode() for key in _signing_keys
    ]
    return body, {
        "x-adobe-digital-signature-1": signatures[0],
        "x-adobe-digital-signature-2": signatures[1],
        "x-adobe-public-key1-path": KEY_PATHS[0],
        "x-adobe-public-key2-path": KEY_PATHS[1],
    }


def io_requests(signer, count, size=20, seed=2, processes=2):
    """``count`` signed I/O batches as (body, headers); signing (1 ms a key) is spread over processes."""
    ids, templates = Ids(seed), io_templates()
    bodies = [io_body(ids, templates, size) for _ in range(count)]
    with multiprocessing.get_context("fork").Pool(
        processes, initializer=_load_signing_keys, initargs=(signer.private_pems(),)
    ) as pool:
        return pool.map(_signed, bodies, chunksize=64)
