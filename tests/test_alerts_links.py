"""Alert messages link back to the alert under `make run` too (it sets the address it serves)."""

import re
import subprocess

from alerts import messages
from tests.processes import ROOT


def test_make_run_gives_the_processes_the_address_the_web_process_serves():
    planned = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    honcho = next(line for line in planned.splitlines() if "honcho start" in line)
    assert 'FLUXO_PUBLIC_URL="${FLUXO_PUBLIC_URL:-http://127.0.0.1:${FLUXO_PORT:-8000}}"' in honcho
    procfile = (ROOT / "Procfile").read_text()
    # The same address:
    assert re.search(r'^web: .*-b 127\.0\.0\.1 -p "\$\{FLUXO_PORT:-8000\}" ', procfile, re.MULTILINE)


def test_with_that_address_a_message_links_to_its_alert(settings):
    settings.FLUXO_PUBLIC_URL = "http://127.0.0.1:8000"
    assert messages.alert_url(42) == "http://127.0.0.1:8000/alerts/42/"
