from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self):
        from celery.signals import worker_ready

        from alerts import deletion, erasure

        deletion.connect()
        erasure.connect()

        # Only a Celery worker listens for batches; web processes and commands never start it.
        worker_ready.connect(_start_subscriber, dispatch_uid="alerts.subscriber", weak=False)


def _start_subscriber(**kwargs):
    from alerts import subscriber

    subscriber.start()
