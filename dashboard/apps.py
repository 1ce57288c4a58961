from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self):
        from dashboard import deletion, signals

        signals.connect()
        deletion.connect()
