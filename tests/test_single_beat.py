"""Exactly one beat: a second one waits for the beat lock, and takes over when the first one dies."""

import signal

import psycopg
import pytest
from django.db import connection

from tests.processes import bare_env, celery, stop_embedded_redis, wait_for

pytestmark = pytest.mark.slow

SENDS = "Sending due task"
HOLDS = "holding the beat lock"
WAITS = "waiting for the beat lock held by another process"
TAKES_OVER = "took over the beat lock"
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="the advisory lock is PostgreSQL's")


@pytest.fixture
def env(tmp_path, db):
    """Beats on this suite's database: PostgreSQL's advisory lock there, else the file lock under var/."""
    extra = {}
    if connection.vendor == "postgresql":
        given = connection.settings_dict
        extra["DATABASE_URL"] = f"postgres://{given['USER']}@{given['HOST']}:{given['PORT']}/{given['NAME']}"
    yield bare_env(tmp_path, **extra)
    stop_embedded_redis(tmp_path)


def said(process, text):
    return text in process.log_path.read_text()


def test_a_second_beat_waits_and_takes_over_when_the_first_dies(env):
    with celery(env, "beat", "--loglevel", "INFO") as first:
        wait_for(lambda: said(first, HOLDS) and said(first, SENDS))
        with celery(env, "beat", "--loglevel", "INFO") as second:
            wait_for(lambda: said(second, WAITS))
            wait_for(lambda: first.log_path.read_text().count(SENDS) >= 3)  # the first goes on scheduling
            assert not said(second, SENDS)

            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            wait_for(lambda: said(second, TAKES_OVER), timeout=60)
            wait_for(lambda: said(second, SENDS))
            assert second.poll() is None


def test_a_waiting_beat_stops_on_sigterm(env):
    with celery(env, "beat", "--loglevel", "INFO") as first:
        wait_for(lambda: said(first, HOLDS))
        with celery(env, "beat", "--loglevel", "INFO") as second:
            wait_for(lambda: said(second, WAITS))
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=20) == 0
            assert not said(second, SENDS)
        assert first.poll() is None


@on_postgres
def test_the_beat_stops_when_its_lock_connection_breaks(env):
    with celery(env, "beat", "--loglevel", "INFO") as beat:
        wait_for(lambda: said(beat, HOLDS) and said(beat, SENDS))
        url = env["DATABASE_URL"]
        with psycopg.connect(url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'fluxo beat lock' AND datname = current_database()"
            ).fetchall()
        assert ended == [(True,)]
        assert beat.wait(timeout=30) != 0  # it stopped rather than schedule without the lock
        assert said(beat, "LostBeatLock")
