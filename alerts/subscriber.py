"""The worker side's ear on the receivers' batch announcements: it wakes the evaluator at once.

Started in the Celery worker's main process when it is ready (alerts.apps). ``streams`` never names
an alerts task; this subscriber, on the alerts side, turns "a batch committed" into an evaluation.
Announcements are coalesced: at most one evaluation waits in the queue at a time (a Redis flag,
QUEUED_KEY, set when one is queued and cleared by the task as it starts), and each evaluates
everything committed by then. So at 10 batches a second the queue holds one evaluation, not a
backlog that deliveries would wait behind. If Redis drops announcements, the beat's tick catches up.
"""

import logging
import threading
import time

import redis
from django.conf import settings

from alerts import queue
from streams.announce import BATCH_CHANNEL

log = logging.getLogger(__name__)

COALESCE = 0.05
QUEUED_KEY = "fluxo:alerts:evaluation-queued"
QUEUED_TTL = 30  # seconds: a queued task that was lost (a broker restart) stops blocking the next
_started = threading.Event()


def start():
    """Start the subscriber thread once per process."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run, name="fluxo-alert-subscriber", daemon=True).start()


def _run():
    while True:
        try:
            _listen()
        except (redis.RedisError, OSError) as exc:
            log.warning("batch announcements unavailable (%s); retrying in 2 s", exc.__class__.__name__)
            time.sleep(2)
        except Exception:  # a bug must not silence the subscriber for the worker's lifetime
            log.exception("the batch subscriber failed; restarting it in 2 s")
            time.sleep(2)


def _listen():
    client = redis.Redis.from_url(settings.FLUXO_REDIS_URL, health_check_interval=30)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(BATCH_CHANNEL)
    _queue(client, force=True)  # whatever committed while nobody listened
    pending, last_try = False, 0.0
    while True:
        message = pubsub.get_message(timeout=COALESCE)
        pending = pending or message is not None
        if pending and (message is None or time.monotonic() - last_try >= COALESCE):
            _queue(client)
            pending, last_try = False, time.monotonic()


def _queue(client, force=False):
    """Queue an evaluation unless one is already waiting for a worker."""
    if client.set(QUEUED_KEY, "1", nx=not force, ex=QUEUED_TTL):
        queue.evaluate()


def started(client):
    """Called by the task as it starts: announcements from now on need another evaluation."""
    client.delete(QUEUED_KEY)
