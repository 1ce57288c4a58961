"""Thin Celery tasks of the alerts app: the logic lives in alerts.evaluate and alerts.delivery."""

import logging

from celery import shared_task

from alerts import delivery, evaluate, subscriber
from streams import announce

log = logging.getLogger(__name__)


@shared_task(name="alerts.evaluate", soft_time_limit=50, time_limit=60, ignore_result=True)
def evaluate_batches():
    """Woken by the batch subscriber: evaluate everything committed so far."""
    try:
        subscriber.started(announce.client())
    except Exception as exc:  # Redis down: the flag expires by itself
        log.warning("could not clear the evaluation flag (%s)", exc.__class__.__name__)
    return evaluate.catch_up()


@shared_task(name="alerts.tick", soft_time_limit=50, time_limit=60, ignore_result=True)
def tick():
    """The beat: catch up, slide windows, absence deadlines, health counters, reminders, then deliveries."""
    done = evaluate.tick()
    done["swept"] = delivery.sweep()
    done["dispatched"] = len(delivery.dispatch_due())
    return done


@shared_task(name="alerts.deliver_due", soft_time_limit=50, time_limit=60, ignore_result=True)
def deliver_due():
    return len(delivery.dispatch_due())


@shared_task(name="alerts.deliver", soft_time_limit=100, time_limit=120, ignore_result=True)
def deliver(delivery_id):
    return delivery.send(delivery_id)


@shared_task(name="alerts.prune", soft_time_limit=300, time_limit=360, ignore_result=True)
def prune():
    return {"windows": evaluate.prune(), "history": delivery.prune_history()}
