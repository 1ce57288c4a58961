"""Issue 9, point 3: key paths nobody signs with cost (almost) nothing.

Anyone who knows a source's ingest URL can name key paths. Here: paths are held to their shape and
128 characters, a 404 is remembered for 5 minutes, concurrent requests for one key share one fetch,
and fetches of keys not yet known are limited per source (a budget) and per process (2 threads), a
request over a limit answered 503 with Retry-After. Last, a flood of unknown paths against a real
daphne while correctly signed deliveries keep being answered and stored.
"""

import base64
import contextlib
import json
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from streams import signatures
from tests.conftest import KeyPair, payload
from tests.ingest import notification
from tests.processes import bare_env, daphne, http, manage, stop_embedded_redis, wait_for

FAKE_SIGNATURE = base64.b64encode(b"\x01" * 256).decode()


class SlowKeyServer:
    """Adobe's key host as a flood finds it: the keys it has, and a 404 for any other path only after
    ``slow_404`` seconds. While ``hold`` is set every request waits until ``release`` is set. It counts
    the requests it is answering at once (``most_busy``)."""

    def __init__(self, pairs=(), slow_404=0.0):
        self.keys = {pair.path: pair.pem for pair in pairs}
        self.slow_404 = slow_404
        self.hold = False
        self.hang_up = False  # promise a key, send part of it and close
        self.release = threading.Event()
        self.requests = []
        self.busy = self.most_busy = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.enter(self.path)
                server.answer(self)  # leaves before the answer is written: see answer()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def enter(self, path):
        with self._lock:
            self.requests.append(path)
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)

    def leave(self):
        with self._lock:
            self.busy -= 1

    def answer(self, handler):
        """Counted busy until the answer is about to go out: once a client has read it, it may start
        its next fetch at once, and counting until this handler returns would see the two overlap."""
        try:
            self._wait_then_sleep(handler)
        finally:
            self.leave()
        self._write(handler)

    def _wait_then_sleep(self, handler):
        if self.hold:
            self.release.wait(30)
        if self.keys.get(handler.path) is None and not self.hang_up:
            time.sleep(self.slow_404)

    def _write(self, handler):
        pem = self.keys.get(handler.path)
        if self.hang_up:
            handler.send_response(200)
            handler.send_header("Content-Length", "2000")
            handler.end_headers()
            handler.wfile.write(b"-----BEGIN PUBLIC KEY-----\n")
            handler.close_connection = True
            return
        handler.send_response(200 if pem else 404)
        handler.end_headers()
        if pem:
            handler.wfile.write(pem)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Clock:
    """Stands in for time.monotonic: expiry and refills without waiting."""

    def __init__(self):
        self.now = time.monotonic()

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    return clock


def url(source):
    return f"/ingest/{source.ingest_key}/adobe-io/"


def unknown_path():
    return f"/prod/keys/pub-key-{uuid.uuid4()}.pem"


def named(path, second_path=None):
    """Headers of a request that names ``path`` (and ``second_path``) with signatures nobody made."""
    headers = {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": FAKE_SIGNATURE, "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": path}
    if second_path:
        headers |= {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_2": FAKE_SIGNATURE, "HTTP_X_ADOBE_PUBLIC_KEY2_PATH": second_path}
    return headers


def post(client, source, headers, body=None):
    body = payload("uads_batch_current.json") if body is None else body
    return client.post(url(source), body, content_type="application/json", **headers)


def signed_by(pair, body):
    return {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": pair.sign(body), "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": pair.path}


# --- Paths, 404s remembered -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_key_path_over_128_characters_is_401_and_never_fetched(client, source, key_server):
    long_path = "/prod/keys/pub-key-" + "a" * 6000 + ".pem"
    response = post(client, source, named(long_path))
    assert response.status_code == 401
    assert key_server.requests == []
    longest = "/prod/keys/pub-key-" + "a" * (128 - 23) + ".pem"
    assert len(longest) == 128
    assert post(client, source, named(longest)).status_code == 401
    assert key_server.requests == [longest]


@pytest.mark.django_db
def test_a_key_the_host_answers_404_for_is_fetched_once_for_20_requests(client, source, key_server):
    path = unknown_path()
    statuses = [post(client, source, named(path)).status_code for _ in range(20)]
    assert statuses == [401] * 20
    assert key_server.requests == [path]


@pytest.mark.django_db
def test_a_404_is_remembered_for_5_minutes_then_asked_again(client, source, key_server, clock):
    late = KeyPair()  # a new key the host does not serve yet
    body = payload("uads_batch_current.json")
    assert post(client, source, signed_by(late, body)).status_code == 401
    key_server.serve(late)
    clock.now += signatures.MISSING_KEY_SECONDS - 1
    assert post(client, source, signed_by(late, body)).status_code == 401
    assert key_server.requests == [late.path]
    clock.now += 1
    assert post(client, source, signed_by(late, body)).status_code == 200
    assert key_server.requests == [late.path, late.path]


@pytest.mark.django_db
def test_known_keys_are_tried_before_an_unknown_path_is_fetched(client, source, key_server, key_pairs):
    body = payload("uads_batch_current.json")
    one, _two = key_pairs
    assert post(client, source, signed_by(one, body)).status_code == 200  # one's key is known now
    junk = unknown_path()
    headers = named(junk) | {
        "HTTP_X_ADOBE_DIGITAL_SIGNATURE_2": one.sign(body),
        "HTTP_X_ADOBE_PUBLIC_KEY2_PATH": one.path,
    }
    assert post(client, source, headers, body).status_code == 200
    assert junk not in key_server.requests


# --- The budget of each source ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_source_over_its_budget_of_new_keys_gets_503_with_retry_after(
    client, source, other_source, key_server, key_pairs, clock
):
    one, _two = key_pairs
    body = payload("uads_batch_current.json")
    assert post(client, source, signed_by(one, body)).status_code == 200  # a first fetch: one's key
    for _ in range(signatures.SOURCE_FETCH_BURST - 1):
        assert post(client, source, named(unknown_path())).status_code == 401
    fetched = len(key_server.requests)

    over = post(client, source, named(unknown_path()))
    assert over.status_code == 503
    assert int(over["Retry-After"]) >= signatures.SOURCE_FETCH_REFILL_SECONDS
    assert over.json()["error"] == "unavailable"
    assert len(key_server.requests) == fetched  # not asked
    # Meanwhile: known keys verify, a bad signature over a known key stays 401, other sources fetch.
    assert post(client, source, signed_by(one, body)).status_code == 200
    assert post(client, source, signed_by(one, body), body + b" ").status_code == 401
    assert post(client, other_source, named(unknown_path())).status_code == 401
    # The sender's retry, once the bucket has refilled by one: fetched (a rotated key would verify).
    clock.now += signatures.SOURCE_FETCH_REFILL_SECONDS
    rotated = KeyPair()
    key_server.serve(rotated)
    assert post(client, source, signed_by(rotated, body)).status_code == 200
    assert post(client, source, named(unknown_path())).status_code == 503


# --- Per process: two threads, one fetch per path ----------------------------------------------------------


@pytest.fixture
def held_key_server(settings, key_pairs):
    server = SlowKeyServer(key_pairs)
    settings.ADOBE_IO_KEY_BASE_URL = server.url
    yield server
    server.close()


def meta_signed_by(pair, body, path=None):
    return {"HTTP_X_ADOBE_DIGITAL_SIGNATURE_1": pair.sign(body), "HTTP_X_ADOBE_PUBLIC_KEY1_PATH": path or pair.path}


def in_thread(function, *args):
    """Start ``function(*args)`` in a thread; a callable that joins it and returns its result."""
    outcome = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except Exception as exc:  # handed to the test by result()
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result():
        thread.join(120)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def test_a_third_request_for_unknown_keys_is_refused_at_once_while_known_keys_verify(held_key_server, key_pairs):
    one, _two = key_pairs
    body = b"[]"
    assert signatures.verify(body, meta_signed_by(one, body), source_id=1)  # one's key is known now
    held_key_server.hold = True
    waiting = [in_thread(signatures.verify, body, named(unknown_path()), "", source) for source in (2, 3)]
    wait_for(lambda: len(held_key_server.requests) == 3, timeout=10)

    third = unknown_path()
    with pytest.raises(signatures.KeyFetchLimited):
        signatures.verify(body, named(third), source_id=4)
    assert signatures.verify(body, meta_signed_by(one, body), source_id=4)
    assert not signatures.verify(body + b" ", meta_signed_by(one, body), source_id=4)  # still simply False

    held_key_server.release.set()
    assert [result() for result in waiting] == [False, False]
    assert third not in held_key_server.requests
    assert signatures.threads_waiting_for_keys() == 0


def test_concurrent_requests_for_one_new_key_share_one_fetch(held_key_server):
    rotated = KeyPair()
    held_key_server.keys[rotated.path] = rotated.pem
    held_key_server.hold = True
    body = b'[{"eventid": "e-1"}]'
    first = in_thread(signatures.verify, body, meta_signed_by(rotated, body), "", 1)
    wait_for(lambda: held_key_server.requests == [rotated.path], timeout=10)
    second = in_thread(signatures.verify, body, meta_signed_by(rotated, body), "", 1)
    wait_for(lambda: signatures.threads_waiting_for_keys() == 2, timeout=10)

    held_key_server.release.set()
    assert (first(), second()) == (True, True)
    assert held_key_server.requests == [rotated.path]


def test_waiting_for_another_requests_fetch_ends_in_its_outcome(held_key_server):
    held_key_server.hold = True
    path = unknown_path()
    first = in_thread(signatures.verify, b"[]", named(path), "", 1)
    wait_for(lambda: held_key_server.requests == [path], timeout=10)
    second = in_thread(signatures.verify, b"[]", named(path), "", 2)
    wait_for(lambda: signatures.threads_waiting_for_keys() == 2, timeout=10)
    held_key_server.release.set()
    assert (first(), second()) == (False, False)
    assert held_key_server.requests == [path]


def test_a_key_host_hanging_up_mid_answer_is_503_and_the_path_is_asked_again(held_key_server, key_pairs):
    one, _two = key_pairs
    body = b"[]"
    held_key_server.hang_up = True
    with pytest.raises(signatures.KeyUnavailable):
        signatures.verify(body, meta_signed_by(one, body), source_id=1)
    held_key_server.hang_up = False  # not remembered as a key the host does not have
    assert signatures.verify(body, meta_signed_by(one, body), source_id=1)
    assert held_key_server.requests == [one.path, one.path]


# --- A flood and real deliveries at once, against a real daphne ---------------------------------------------

FLOOD_SOURCES = 4
FLOOD_CLIENTS = 16
GOOD_SENDERS = 2
GOOD_BATCHES = 8  # per sender
ADOBE_DELIVERY_TIMEOUT = 10  # s: what Adobe gives a delivery before it counts it failed


def http_headers(meta):
    """Django META names back to the HTTP header names a sender uses."""
    return {name.removeprefix("HTTP_").replace("_", "-").lower(): value for name, value in meta.items()}


class Flood:
    """Clients that POST requests naming two fresh unknown paths each, as fast as they are answered."""

    def __init__(self, base, endpoints):
        self.base, self.endpoints = base, endpoints
        self.stop = threading.Event()
        self.answers = []  # (status, Retry-After)
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(FLOOD_CLIENTS)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, number):
        endpoint = self.endpoints[number % len(self.endpoints)]
        while not self.stop.is_set():
            headers = http_headers(named(unknown_path(), unknown_path())) | {"content-type": "application/json"}
            status, answer_headers, _ = http("POST", self.base + endpoint, b"[]", headers, timeout=30)
            with self._lock:
                self.answers.append((status, answer_headers.get("Retry-After")))
            time.sleep(0.01)  # 2 shared cores: a tight loop would measure the machine, not Fluxo

    def seen(self, count):
        with self._lock:
            return len(self.answers) >= count


def deliver(base, endpoint, pair, sender):
    """GOOD_BATCHES signed notification batches of 3 events; their statuses."""
    statuses = []
    for number in range(GOOD_BATCHES):
        body = orjson.dumps([notification("Campaign", "user_campaign_abort", "abort") for _ in range(3)])
        headers = http_headers(meta_signed_by(pair, body)) | {"content-type": "application/json"}
        try:
            status = http("POST", base + endpoint, body, headers, timeout=ADOBE_DELIVERY_TIMEOUT)[0]
        except OSError as exc:  # the sender's deadline passed: for Adobe a failed delivery
            status = f"{sender}/{number}: {exc.__class__.__name__}"
        statuses.append(status)
    return statuses


@pytest.fixture
def var_dir(tmp_path):
    yield tmp_path
    stop_embedded_redis(tmp_path)


@pytest.mark.slow
def test_a_flood_of_unknown_key_paths_never_holds_the_threads_signed_deliveries_need(var_dir, key_pairs):
    one, _two = key_pairs
    key_host = SlowKeyServer(key_pairs, slow_404=3.0)  # each unknown path holds a fetch 3 s
    env = bare_env(var_dir, ADOBE_IO_KEY_BASE_URL=key_host.url)  # SQLite in either pass
    manage(env, "migrate", "--noinput")
    sources = [
        json.loads(manage(env, "add_source", f"S{n}", "--munchkin-id", f"{n}00-AAA-{n}00", "--json"))
        for n in range(1, FLOOD_SOURCES + 1)
    ]
    endpoints = [source["endpoints"]["adobe_io"] for source in sources]
    try:
        with daphne(env) as base:
            assert deliver(base, endpoints[0], one, "warm-up") == [200] * GOOD_BATCHES  # one's key is known now
            with Flood(base, endpoints) as flood:
                wait_for(lambda: key_host.busy >= 2 and flood.seen(FLOOD_CLIENTS), timeout=30)
                senders = [in_thread(deliver, base, endpoints[0], one, n) for n in range(GOOD_SENDERS)]
                good = [status for sender in senders for status in sender()]
            answers = flood.answers
    finally:
        key_host.close()

    assert good == [200] * (GOOD_SENDERS * GOOD_BATCHES)
    with contextlib.closing(sqlite3.connect(var_dir / "fluxo.sqlite3")) as db:
        stored = db.execute("select count(*) from streams_event").fetchone()[0]
    assert stored == 3 * GOOD_BATCHES * (GOOD_SENDERS + 1)
    statuses = {status for status, _ in answers}
    assert statuses <= {401, 503}, statuses
    assert 503 in statuses
    assert all(retry_after for status, retry_after in answers if status == 503)
    # The key host never saw more than the per-process limit at once (the warm-up fetch was alone).
    assert key_host.most_busy <= signatures.UNKNOWN_KEY_THREADS
