"""A weekend outage, end to end: the sandbox keeps generating while Fluxo is unreachable for a simulated day.

The sandbox sends through a TCP proxy the test cuts, so its deliveries fail; Adobe's rules (as the sandbox
follows them) make the registration unstable, then disabled, while its journal keeps every event. Fluxo
comes back, its health says so (from the sandbox's registration API), and a backfill on a real Celery
worker, after a backfill process killed mid-run, brings every event back, each stored once.
"""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
from cryptography.fernet import Fernet

from streams.simulator import config as simulator_config
from streams.simulator import runner
from streams.simulator.adobe import AdobeServer
from tests.processes import ROOT, SOLO_WORKER, TcpProxy, celery, free_port, manage, wait_for
from tests.test_simulator_live import LiveFluxo, ScratchDatabase

pytestmark = pytest.mark.slow

SOURCE, MUNCHKIN, CLIENT_ID = "weekend", "888-HHH-888", "fluxo-sandbox"
SCALE = 3600.0  # a simulated hour per second: Adobe's 24 hours pass in 24 s
EVENTS = 1600
LEASE = 4  # seconds: the journal lease in these runs (FLUXO_JOURNAL_LEASE_SECONDS)
JOURNAL_EVENTS = (
    "select count(*) from streams_event where batch_id in (select id from streams_batch where protocol = 'journal')"
)
STATE = """
import json
from streams import registration_health, journal
from streams.models import AdobeRegistration, JournalCursor
registration_health.poll_adobe_states()
r = AdobeRegistration.objects.get(name="weekend-activity")
h = registration_health.estimate(r)
c = JournalCursor.objects.filter(registration=r, kind="backfill").first()
print(json.dumps({"id": r.id, "level": h.level, "advice": h.advice, "status": r.adobe_webhook_status,
                  "entries": c.entries_read if c else None, "finished": bool(c and c.finished_at),
                  "state": journal.state()}))
"""
ENQUEUE = "from streams.tasks import journal_backfill; journal_backfill.delay(%d)"


def registration_id():
    """The sandbox names a registration after its Munchkin ID and stream (runner._io_sender)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"marketo:{MUNCHKIN}:activity"))


@pytest.fixture
def weekend(tmp_path):
    on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    database = ScratchDatabase("journal") if on_postgres else None
    live = LiveFluxo(tmp_path, database)
    adobe = AdobeServer(time.monotonic, SCALE, page_delay=1.0).start()
    live.env.update(
        ADOBE_IMS_URL=adobe.url,
        ADOBE_IO_API_URL=adobe.url,
        ADOBE_JOURNAL_URL=adobe.url,
        FLUXO_SECRETS_KEY=Fernet.generate_key().decode(),
        FLUXO_JOURNAL_LEASE_SECONDS=str(LEASE),
        SANDBOX_IMS_SECRET="sandbox-secret",
    )
    try:
        live.start(sources={SOURCE: MUNCHKIN})
        live.adobe = adobe
        live.web_proxy = TcpProxy(urlsplit(live.base).port).start()
        yield live
    finally:
        live.stop()
        adobe.close()
        if database:
            database.drop()


def add_registration(live):
    rid = registration_id()
    journal_url = f"{live.adobe.url}/events/organizations/sandbox@AdobeOrg/integrations/{CLIENT_ID}/{rid}"
    manage(
        live.env,
        "add_registration",
        "weekend-activity",
        "--source",
        SOURCE,
        "--journal-url",
        journal_url,
        "--ims-client-id",
        CLIENT_ID,
        "--ims-org-id",
        "sandbox@AdobeOrg",
        "--registration-path",
        f"sandbox@AdobeOrg/project/workspace/{rid}",
        "--client-secret-env",
        "SANDBOX_IMS_SECRET",
    )


def cut_until_disabled(live):
    """on_start: Fluxo goes away after a moment, and comes back once Adobe has disabled the registration."""

    def watch(run):
        time.sleep(1.0)
        live.web_proxy.cut()
        wait_for(lambda: all(stats.state == "disabled" for stats in run.stats), timeout=90, interval=0.1)
        live.web_proxy = TcpProxy(live.web_proxy.target_port, port=live.web_proxy.port).start()

    return lambda run: threading.Thread(target=watch, args=(run,), daemon=True).start()


def state(live):
    return json.loads(manage(live.env, "shell", "--no-imports", "-c", STATE).strip().splitlines()[-1])


def backfill_process(live, *args):
    command = [sys.executable, "manage.py", "journal_backfill", "weekend-activity", "--quiet", *args]
    return subprocess.Popen(command, cwd=ROOT, env=live.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_simulated_day_of_outage_comes_back_from_the_journal_each_event_once(weekend):
    live = weekend
    add_registration(live)
    options = live.options(SOURCE, protocol="io", streams="activity", count=EVENTS, rate=40.0, time_scale=SCALE)
    options["base_url"] = f"http://127.0.0.1:{live.web_proxy.port}"
    config = simulator_config.from_options(options, live.var_dir)

    summary = runner.run(config, keyring=live.keyring, on_start=cut_until_disabled(live), adobe_server=live.adobe)

    (stream,) = summary["streams"]
    assert [state for _at, state in stream["state_changes"]][:2] == ["unstable", "disabled"], stream
    assert stream["dropped_by_reason"].get("disabled", 0) > 0  # the webhook never saw those: only the journal
    by_webhook = live.stored(SOURCE)[0]
    assert 0 < by_webhook < EVENTS

    health = state(live)
    assert (health["status"], health["level"]) == ("hook_unreachable", "disabled")
    assert "re-enable it in the Adobe Developer Console" in health["advice"]

    # A worker killed mid-backfill: what it committed stays, once. While it waits on a slow Adobe page
    # for longer than the lease, its heartbeat keeps the registration: a second backfill is refused.
    with celery(live.env, *SOLO_WORKER) as doomed:
        manage(live.env, "shell", "--no-imports", "-c", ENQUEUE % health["id"])
        wait_for(lambda: backfill_read(live) > 0, timeout=60, interval=0.05)
        live.adobe.page_delay = 5 * LEASE
        read = _settled(live)
        time.sleep(1.5 * LEASE)  # no page committed for longer than a lease
        second = backfill_process(live, "--resume")
        assert second.wait(timeout=60) == 3, second.communicate()  # busy: another job holds it
        assert backfill_read(live) == read
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    killed_at = time.monotonic()
    live.adobe.page_delay = 1.0
    assert not state(live)["finished"]
    assert 0 < _scalar(live, JOURNAL_EVENTS) < EVENTS

    # Another worker, asked at once, finds the dead job's lease, tries again after it and goes on from
    # the committed cursor: within the short lease and a retry, not minutes.
    with celery(live.env, *SOLO_WORKER):
        manage(live.env, "shell", "--no-imports", "-c", ENQUEUE % health["id"])
        wait_for(lambda: backfill_read(live) > read, timeout=3 * LEASE + 30, interval=0.2)
        resumed_after = time.monotonic() - killed_at
        wait_for(lambda: state(live)["finished"], timeout=120, interval=0.5)
    print(f"resumed {resumed_after:.1f} s after the kill, lease {LEASE} s")

    assert live.stored(SOURCE) == (EVENTS, EVENTS, EVENTS)  # every event, each once
    assert _journal_batches_are_late(live)
    # An earlier backfill's range again: nothing new.
    again = backfill_process(live, "--json")
    out, _err = again.communicate(timeout=120)
    assert json.loads(out)["stored"] == 0 and live.stored(SOURCE)[0] == EVENTS


def _settled(live):
    """Entries committed once the pages fetched before Adobe slowed down are in (one ahead, one in flight)."""
    last = [backfill_read(live), time.monotonic()]

    def quiet():
        now_read = backfill_read(live)
        if now_read != last[0]:
            last[:] = [now_read, time.monotonic()]
        return now_read if time.monotonic() - last[1] > 2.5 else None

    return wait_for(quiet, timeout=60, interval=0.1)


def backfill_read(live):
    """Entries the backfill cursor has committed (read straight from the database: a command is too slow)."""
    return _scalar(live, "select coalesce(max(entries_read), 0) from streams_journalcursor where kind = 'backfill'")


def _scalar(live, query):
    if live.database:
        with psycopg.connect(live.database.direct) as conn:
            return conn.execute(query).fetchone()[0]
    with contextlib.closing(sqlite3.connect(live.var_dir / "fluxo.sqlite3")) as conn:
        return conn.execute(query).fetchone()[0]


def _journal_batches_are_late(live):
    if live.database:
        return _scalar(live, "select bool_and((meta->>'late')::boolean) from streams_batch where protocol = 'journal'")
    return _scalar(live, "select min(json_extract(meta, '$.late')) from streams_batch where protocol = 'journal'")


def test_with_the_journal_as_the_only_transport_the_beat_and_a_worker_bring_every_event(weekend):
    live = weekend
    add_registration(live)
    manage(live.env, "add_registration", "weekend-activity", "--source", SOURCE, "--mode", "only")
    env = {**live.env, "FLUXO_JOURNAL_POLL_SECONDS": "1"}
    options = live.options(SOURCE, protocol="io", streams="activity", count=300, rate=100.0, time_scale=SCALE)
    options["base_url"] = f"http://127.0.0.1:{free_port()}"  # no webhook at all: nothing listens there
    config = simulator_config.from_options(options, live.var_dir)

    with celery(env, *SOLO_WORKER), celery(env, "beat", "--loglevel", "INFO"):
        summary = runner.run(config, keyring=live.keyring, adobe_server=live.adobe)
        wait_for(lambda: live.stored(SOURCE)[0] == 300, timeout=120, interval=0.5)

    assert summary["deliveries"]["acknowledged"] == 0  # every event came through the journal
    assert live.stored(SOURCE) == (300, 300, 300)
    assert _scalar(live, "select count(*) from streams_batch where protocol <> 'journal'") == 0
