"""bench/journal: Adobe journal backfill into PostgreSQL against the Adobe I/O webhook receiver, same machine, same run.

    .venv/bin/python bench/journal.py [--events 200000] [--duration 10]

Creates (and drops after) the database fluxo_journal_bench on PGURL (default postgres://postgres@127.0.0.1:5432),
Redis at REDIS_URL (default redis://127.0.0.1:6379/15). Two phases on the empty database:

  webhook   ``python -m fluxo.serve`` (1 daphne process), 16 clients posting signed 20-event batches back to back
  journal   one backfill (streams.journal.run: one job per registration) reading the sandbox's journal (the
            simulator's AdobeServer, in a forked process so it does not share this one's GIL), 500-event pages

and prints events/s of each, the ratio, and how long the 7-day backlog of a 1M-events-a-day instance takes.
"""

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402
import orjson  # noqa: E402
import payloads  # noqa: E402
from ingest import HOST, Server, setup_django, start_key_server  # noqa: E402

DB = "fluxo_journal_bench"
REGISTRATION = "bench-registration"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the journal to backfill")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the webhook's closed loop")
    parser.add_argument("--io-concurrency", type=int, default=16)
    parser.add_argument("--io-pool", type=int, default=8000, help="signed 20-event bodies for the webhook phase")
    return parser.parse_args()


def prepare_environment():
    pg = os.environ.get("PGURL", "postgres://postgres@127.0.0.1:5432")
    os.environ.update(
        DATABASE_URL=f"{pg}/{DB}",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-only-" + os.urandom(12).hex()),
        FLUXO_VAR_DIR=str(ROOT / "var" / "bench-journal"),
        FLUXO_LOG_LEVEL="WARNING",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    return pg


def admin(pg, statement):
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(statement)


# --- The sandbox's journal, in its own process ----------------------------------------------------------------


def serve_journal(events, ready):
    from streams.simulator.adobe import AdobeServer

    server = AdobeServer(time.monotonic)
    journal = server.add(REGISTRATION, payloads.CLIENT_ID)
    ids, templates = payloads.Ids(7), payloads.io_templates()
    for _ in range(events // 20):
        for element in orjson.loads(payloads.io_body(ids, templates, 20)):
            journal.append(element)
    server.start()
    ready.put(server.url)
    while True:
        time.sleep(3600)


def start_journal(events):
    context = multiprocessing.get_context("fork")
    ready = context.Queue()
    process = context.Process(target=serve_journal, args=(events, ready), daemon=True)
    process.start()
    return process, ready.get(timeout=600)


# --- Phases ------------------------------------------------------------------------------------------------


def webhook_phase(args, source, key_url, signer):
    bodies = payloads.io_requests(signer, args.io_pool + 64, seed=2)
    target = load.Target(HOST, 0, source["endpoints"]["adobe_io"], {"Content-Type": "application/json"}, 20)
    with Server(1, key_url, str(ROOT / "var" / "bench-journal" / "server.log"), str(ROOT), "reuseport") as server:
        target.port = server.port
        if not load.wait_until_serving(HOST, server.port, source["endpoints"]["legacy_push"]):
            raise SystemExit("the server did not start")
        load.saturate(target, bodies[args.io_pool :], 16, 30)  # warm up: imports, connections, keys
        result = load.saturate(target, bodies[: args.io_pool], args.io_concurrency, args.duration)
    return result.rate("events"), result.errors, result.exhausted


def journal_phase(args, source_id, url):
    from django.conf import settings

    from streams import journal, secretbox
    from streams.models import AdobeRegistration, JournalCursor

    settings.ADOBE_IMS_URL = settings.ADOBE_JOURNAL_URL = url
    settings.FLUXO_SECRETS_KEY = secretbox.new_key()
    registration = AdobeRegistration.objects.create(
        name="bench",
        source_id=source_id,
        journal_url=f"{url}/events/organizations/bench@AdobeOrg/integrations/{payloads.CLIENT_ID}/{REGISTRATION}",
        ims_client_id=payloads.CLIENT_ID,
        client_secret_encrypted=secretbox.seal("sandbox-secret"),
    )
    journal.start_backfill(registration.id)
    started = time.perf_counter()
    progress = journal.run(registration.id, JournalCursor.Kind.BACKFILL)
    elapsed = time.perf_counter() - started
    return progress.stored / elapsed, progress, elapsed


def main():
    args = parse_args()
    pg = prepare_environment()
    admin(pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin(pg, f"CREATE DATABASE {DB}")
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        admin(pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def run(args):
    setup_django(str(ROOT))
    from django.core.management import call_command

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    call_command("migrate", "--noinput", verbosity=0)
    from io import StringIO

    out = StringIO()
    call_command(
        "add_source", "Bench", "--munchkin-id", payloads.MUNCHKIN_ID, "--adobe-client-id", payloads.CLIENT_ID,
        "--json", stdout=out,
    )  # fmt: skip
    source = orjson.loads(out.getvalue())
    started = time.perf_counter()
    process, url = start_journal(args.events)
    print(f"journal of {args.events:,} events ready in {time.perf_counter() - started:.0f} s", flush=True)
    signer = payloads.Signer()
    key_url = start_key_server(signer.public_pems())
    webhook_rate, errors, exhausted = webhook_phase(args, source, key_url, signer)
    print(f"webhook  {webhook_rate:>9,.0f} events/s (16 clients, 20-event signed batches) errors {errors or '-'}"
          f"{' (bodies ran out)' if exhausted else ''}", flush=True)  # fmt: skip
    journal_rate, progress, elapsed = journal_phase(args, source["id"], url)
    process.terminate()
    print(f"journal  {journal_rate:>9,.0f} events/s ({progress.stored:,} stored in {elapsed:.1f} s, "
          f"{progress.pages} pages, {progress.duplicates} duplicates)", flush=True)  # fmt: skip
    backlog = 7 * 1_000_000
    print(f"\n| webhook ev/s | journal backfill ev/s | journal / webhook | 7 days at 1M/day ({backlog:,}) |")
    print("|---|---|---|---|")
    hours = backlog / journal_rate / 3600
    print(f"| {webhook_rate:,.0f} | {journal_rate:,.0f} | {journal_rate / webhook_rate:.2f} | {hours:.1f} h |")


if __name__ == "__main__":
    main()
