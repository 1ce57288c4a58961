"""Alert evaluation and deliveries have Celery queues of their own, apart from maintenance, so that a
long maintenance task never delays an alert; every worker command Fluxo ships serves all three."""

import shlex

import pytest
import redis
from django.conf import settings

from fluxo.celery import app
from tests.alerts_receivers import Receiver
from tests.processes import QUEUES, ROOT, SOLO_WORKER, bare_env, celery, manage, stop_embedded_redis, wait_for
from tests.test_alerts_deliv_worker import DISPATCH, SETUP, row, shell

EXPECTED = {
    "alerts.evaluate": "alerts",
    "alerts.tick": "alerts",
    "alerts.deliver": "deliveries",
    "alerts.deliver_due": "deliveries",
    "alerts.prune": "maintenance",
    "dashboard.roll_up": "maintenance",
    "dashboard.prune_rollups": "maintenance",
    "streams.prune_events": "maintenance",
    "streams.open_validation_urls": "maintenance",
    "streams.retire_expired_grace": "maintenance",
    "streams.prune_refused_requests": "maintenance",
    "streams.maintain_partitions": "maintenance",
    "streams.analyze_partitions": "maintenance",
    "streams.archive_events": "maintenance",
    "streams.delete_source": "maintenance",
    "streams.purge_deleted_sources": "maintenance",
    "fluxo.clear_sessions": "maintenance",
    "fluxo.clear_tokens": "maintenance",
    "streams.journal_poll": "maintenance",
    "streams.journal_backfill": "maintenance",
    "streams.journal_registration_states": "maintenance",
}


def queue_of(task_name):
    return app.amqp.router.route({}, task_name)["queue"].name


def fluxo_tasks():
    app.loader.import_default_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def test_each_task_goes_to_its_queue():
    assert {name: queue_of(name) for name in fluxo_tasks()} == EXPECTED


def test_every_periodic_task_goes_to_a_queue_that_workers_serve():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert queue_of(entry["task"]) in settings.FLUXO_QUEUES


def worker_queues(command):
    words = shlex.split(command)
    return set(words[words.index("-Q") + 1].split(","))


def test_the_procfile_worker_and_the_tests_workers_serve_every_queue():
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:")]
    assert worker_queues(line.split(";")[-1]) == set(settings.FLUXO_QUEUES)
    assert worker_queues(" ".join(SOLO_WORKER)) == set(QUEUES.split(",")) == set(settings.FLUXO_QUEUES)


def test_a_worker_started_without_queues_serves_all_three():
    assert {queue.name for queue in app.amqp.queues.consume_from.values()} == set(settings.FLUXO_QUEUES)


@pytest.mark.slow
def test_an_alert_is_delivered_by_a_worker_for_alerts_and_deliveries_while_maintenance_waits(tmp_path):
    slack = Receiver()
    env = bare_env(tmp_path, FLUXO_ALLOW_PRIVATE_URLS="1")
    db = tmp_path / "fluxo.sqlite3"
    try:
        manage(env, "migrate", "--noinput")
        delivery_id = int(shell(env, SETUP.format(url=slack.url)))
        shell(env, "from streams import tasks; tasks.prune_events.delay(); print('queued')")
        only = ("worker", "-Q", "alerts,deliveries", *SOLO_WORKER[3:])
        with celery(env, *only):
            assert shell(env, DISPATCH) == f"[{delivery_id}]"
            wait_for(lambda: row(db, delivery_id)[0] == "sent")
        assert len(slack.requests) == 1
        broker = redis.Redis(unix_socket_path=str(tmp_path / "redis.sock"))
        assert broker.llen("maintenance") == 1  # the pruning still waits for a maintenance worker
    finally:
        slack.close()
        stop_embedded_redis(tmp_path)
