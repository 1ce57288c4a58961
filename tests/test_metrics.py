"""/metrics: who may read it, and what the counters say after real requests to real web processes."""

import json
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Delivery, DeliveryAttempt, Destination, EvaluatedBatch, EvaluatorFloor
from fluxo import health, metrics
from streams.models import Batch, Source
from tests.conftest import KeyServer
from tests.ingest import activity, http_post
from tests.processes import bare_env, daphne, http, manage, serve, stop_embedded_redis

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def system(tmp_path):
    """A migrated embedded Fluxo with one source (its API token in the JSON); yields (env, source)."""
    env = bare_env(tmp_path)
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    yield env, source
    stop_embedded_redis(tmp_path)


def scrape(base, headers=None):
    status, _, body = http("GET", base + "/metrics", headers=headers)
    assert status == 200, body
    return body.decode()


def samples(text):
    """{(name, frozenset of labels): value} of a scrape."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())), 0.0)


# --- Who may read it -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_without_a_token_only_loopback_peers_without_forwarding_headers_may_read_it(system):
    env, _source = system
    with daphne(env, args=("--proxy-headers",)) as base:
        assert http("GET", base + "/metrics")[0] == 200
        # Through a proxy (or daphne's --proxy-headers rewriting the client from the header): refused.
        status, _, body = http("GET", base + "/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert status == 403
        assert orjson.loads(body)["error"] == "forbidden"
        assert http("GET", base + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 403


@pytest.mark.slow
def test_through_a_trusted_proxy_on_this_host_a_request_is_not_local(system):
    # FLUXO_TRUSTED_PROXIES believes the proxy's X-Forwarded-For (the client becomes 127.0.0.1 here), but
    # a request that came through a proxy is judged on its TCP peer and the header, never on that.
    env, _source = system
    with daphne({**env, "FLUXO_TRUSTED_PROXIES": "127.0.0.1"}) as base:
        assert http("GET", base + "/metrics", headers={"X-Forwarded-For": "127.0.0.1"})[0] == 403
        body = http("GET", base + "/readyz", headers={"X-Forwarded-For": "127.0.0.1"})[2]
        assert set(orjson.loads(body)) == {"status"}
        assert http("GET", base + "/metrics")[0] == 200


@pytest.mark.slow
def test_with_a_token_only_its_bearer_is_answered_even_from_loopback(system):
    env, _source = system
    with daphne({**env, "FLUXO_METRICS_TOKEN": TOKEN}) as base:
        assert http("GET", base + "/metrics")[0] == 401
        assert http("GET", base + "/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert http("GET", base + "/metrics", headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        text = scrape(base, {"Authorization": f"Bearer {TOKEN}"})
        assert "fluxo_database_up 1.0" in text


@pytest.mark.slow
def test_a_token_too_short_stops_the_process_at_start(system):
    env, _source = system
    with pytest.raises(AssertionError, match="FLUXO_METRICS_TOKEN must be at least 16 characters"):
        manage({**env, "FLUXO_METRICS_TOKEN": "short"}, "check")


# --- What it counts --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_it_counts_accepted_events_duplicates_refusals_and_latency(system):
    env, source = system
    with daphne(env) as base:
        batch = [activity(1), activity(2)]
        assert http_post(base, source, batch)[0] == 200
        assert http_post(base, source, batch)[0] == 200  # a redelivery: two duplicates
        assert http_post(base, source, [activity(3)], token="not-the-token")[0] == 401
        text = scrape(base)
    source_id = str(source["id"])
    assert value(text, "fluxo_events_accepted_total", source=source_id, stream="activity", protocol="legacy") == 2
    assert value(text, "fluxo_events_duplicates_total", source=source_id, protocol="legacy") == 2
    assert value(text, "fluxo_ingest_requests_total", protocol="legacy", status="200", reason="ok") == 2
    assert value(text, "fluxo_ingest_requests_total", protocol="legacy", status="401", reason="unauthorized") == 1
    assert value(text, "fluxo_ingest_request_duration_seconds_count", protocol="legacy") == 3
    assert value(text, "fluxo_database_up") == 1
    assert value(text, "fluxo_redis_up") == 1


@pytest.mark.slow
def test_it_counts_signature_failures_key_fetches_and_503s(system, key_pairs):
    env, source = system
    keys = KeyServer()
    keys.serve(key_pairs[0])
    try:
        with daphne({**env, "ADOBE_IO_KEY_BASE_URL": keys.url}) as base:
            url = base + source["endpoints"]["adobe_io"]
            body = orjson.dumps([{"eventid": "e-1", "event": {"specversion": "1.0", "type": "x", "data": {}}}])
            signed = {
                "x-adobe-public-key1-path": key_pairs[0].path,
                "x-adobe-digital-signature-1": key_pairs[0].sign(body),
                "Content-Type": "application/json",
            }
            assert http("POST", url, body, signed)[0] == 200
            tampered = {**signed, "x-adobe-digital-signature-1": key_pairs[0].sign(body + b" ")}
            assert http("POST", url, body, tampered)[0] == 401
            assert http("POST", url, body, {"Content-Type": "application/json"})[0] == 401
            keys.fail_with = 503
            other = {**signed, "x-adobe-public-key1-path": key_pairs[1].path}  # not cached: fetched, fails
            assert http("POST", url, body, other)[0] == 503
            text = scrape(base)
    finally:
        keys.close()
    assert value(text, "fluxo_signature_failures_total", reason="bad_signature") == 1
    assert value(text, "fluxo_signature_failures_total", reason="missing_signature") == 1
    assert value(text, "fluxo_signature_key_fetches_total", outcome="fetched") == 1
    assert value(text, "fluxo_signature_key_fetches_total", outcome="unavailable") == 1
    assert value(text, "fluxo_ingest_unavailable_total", protocol="io") == 1
    assert value(text, "fluxo_ingest_requests_total", protocol="io", status="503", reason="unavailable") == 1
    assert value(text, "fluxo_events_accepted_total", source=str(source["id"]), stream="other", protocol="io") == 1


@pytest.mark.slow
def test_every_web_process_of_fluxo_serve_reports_the_sum_of_all_of_them(system):
    env, source = system
    with serve(env, workers=2) as base:
        for _ in range(12):  # new connections: SO_REUSEPORT spreads them over both processes
            assert http_post(base, source, [activity(1)])[0] == 200
        scrapes = [scrape(base) for _ in range(6)]
    source_id = str(source["id"])
    for text in scrapes:
        assert value(text, "fluxo_events_accepted_total", source=source_id, stream="activity", protocol="legacy") == 12
        assert value(text, "fluxo_ingest_requests_total", protocol="legacy", status="200", reason="ok") == 12


@pytest.mark.slow
def test_a_body_refused_unread_for_its_size_is_counted_too(system):
    env, source = system
    with serve({**env, "FLUXO_MAX_BODY_BYTES": str(64 * 1024)}, workers=1) as base:
        assert http_post(base, source, [activity(1, primary="x" * 70_000)])[0] == 413
        text = scrape(base)
    assert value(text, "fluxo_ingest_requests_total", protocol="legacy", status="413", reason="too_large") == 1


# --- Figures read at scrape time and counters kept by other processes -----------------------------------------


def test_a_delivery_attempt_is_counted_by_kind_and_outcome_after_commit(db, django_capture_on_commit_callbacks):
    metrics.start_process()
    destination = Destination.objects.create(name="ops", kind="webhook", url="https://hooks.example.com/x")
    counter = metrics.DELIVERY_ATTEMPTS.labels("webhook", "sent")
    before = counter._value.get()
    delivery = Delivery.objects.create(destination=destination, reason="test", due_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        DeliveryAttempt.objects.create(delivery=delivery, outcome="sent")
        assert counter._value.get() == before  # not before the commit
    assert counter._value.get() == before + 1


def test_the_evaluation_lag_counts_batches_above_the_floor_not_yet_evaluated(db):
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    now = timezone.now()
    batches = [
        Batch.objects.create(
            received_at=now - timedelta(seconds=age), protocol="io", source=source, accepted=1, duplicates=0
        )
        for age in (300, 200, 100, 50)
    ]
    EvaluatorFloor.objects.create(id=1, batch_id=batches[0].id)
    EvaluatedBatch.objects.create(batch_id=batches[1].id)
    assert health.consumer_lag(EvaluatorFloor, EvaluatedBatch, now) == {"batches": 2, "seconds": 100.0}
    EvaluatedBatch.objects.create(batch_id=batches[2].id)
    EvaluatedBatch.objects.create(batch_id=batches[3].id)
    assert health.consumer_lag(EvaluatorFloor, EvaluatedBatch, now) == {"batches": 0, "seconds": 0.0}


@pytest.mark.django_db(transaction=True)
def test_an_open_live_socket_is_counted_until_it_closes(teammate, cookie_for):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from dashboard.groups import SOCKET_PATH
    from fluxo.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie_for(teammate).encode())]
    before = metrics.WEBSOCKETS._value.get()

    async def scenario():
        communicator = WebsocketCommunicator(application, f"{SOCKET_PATH}?source=all", headers=headers)
        connected, _ = await communicator.connect(timeout=10)
        assert connected
        await communicator.receive_from(timeout=10)  # live.hello
        assert metrics.WEBSOCKETS._value.get() == before + 1
        await communicator.disconnect()

    async_to_sync(scenario)()
    assert metrics.WEBSOCKETS._value.get() == before


def test_a_batch_of_many_types_is_counted_once_per_source_and_stream():
    from fluxo import metrics

    def accepted(stream):
        return metrics.EVENTS_ACCEPTED.labels("9001", stream, "io")._value.get()

    before = accepted("activity"), accepted("audit")
    counts = [
        [9001, "activity", "Visit Webpage", 1, 3],
        [9001, "activity", "Click Link", 3, 4],
        [9001, "audit", "x", None, 1],
    ]
    metrics.events_committed(counts, {9001: 2}, "io")
    assert (accepted("activity") - before[0], accepted("audit") - before[1]) == (7, 1)
