import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")

app = Celery("fluxo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def _embedded_redis_for_the_worker(**_kwargs):
    # Before the worker connects to its broker. SystemExit (a refused embedded Redis) is not caught
    # by Celery's signal dispatch, which logs and ignores an Exception.
    from fluxo import embedded_redis

    embedded_redis.start_for_process()


@signals.beat_init.connect
def _embedded_redis_for_the_beat(**_kwargs):
    from fluxo import embedded_redis

    embedded_redis.start_for_process()


# --- Observability: request ids into tasks, heartbeats, the metrics folder ----------------------------------
# Handlers import late: this module is imported before Django is set up.
REQUEST_ID_HEADER = "fluxo_request_id"
_in_beat = False


@signals.before_task_publish.connect(dispatch_uid="fluxo.celery.publish")
def _task_published(headers=None, **kwargs):
    """A task queued while a request runs carries its request id; the beat's sends are its heartbeat."""
    from fluxo import health, logs

    request_id = logs.REQUEST_ID.get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)
    if _in_beat:
        health.record_heartbeat("beat")


@signals.task_prerun.connect(dispatch_uid="fluxo.celery.prerun")
def _task_started(task=None, **kwargs):
    from fluxo import logs

    # Set for every task, so one without an id does not inherit the previous task's.
    logs.REQUEST_ID.set(getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None)


@signals.task_postrun.connect(dispatch_uid="fluxo.celery.postrun")
def _task_finished(task=None, state=None, **kwargs):
    from fluxo import health, logs

    # The solo pool logs the next task's arrival in this same thread: it must not carry this id.
    logs.REQUEST_ID.set(None)
    health.record_heartbeat("worker")
    if task is not None and task.name == "alerts.tick" and state == "SUCCESS":
        health.record_heartbeat("alerts_tick")


@signals.worker_init.connect(dispatch_uid="fluxo.celery.worker_init")
def _worker_started(**kwargs):
    from fluxo import metrics

    metrics.start_process()


@signals.beat_init.connect(dispatch_uid="fluxo.celery.beat_init")
def _beat_started(**kwargs):
    global _in_beat
    _in_beat = True


@signals.worker_process_shutdown.connect(dispatch_uid="fluxo.celery.child_exit")
def _worker_child_exited(pid=None, **kwargs):
    from fluxo import metrics

    metrics.process_exited(pid or os.getpid())
