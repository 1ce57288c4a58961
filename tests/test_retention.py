"""Retention: events older than FLUXO_RETENTION_DAYS are pruned in bounded chunks, by a real worker too."""

import json
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from streams import retention
from streams.models import Batch, Event
from tests.conftest import payload
from tests.ingest import activity, http_push, legacy_push
from tests.processes import BIN, ROOT, bare_env, daphne, manage, stop_embedded_redis

pytestmark = pytest.mark.django_db


def keyed(guids):
    """An activity for each marketoGUID in ``guids``: ``age`` finds their events by it."""
    return [activity(1, lead=1, marketoGUID=g, activityDate="2026-01-01T00:00:00Z") for g in guids]


def age(guids, days):
    keys = [f"123-ABC-456|{g}" for g in guids]
    old = timezone.now() - timedelta(days=days)
    Event.objects.filter(activity_key__in=keys).update(received_at=old)
    Batch.objects.filter(events__activity_key__in=keys).update(received_at=old)


def test_events_older_than_the_retention_are_deleted_and_newer_ones_kept(client, source, api_token, settings):
    settings.FLUXO_RETENTION_DAYS = 30
    legacy_push(client, source, api_token, keyed(["old-1", "old-2"]))
    legacy_push(client, source, api_token, keyed(["new-1"]))
    age(["old-1", "old-2"], days=31)
    assert retention.prune() == 2
    assert list(Event.objects.values_list("activity_key", flat=True)) == ["123-ABC-456|new-1"]
    assert Batch.objects.count() == 1  # the emptied batch row went too


def test_it_deletes_in_bounded_chunks_until_done(client, source, api_token):
    guids = [f"g-{i}" for i in range(7)]
    legacy_push(client, source, api_token, keyed(guids))
    age(guids, days=400)
    assert retention.prune(chunk=2) == 7
    assert Event.objects.count() == 0


def test_a_run_stops_after_its_chunk_budget_and_the_next_run_goes_on(client, source, api_token):
    guids = [f"g-{i}" for i in range(5)]
    legacy_push(client, source, api_token, keyed(guids))
    age(guids, days=400)
    assert retention.prune(chunk=2, max_chunks=1) == 2
    assert retention.prune(chunk=2, max_chunks=10) == 3


@pytest.mark.slow
def test_a_real_celery_worker_runs_the_pruning_task(tmp_path):
    env = bare_env(tmp_path, FLUXO_RETENTION_DAYS="30")
    manage(env, "migrate", "--noinput")
    source = json.loads(manage(env, "add_source", "Acme", "--munchkin-id", "123-ABC-456", "--json"))
    with daphne(env) as base:
        http_push(base, source, payload("lads_legacy_push_batch.json"))
    db = tmp_path / "fluxo.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("update streams_event set received_at = '2000-01-01 00:00:00'")
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "fluxo", "worker", "--pool", "solo", "--without-mingle", "--without-gossip"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        manage(env, "shell", "-c", "from streams.tasks import prune_events; prune_events.delay()")
        deadline = time.monotonic() + 60
        remaining = None
        while time.monotonic() < deadline:
            with sqlite3.connect(db) as conn:
                remaining = conn.execute("select count(*) from streams_event").fetchone()[0]
            if remaining == 0:
                break
            time.sleep(0.3)
        assert remaining == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        stop_embedded_redis(tmp_path)
