import json
import threading
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from fluxo import env

DEMO_SOURCE = "demo-source.json"
# Set, the idle wait ends (tests; a supervisor just stops the process).
STOP_IDLING = threading.Event()


class Command(BaseCommand):
    # A client of Fluxo, like Marketo: it needs neither the URLs nor the database checked.
    requires_system_checks = []
    help = (
        "`make run`'s simulator: once the web process answers, send the demo source a steady, living feed "
        "(all three streams, both protocols). FLUXO_SIMULATE=0 turns it off (the process then only idles, "
        "so that honcho keeps the others running)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--rate", type=float, default=5.0)
        parser.add_argument("--key-port", type=int, default=8765)
        parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the web process")

    def handle(self, *args, base_url, rate, key_port, wait, **options):
        path = settings.VAR_DIR / DEMO_SOURCE
        if not env.get_bool("FLUXO_SIMULATE", True):
            return self._idle("FLUXO_SIMULATE=0: the simulator is off")
        if not path.exists():
            return self._idle(f"no {path}: run `manage.py bootstrap_demo` first; the simulator is off")
        source = json.loads(path.read_text())
        if not self._wait_for_web(base_url + source["endpoints"]["legacy_push"], wait):
            return self._idle(f"nothing answered at {base_url}; the simulator is off")
        self.stdout.write(f"simulating Marketo {source['munchkin_id']} at {rate} events/s against {base_url}")
        call_command(
            "simulate",
            base_url=base_url,
            source_json=[str(path)],
            protocol="both",
            rate=rate,
            daily_curve=True,
            bursts=True,
            key_port=key_port,
        )

    def _wait_for_web(self, url, wait):
        """True once ``url`` answers (the push endpoint answers a GET without touching the database)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (an http URL built from --base-url)
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.5)
        return False

    def _idle(self, why):
        """Stay up doing nothing: under honcho, a process that exits stops all the others."""
        self.stdout.write(why)
        self.stdout.flush()
        STOP_IDLING.wait()
