"""/healthz and /readyz, answered by real processes: up, ready, degraded, unavailable, and who sees what."""

import json

import orjson
import pytest

from tests.ingest import http_post
from tests.processes import (
    SOLO_WORKER,
    bare_env,
    celery,
    daphne,
    free_port,
    http,
    manage,
    stop_embedded_redis,
    wait_for,
)

FORWARDED = {"X-Forwarded-For": "203.0.113.9"}


@pytest.fixture
def env(tmp_path):
    env = bare_env(tmp_path)
    manage(env, "migrate", "--noinput")
    yield env
    stop_embedded_redis(tmp_path)


def ready(base, headers=None):
    status, _, body = http("GET", base + "/readyz", headers=headers)
    return status, orjson.loads(body)


def test_healthz_answers_without_touching_the_database(client):
    # No db fixture: pytest-django refuses any database access, so a query here would fail the test.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_gives_anonymous_remote_clients_the_bare_status_only(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert set(response.json()) == {"status"}


def test_readyz_gives_a_logged_in_person_the_details(client, teammate):
    client.force_login(teammate)
    body = client.get("/readyz").json()
    assert body["database"] is True
    assert {"redis", "heartbeat_age_s", "evaluation_lag", "rollup_lag", "deliveries", "partitions"} <= set(body)
    if body["partitions"]["partitioned"]:  # PostgreSQL: the tables are partitioned, days ahead exist
        assert body["partitions"]["ahead"] >= 1
    else:
        assert body["partitions"] == {"partitioned": False}


@pytest.mark.slow
def test_a_web_process_without_its_database_is_up_but_not_ready(tmp_path):
    # Nothing listens on this port: the database is unreachable from the start.
    env = bare_env(
        tmp_path, DATABASE_URL=f"postgres://fluxo@127.0.0.1:{free_port()}/fluxo", FLUXO_DB_CONNECT_TIMEOUT="1"
    )
    try:
        with daphne(env) as base:
            assert http("GET", base + "/healthz")[0] == 200
            status, body = ready(base)  # loopback: the details
            assert (status, body["status"], body["database"]) == (503, "unavailable", False)
            assert ready(base, FORWARDED) == (503, {"status": "unavailable"})
    finally:
        stop_embedded_redis(tmp_path)


@pytest.mark.slow
def test_without_worker_and_beat_it_is_ready_but_degraded_and_says_why(env):
    with daphne(env) as base:
        status, body = ready(base)  # loopback: the details
        assert status == 200
        assert body["status"] == "degraded"
        assert body["database"] is True and body["redis"] is True
        assert body["heartbeat_age_s"] == {"worker": None, "beat": None, "alerts_tick": None}
        assert ready(base, FORWARDED) == (200, {"status": "degraded"})


@pytest.mark.slow
def test_with_redis_down_it_still_receives_and_is_ready_but_degraded(env, tmp_path):
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    with daphne(env) as base:
        stop_embedded_redis(tmp_path)
        assert http_post(base, source, [])[0] == 200
        status, details = ready(base)
        assert (status, details["status"], details["redis"]) == (200, "degraded", False)


@pytest.mark.slow
def test_with_a_worker_and_the_beat_running_the_heartbeats_are_fresh_and_it_is_ok(env):
    with daphne(env) as base, celery(env, *SOLO_WORKER), celery(env, "beat", "--loglevel", "INFO"):

        def all_fresh():
            body = ready(base)[1]
            return body if all(age is not None for age in body["heartbeat_age_s"].values()) else None

        body = wait_for(all_fresh, timeout=90, interval=1)
        assert body["status"] == "ok", body
        assert ready(base, FORWARDED) == (200, {"status": "ok"})
