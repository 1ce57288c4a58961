"""`make run`'s last word: once the web process answers, the URL to open and how to log in.

Run by the Procfile beside the other processes; it then stays (honcho stops every process when one
ends). On later runs the demo admin's password is not shown again (bootstrap_demo prints it once), so
it says how to set a new one.
"""

import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand

WAIT_S = 120


class Command(BaseCommand):
    help = "Wait until the web process answers, then print the URL to open and how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="", help="the address to wait for (default FLUXO_PUBLIC_URL)")
        parser.add_argument("--exit", action="store_true", help="end after printing (default: stay, for honcho)")

    def handle(self, *args, url="", exit=False, **options):
        base = (url or settings.FLUXO_PUBLIC_URL or "http://127.0.0.1:8000").rstrip("/")
        if not self._answers(base):
            self.stderr.write(f"The web process did not answer at {base}/ within {WAIT_S} s: see its lines above.")
        else:
            self.stdout.write(self.style.SUCCESS(f"\nFluxo is ready: open {base}/\n") + self._login())
        while not exit:
            time.sleep(3600)

    def _answers(self, base):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2):  # noqa: S310 (our own address)
                    return True
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        return False

    def _login(self):
        return (
            "Log in as admin with the password printed when the demo admin was created (first run only).\n"
            "Forgot it? Set a new one: .venv/bin/python manage.py changepassword admin\n"
            "More output (each request, each task): FLUXO_LOG_LEVEL=DEBUG make run\n"
        )
