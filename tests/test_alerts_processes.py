"""Alerts with Fluxo's real processes: daphne, a Celery worker and beat, the embedded Redis."""

import json
import sqlite3

import pytest

from tests.ingest import activity, http_push
from tests.processes import SOLO_WORKER, bare_env, celery, daphne, manage, stop_embedded_redis, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def system(tmp_path):
    env = bare_env(tmp_path)
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    manage(env, "install_rule_presets", "delete-lead")
    yield env, source, tmp_path / "fluxo.sqlite3"
    stop_embedded_redis(tmp_path)


def push_delete_lead(base, source):
    """One Delete Lead, what the delete-lead preset fires on."""
    http_push(base, source, [activity(37, lead="42")])


def alerts(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("select state, hits from alerts_alert").fetchall()


def test_the_worker_hears_a_committed_batch_and_fires_without_the_beat(system):
    env, source, db = system
    with daphne(env) as base, celery(env, *SOLO_WORKER):
        push_delete_lead(base, source)
        assert wait_for(lambda: alerts(db), timeout=60) == [("firing", 1)]


def test_events_ingested_while_redis_is_down_still_fire_once_it_is_back(system, tmp_path):
    env, source, db = system
    with daphne(env) as base:
        stop_embedded_redis(tmp_path)
        push_delete_lead(base, source)  # acknowledged: stored, though nobody could be told
        assert alerts(db) == []
        # The next Fluxo process to start brings Redis back; the beat's tick catches up.
        with celery(env, *SOLO_WORKER), celery(env, "beat", "--loglevel", "INFO"):
            assert wait_for(lambda: alerts(db), timeout=90) == [("firing", 1)]
