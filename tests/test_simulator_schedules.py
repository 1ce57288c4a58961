"""The simulator's delivery rules, checked against an injected (virtual) clock, not wall time.

The receiver is a real HTTP server on 127.0.0.1 that answers as each test scripts it (Fluxo never
answers 429 or 505, hangs up or stalls on purpose) and notes the virtual time each request arrived:
virtual time stands still while a request is in flight, so those times are exactly the scheduled ones.
Adobe's rules: reference section 3.5; Marketo's: section 1.1.
"""

import collections
import http.server
import itertools
import json
import threading
import time
import urllib.parse

import pytest

from streams import signatures
from streams.simulator import runner
from streams.simulator.clock import VirtualClock
from streams.simulator.config import Config, OAuth, Target
from streams.simulator.io_sender import Registration
from streams.simulator.keys import KeyRing, KeyServer

MINUTE, HOUR = 60, 3600


class Receiver:
    """Scripted webhook: ``script(request)`` returns a status, ("slow", seconds, status) or "hang up"."""

    def __init__(self, clock, script=lambda request: 200):
        self.clock = clock
        self.script = script
        self.requests = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # the status line, headers and body in one write (no Nagle stall)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = Request(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, receiver.clock.now()
                )
                receiver.requests.append(request)
                self.respond(receiver.script(request))

            def respond(self, answer):
                if answer == "hang up":
                    self.close_connection = True
                    return
                if isinstance(answer, tuple):
                    _slow, seconds, answer = answer
                    time.sleep(seconds)
                payload = answer if isinstance(answer, dict) else {"accepted": 1, "duplicates": 0}
                status = 200 if isinstance(answer, dict) else answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def to(self, path):
        return [request for request in self.requests if request.path == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Request:
    def __init__(self, path, headers, body, at):
        self.path, self.headers, self.body, self.at = path, headers, body, at

    @property
    def retry(self):
        return int(self.headers.get("x-adobe-retry-count", 0))

    def json(self):
        return json.loads(self.body)


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def receiver(clock):
    server = Receiver(clock)
    yield server
    server.close()


@pytest.fixture(scope="module")
def keyring(tmp_path_factory):
    return KeyRing(tmp_path_factory.mktemp("keys"))


def simulate(receiver, clock, keyring, **options):
    target = Target("123-ABC-456", client_id="client-1", io_url=receiver.url + "/io", legacy_url=receiver.url + "/push")
    target.api_token = options.pop("api_token", "t0k3n")
    target.oauth = options.pop("oauth", None)
    settings = {"streams": ("activity",), "seed": 1, "key_port": 0, "rate": 10.0, **options}
    return runner.run(Config(targets=[target], **settings), clock=clock, keyring=keyring)


def stream(summary, protocol):
    (found,) = [s for s in summary["streams"] if s["protocol"] == protocol]
    return found


def since_first(requests):
    return [request.at - requests[0].at for request in requests]


# --- Adobe I/O Events ------------------------------------------------------------------------------------


def adobe_schedule(scale):
    """1, 2, 4, 8, then every 15 minutes, while within 24 hours of the first attempt."""
    times, at = [0.0], 0.0
    for delay in [1, 2, 4, 8] + [15] * 200:
        at += delay * MINUTE
        if at > 24 * HOUR:
            break
        times.append(at)
    return [t / scale for t in times]


@pytest.mark.parametrize("scale", [1, 60, 3600])
def test_adobe_retries_after_1_2_4_8_then_every_15_minutes_for_24_hours_then_drops(receiver, clock, keyring, scale):
    receiver.script = lambda request: 503
    summary = simulate(receiver, clock, keyring, count=1, time_scale=scale)
    attempts = receiver.to("/io")
    assert since_first(attempts) == pytest.approx(adobe_schedule(scale))
    assert stream(summary, "io")["dropped_by_reason"] == {"retry_window": 1}
    assert summary["exit_code"] == 1


def test_every_attempt_keeps_the_event_id_counts_retries_and_has_its_own_delivery_id(receiver, clock, keyring):
    receiver.script = lambda request: 503 if request.retry < 3 else 200
    summary = simulate(receiver, clock, keyring, count=1)
    attempts = receiver.to("/io")
    assert [request.headers.get("x-adobe-retry-count") for request in attempts] == [None, "1", "2", "3"]
    (event,) = {request.body for request in attempts}
    assert {request.headers["x-adobe-event-id"] for request in attempts} == {json.loads(event)[0]["eventid"]}
    assert len({request.headers["x-adobe-delivery-id"] for request in attempts}) == 4
    assert len({request.headers["x-request-id"] for request in attempts}) == 4
    first = attempts[0].headers
    assert first["content-type"] == "application/json; charset=utf-8"
    assert first["user-agent"] == "Adobe/1.0"
    assert first["x-adobe-event-code"].startswith("com.adobe.platform.marketo.activity.")
    assert summary["exit_code"] == 0 and stream(summary, "io")["retried"] == 3


def test_fluxo_verifies_both_signatures_with_the_keys_the_key_server_serves(receiver, clock, keyring, settings):
    summary = simulate(receiver, clock, keyring, count=30, streams=("activity", "audit", "notification"))
    key_server = KeyServer(keyring).start()  # the run's own server stopped with it
    settings.ADOBE_IO_KEY_BASE_URL = key_server.url
    for request in receiver.to("/io"):
        meta = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in request.headers.items()}
        assert signatures.verify(request.body, meta)
        # Each signature on its own: either key alone must verify.
        for number in ("1", "2"):
            alone = {k: v for k, v in meta.items() if not k.endswith(f"SIGNATURE_{3 - int(number)}")}
            assert signatures.verify(request.body, alone)
        assert not signatures.verify(request.body + b" ", meta)
    key_server.close()
    assert set(summary["key_paths"]) == {
        request.headers["x-adobe-public-key1-path"] for request in receiver.to("/io")[:1]
    } | {request.headers["x-adobe-public-key2-path"] for request in receiver.to("/io")[:1]}


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_429_and_5xx_are_retried(receiver, clock, keyring, status):
    receiver.script = lambda request: status if request.retry == 0 else 200
    summary = simulate(receiver, clock, keyring, count=1)
    assert [request.retry for request in receiver.to("/io")] == [0, 1]
    assert summary["exit_code"] == 0


@pytest.mark.parametrize("status", [505, 400, 401, 403, 404, 413])
def test_505_and_other_4xx_drop_the_events_at_once(receiver, clock, keyring, status):
    receiver.script = lambda request: status
    summary = simulate(receiver, clock, keyring, count=25)
    assert all(request.retry == 0 for request in receiver.to("/io"))
    io = stream(summary, "io")
    assert io["dropped_by_reason"] == {"not_retryable": 25}
    assert io["acknowledged"] == 0 and summary["exit_code"] == 1


def test_no_answer_and_a_late_answer_are_retried(receiver, clock, keyring):
    script = {0: "hang up", 1: ("slow", 0.6, 200)}
    receiver.script = lambda request: script.get(request.retry, 200)
    summary = simulate(receiver, clock, keyring, count=1, timeout=0.3)
    assert [request.retry for request in receiver.to("/io")] == [0, 1, 2]
    assert stream(summary, "io")["statuses"] == {"200": 1, "602": 1, "604": 1}
    assert summary["exit_code"] == 0


def test_the_time_scale_does_not_shorten_the_request_timeout(receiver, clock, keyring):
    receiver.script = lambda request: ("slow", 0.4, 200)
    summary = simulate(receiver, clock, keyring, count=1, time_scale=3600, streams=("activity",))
    assert stream(summary, "io")["statuses"] == {"200": 1}


def test_batches_hold_at_most_20_events_and_single_mode_one_object(receiver, clock, keyring):
    simulate(receiver, clock, keyring, count=95, rate=1000)
    sizes = [len(request.json()) for request in receiver.to("/io")]
    assert sum(sizes) == 95 and max(sizes) == 20
    receiver.requests.clear()
    simulate(receiver, clock, keyring, count=5, single=True)
    assert [type(request.json()) for request in receiver.to("/io")] == [dict] * 5


def test_the_registration_becomes_unstable_then_disabled_and_then_only_retries_already_due_fire(
    receiver, clock, keyring
):
    receiver.script = lambda request: 503
    summary = simulate(receiver, clock, keyring, count=10, rate=1 / (4 * HOUR))
    io = stream(summary, "io")
    changes = {state: at for at, state in state_changes(summary, "io")}
    assert changes["disabled"] - changes["unstable"] == pytest.approx(24 * HOUR)
    attempts = receiver.to("/io")
    assert sum(1 for request in attempts if request.at <= changes["unstable"]) >= 10
    after = [request for request in attempts if request.at > changes["disabled"]]
    assert after and all(request.retry > 0 for request in after), "only retries already due after Disabled"
    assert io["state"] == "disabled" and io["dropped_by_reason"]["disabled"] > 0
    assert io["dropped_by_reason"]["disabled"] + io["dropped_by_reason"]["retry_window"] == 10


def state_changes(summary, protocol):
    return [tuple(change) for change in stream(summary, protocol)["state_changes"]]


def test_an_unstable_registration_that_recovered_is_active_again_at_the_next_check():
    registration = Registration()
    for minute in range(10):
        registration.record(minute * MINUTE, succeeded=False)
    assert registration.state == "unstable"
    for minute in range(10, 60):
        registration.record(minute * MINUTE + 2 * HOUR, succeeded=True)
    assert registration.check(23 * HOUR) == "unstable"  # Adobe looks again only after 24 hours
    assert registration.check(9 * MINUTE + 24 * HOUR) == "active"


def test_a_registration_with_few_attempts_or_a_fifth_succeeding_stays_active():
    few = Registration()
    for minute in range(9):
        few.record(minute, succeeded=False)
    assert few.state == "active"
    fifth = Registration()
    for minute in range(50):
        fifth.record(minute, succeeded=minute % 5 == 0)
    assert fifth.state == "active"


# --- The legacy Marketo push -----------------------------------------------------------------------------


def test_a_failing_push_is_retried_3_times_3_minutes_apart_then_paused_with_a_try_every_3_minutes(
    receiver, clock, keyring
):
    receiver.script = lambda request: 401 if len(receiver.to("/push")) <= 6 else 200
    summary = simulate(receiver, clock, keyring, protocol="legacy", count=20, rate=5)
    pushes = receiver.to("/push")
    assert since_first(pushes[:7]) == pytest.approx([0, 180, 360, 540, 720, 900, 1080])
    assert len({request.json()["messageId"] for request in pushes[:7]}) == 1  # the same batch each time
    states = [state for _at, state in state_changes(summary, "legacy")]
    assert states == ["retrying", "paused", "active"]
    paused_at = state_changes(summary, "legacy")[1][0]
    assert paused_at == pytest.approx(pushes[3].at)  # after the third retry failed
    assert summary["exit_code"] == 0 and stream(summary, "legacy")["acknowledged"] == 20


def test_while_a_batch_fails_nothing_new_is_pushed_and_afterwards_pushes_resume_every_2_seconds(
    receiver, clock, keyring
):
    receiver.script = lambda request: 503 if len(receiver.to("/push")) <= 2 else 200
    summary = simulate(receiver, clock, keyring, protocol="legacy", count=400, rate=1)
    pushes = receiver.to("/push")
    assert since_first(pushes[:3]) == pytest.approx([0, 180, 360])
    after = [request.at for request in pushes[3:]]
    assert all(
        later - earlier == pytest.approx(2.0) or later - earlier > 2 for earlier, later in itertools.pairwise(after)
    )
    assert all(round(at / 2, 6).is_integer() for at in after), "pushes keep the 2-second beat"
    assert sum(len(request.json()["activities"]) for request in pushes[2:]) == 400
    assert summary["exit_code"] == 0


def test_at_high_rates_every_push_carries_500_activities(receiver, clock, keyring):
    simulate(receiver, clock, keyring, protocol="legacy", count=3000, rate=2000)
    sizes = [len(request.json()["activities"]) for request in receiver.to("/push")]
    assert sizes == [500] * 6
    body = receiver.to("/push")[0].json()
    assert set(body) == {"sourceApplication", "munchkinId", "messageId", "messageCreatedDate", "activities"}
    assert receiver.to("/push")[0].headers["authorization"] == "Bearer t0k3n"


def test_what_overflows_the_queue_is_dropped_and_counted(receiver, clock, keyring):
    receiver.script = lambda request: 503 if request.at < 30 * MINUTE else 200
    summary = simulate(receiver, clock, keyring, protocol="legacy", count=300, rate=1, queue_size=50)
    legacy = stream(summary, "legacy")
    assert legacy["dropped_by_reason"]["queue_full"] > 0
    assert legacy["acknowledged"] + legacy["dropped"] == 300
    assert summary["exit_code"] == 1


def test_oauth_client_credentials_are_fetched_renewed_before_expiry_and_after_a_401(receiver, clock, keyring):
    issued = []

    def script(request):
        if request.path == "/token":
            form = urllib.parse.parse_qs(request.body.decode())
            assert form == {"grant_type": ["client_credentials"]}
            assert request.headers["authorization"].startswith("Basic ")
            issued.append(f"token-{len(issued)}")
            return {"access_token": issued[-1], "token_type": "Bearer", "expires_in": 300}
        token = request.headers["authorization"].removeprefix("Bearer ")
        # The provider revokes the second token early: the push gets a 401 and fetches a new one.
        return 200 if token == issued[-1] and token != "token-1" else 401

    receiver.script = script
    oauth = OAuth(receiver.url + "/token", "client-9", "s3cret")
    summary = simulate(receiver, clock, keyring, protocol="legacy", count=40, rate=1 / 60, oauth=oauth)
    assert summary["exit_code"] == 0
    assert len(issued) >= 5  # 40 minutes of pushes with 5-minute tokens
    statuses = collections.Counter(request.headers["authorization"] for request in receiver.to("/push"))
    assert statuses["Bearer token-1"] == 1  # refused once, then a new token


def test_a_replay_sends_the_same_activities_again(receiver, clock, keyring):
    first = simulate(receiver, clock, keyring, protocol="both", count=30, reuse_ids=True)
    bodies = {json.dumps(a, sort_keys=True) for r in receiver.to("/push") for a in r.json()["activities"]}
    receiver.requests.clear()
    second = simulate(receiver, clock, keyring, protocol="both", count=30, reuse_ids=True)
    again = {json.dumps(a, sort_keys=True) for r in receiver.to("/push") for a in r.json()["activities"]}
    assert bodies == again and len(bodies) == 30
    assert first["exit_code"] == second["exit_code"] == 0
