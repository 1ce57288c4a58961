"""The worker side's ear on the receivers' batch announcements: it wakes the evaluator at once.

Started in the Celery worker's main process when it is ready (alerts.apps). ``streams`` never names
an alerts task; this subscriber, on the alerts side, turns "a batch committed" into an evaluation.
Announcements are coalesced: at most one evaluation is queued per COALESCE seconds, and each one
evaluates everything committed by then. If Redis drops announcements, the beat's tick catches up.
"""

import logging
import threading
import time

import redis
from django.conf import settings

from streams.announce import BATCH_CHANNEL

log = logging.getLogger(__name__)

COALESCE = 0.05
_started = threading.Event()


def start():
    """Start the subscriber thread once per process."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_run, name="fluxo-alert-subscriber", daemon=True).start()


def _run():
    from alerts import tasks  # late: the tasks module imports the whole evaluator

    while True:
        try:
            _listen(tasks.evaluate_batches)
        except (redis.RedisError, OSError) as exc:
            log.warning("batch announcements unavailable (%s); retrying in 2 s", exc.__class__.__name__)
            time.sleep(2)
        except Exception:  # a bug must not silence the subscriber for the worker's lifetime
            log.exception("the batch subscriber failed; restarting it in 2 s")
            time.sleep(2)


def _listen(task):
    client = redis.Redis.from_url(settings.FLUXO_REDIS_URL, health_check_interval=30)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(BATCH_CHANNEL)
    task.apply_async()  # whatever committed while nobody listened
    last_sent = 0.0
    pending = False
    while True:
        message = pubsub.get_message(timeout=COALESCE)
        if message is not None:
            pending = True
        if pending and time.monotonic() - last_sent >= COALESCE:
            task.apply_async()
            last_sent, pending = time.monotonic(), False
