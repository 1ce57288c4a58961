"""The alerts' tasks, queued by name.

The modules a task runs (delivery, lifecycle, the batch subscriber) also queue tasks; importing
alerts.tasks from them would be a cycle, as it imports them. Celery routes by name
(``CELERY_TASK_ROUTES``), so a task queued here lands on the same queue as ``task.delay()`` would.
"""

from fluxo.celery import app

DELIVER = "alerts.deliver"
EVALUATE = "alerts.evaluate"


def deliver(delivery_id, eta=None):
    """Queue one delivery's attempt, at ``eta`` if given."""
    app.send_task(DELIVER, (delivery_id,), eta=eta)


def evaluate():
    """Queue an evaluation of every batch committed so far."""
    app.send_task(EVALUATE)
