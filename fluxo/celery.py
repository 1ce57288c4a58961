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
