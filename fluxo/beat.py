"""Exactly one beat: the scheduler schedules only while its process holds the beat lock.

``celery -A fluxo beat`` uses LockedScheduler (settings.CELERY_BEAT_SCHEDULER). A beat started while
another runs waits for the lock before it opens its schedule, logging that it waits, and takes over
(logged) when the holder dies. On PostgreSQL the lock is a session-level advisory lock held on a
connection of its own, outside Django's pool: the server releases it when that session ends, which
is at once when the holder's process dies, and within about half a minute when its host vanishes
(the session's TCP keepalives). The holder checks its connection before every tick; a broken one
means the lock may be someone else's, so the beat stops (exits non-zero) rather than schedule twice.
On SQLite (one host) the lock is a file lock under var/, released by the kernel when the process ends.
"""

import fcntl
import logging
import signal
import time

import psycopg
from celery.beat import PersistentScheduler
from django.conf import settings

from fluxo import embedded_redis

log = logging.getLogger(__name__)

# pg_try_advisory_lock(int, int): a constant pair, per database, that no other Fluxo lock uses.
LOCK_KEY = (0x666C7578, 1)  # "flux", the beat
POLL_SECONDS = 1.0
# Seconds the server waits before it ends the session of a holder that vanished without closing it.
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


class LostBeatLock(RuntimeError):
    """The lock's connection broke: another beat may hold the lock now."""


class PostgresLock:
    def __init__(self, database):
        self.database = database
        self.conn = None

    def try_acquire(self):
        if self.conn is None:
            self.conn = self._connect()
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY).fetchone()[0]
        return bool(got)

    def holder(self):
        row = self.conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s AND granted",
            LOCK_KEY,
        ).fetchone()
        return f"PostgreSQL backend {row[0]}" if row else "another process"

    def check(self):
        try:
            self.conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            raise LostBeatLock(f"the beat lock's database connection broke ({exc.__class__.__name__})") from exc

    def release(self):
        if self.conn is not None:
            self.conn.close()  # ends the session: the lock goes with it
            self.conn = None

    def _connect(self):
        db = self.database
        conn = psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"] or None,
            password=db["PASSWORD"] or None,
            host=db["HOST"] or None,
            port=db["PORT"] or None,
            connect_timeout=db["OPTIONS"].get("connect_timeout", 3),
            sslmode=db["OPTIONS"].get("sslmode"),
            # A holder whose network hangs finds out in seconds, not after the kernel's minutes.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=15000,
            application_name="fluxo beat lock",
            options=" ".join(f"-c {name}={value}" for name, value in SERVER_KEEPALIVE.items()),
            autocommit=True,
        )
        if conn.info.server_version >= 140000:
            conn.execute("SET idle_session_timeout = 0")  # the lock's session idles between ticks
        return conn


class FileLock:
    def __init__(self, path):
        self.path = path
        self.file = None

    def try_acquire(self):
        self.file = self.file or open(self.path, "a")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def holder(self):
        return "another process"

    def check(self):
        pass  # the kernel holds it until this process ends

    def release(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def lock_for_settings():
    database = settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"]:
        return PostgresLock(database)
    return FileLock(settings.VAR_DIR / "beat.lock")


def acquire(lock, poll=POLL_SECONDS):
    """Block until ``lock`` is ours, logging once that we wait and, if we did, that we took over."""
    waited = False
    # Celery's own SIGTERM handler would close the scheduler being built here, building another one.
    previous = {signum: signal.signal(signum, _stop_waiting) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not lock.try_acquire():
            if not waited:
                log.warning("waiting for the beat lock held by another process (%s)", lock.holder())
                waited = True
            time.sleep(poll)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if waited:
        log.warning("took over the beat lock: the other beat is gone; scheduling from now on")
    else:
        log.info("holding the beat lock; scheduling")


def _stop_waiting(signum, _frame):
    log.info("stopped while waiting for the beat lock (signal %s)", signum)
    raise SystemExit(0)


class LockedScheduler(PersistentScheduler):
    """Celery's file-backed scheduler, opened and ticking only while this process holds the beat lock."""

    def __init__(self, *args, lazy=False, **kwargs):
        self.beat_lock = None
        # Celery builds a lazy one for its start-up banner only: it never ticks, and must not take the
        # lock that the real one, built next in this process, waits for.
        if not lazy:
            embedded_redis.start_for_process()  # refuse a misconfigured beat before it waits for the lock
            self.beat_lock = lock_for_settings()
            acquire(self.beat_lock)
        super().__init__(*args, lazy=lazy, **kwargs)

    def tick(self, *args, **kwargs):
        self.beat_lock.check()  # LostBeatLock ends the beat (non-zero) before it schedules anything
        return super().tick(*args, **kwargs)

    def close(self):
        try:
            super().close()
        finally:
            if self.beat_lock is not None:
                self.beat_lock.release()
