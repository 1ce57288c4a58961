"""bench/live: latency of live updates, and the overview snapshot over a large history.

    .venv/bin/python bench/live.py [--workers 2] [--clients 20] [--rate 5000] [--duration 30]
                                   [--history-events 10000000] [--raw-events 3000000] [--skip-snapshot]

Creates its own PostgreSQL database (``fluxo_bench_live``, dropped at the end unless --keep), migrates,
adds a source and a superuser session, and starts the web processes (``python -m fluxo.serve``) on
PostgreSQL and Redis (REDIS_URL, default redis://127.0.0.1:6379/14). Then:

1. live: ``--clients`` WebSocket clients follow every source on /ws/live/ while legacy pushes of 500
   activities arrive at ``--rate`` events/s (open loop). For every (client, batch) the latency is from
   the push's acknowledgement (its 200 read by the sender) to the first frame that carries the batch
   reaching that client. Each push has its own messageId, which the batch row keeps: that maps
   acknowledgements to batch ids afterwards.
2. snapshot: ``--history-events`` events' worth of per-minute rollups over 7 days (20 types) and
   ``--raw-events`` stored events are generated in SQL (free disk is checked first); then
   GET /api/v1/overview is timed for each range.
3. paint: the overview opened in Debian's Chromium (headless, through Playwright) with the superuser's
   session, once to fill the browser's cache, then ``--paint-repeats`` times more in the same browser
   context: the first contentful paint and the moment the activity chart is drawn, from the start of
   the navigation, and the bytes Plotly.js cost on the wire (0 once cached). Target: first paint under
   500 ms after the first visit. Skipped (with a note) when Chromium or Playwright is missing.

Prints a Markdown summary and writes var/bench-live/results.json.
"""

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-live"
HOST = "127.0.0.1"
DB = "fluxo_bench_live"
RANGES = ("15m", "1h", "24h", "7d", "30d")
MIN_FREE_BYTES = 15 * 2**30


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--workers", type=int, default=2, help="web processes")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5000, help="events/s of ingest")
    parser.add_argument("--batch", type=int, default=500, help="activities per push")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of ingest")
    parser.add_argument("--history-events", type=int, default=10_000_000)
    parser.add_argument("--raw-events", type=int, default=3_000_000)
    parser.add_argument("--snapshot-repeats", type=int, default=20)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-snapshot", action="store_true")
    parser.add_argument("--skip-paint", action="store_true")
    parser.add_argument("--paint-repeats", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


# --- Setup ---------------------------------------------------------------------------------------------


def admin_sql(pg, sql):
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def environment(args):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "DATABASE_URL": f"{args.pg}/{DB}",
        "REDIS_URL": args.redis,
        "SECRET_KEY": "bench-live-" + uuid.uuid4().hex * 2,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "FLUXO_VAR_DIR": str(VAR),
        "FLUXO_LOG_LEVEL": "WARNING",
    }


def manage(env, *arguments):
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"manage.py {arguments[0]} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


SESSION_SCRIPT = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
user = User.objects.create_superuser("bench", "bench@localhost", None)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


def prepare(args, env):
    VAR.mkdir(parents=True, exist_ok=True)
    admin_sql(args.pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    admin_sql(args.pg, f"CREATE DATABASE {DB}")
    manage(env, "migrate", "--noinput", "-v", "0")
    source = json.loads(manage(env, "add_source", "Bench", "--munchkin-id", "123-ABC-456", "--json"))
    session = manage(env, "shell", "-c", SESSION_SCRIPT).strip().splitlines()[-1]
    return source, session


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(args, env, port):
    log = open(VAR / "server.log", "a")  # noqa: SIM115 (closed by stop_server)
    command = [sys.executable, "-m", "fluxo.serve", "--workers", str(args.workers), "--bind", f"{HOST}:{port}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            time.sleep(1.0)  # every worker listening, not just the first
            return process, log
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the web processes did not start; see var/bench-live/server.log")


def stop_server(process, log):
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


# --- Live: senders --------------------------------------------------------------------------------------


TEMPLATE = orjson.loads((ROOT / "tests" / "payloads" / "lads_legacy_push_batch.json").read_bytes())["activities"]


def bodies(count, size):
    """``count`` push bodies of ``size`` activities, all new, each with its own messageId."""
    made = []
    for _ in range(count):
        message_id = uuid.uuid4().hex
        activities = []
        for i in range(size):
            activity = dict(TEMPLATE[i % len(TEMPLATE)])
            activity["marketoGUID"] = str(uuid.uuid4())
            activity["leadId"] = 100000 + i
            activities.append(activity)
        document = {"munchkinId": "123-ABC-456", "messageId": message_id, "activities": activities}
        made.append((message_id, orjson.dumps(document)))
    return made


class Sender:
    """Posts pushes from a thread pool, one keep-alive connection per thread; records acknowledgements."""

    def __init__(self, port, path, token, threads=8):
        self.port, self.path, self.token = port, path, token
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(threads)
        self.acks = {}  # messageId -> (acknowledged at, wall clock; seconds from send to ack)
        self.failures = 0

    def _connection(self):
        if getattr(self.local, "conn", None) is None:
            self.local.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        return self.local.conn

    def post(self, message_id, body):
        sent = time.time()
        try:
            conn = self._connection()
            conn.request(
                "POST", self.path, body, {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            self.local.conn = None
            self.failures += 1
            return
        acknowledged = time.time()
        if response.status == 200:
            self.acks[message_id] = (acknowledged, acknowledged - sent)
        else:
            self.failures += 1


async def send_at_rate(sender, made, per_second):
    """Open loop: one push every 1/per_second s, whatever the answers take."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending = []
    for index, (message_id, body) in enumerate(made):
        await asyncio.sleep(max(0.0, start + index / per_second - loop.time()))
        pending.append(loop.run_in_executor(sender.pool, sender.post, message_id, body))
    await asyncio.gather(*pending)


# --- Live: WebSocket clients --------------------------------------------------------------------------


def client_factory(port, session, arrivals, ready):
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    class Client(WebSocketClientProtocol):
        def onOpen(self):
            self.seen = {}
            arrivals.append(self.seen)

        def onMessage(self, payload, is_binary):
            now = time.time()
            frame = orjson.loads(payload)
            if frame.get("type") == "live.hello":
                ready.release()
                return
            for row in frame.get("counts", ()):
                self.seen.setdefault(row["batch"], now)

    factory = WebSocketClientFactory(
        f"ws://{HOST}:{port}/ws/live/?source=all",
        origin=f"http://{HOST}:{port}",
        headers={"Cookie": f"sessionid={session}"},
    )
    factory.protocol = Client
    return factory


async def connect_clients(port, session, count):
    loop = asyncio.get_running_loop()
    arrivals, ready = [], asyncio.Semaphore(0)
    factory = client_factory(port, session, arrivals, ready)
    transports = []
    for _ in range(count):
        transport, _protocol = await loop.create_connection(factory, HOST, port)
        transports.append(transport)
    for _ in range(count):
        await asyncio.wait_for(ready.acquire(), 30)
    return transports, arrivals


def percentiles(values):
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction):
        return ordered[min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.5) - 1))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.5) * 1000, 1),
        "p95_ms": round(at(0.95) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def batch_ids(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id, meta->'push'->>'messageId' FROM streams_batch").fetchall()
    return {message_id: batch_id for batch_id, message_id in rows if message_id}


async def live_phase(args, port, source, session):
    per_second = args.rate / args.batch
    count = int(per_second * args.duration)
    print(f"live: {count} pushes of {args.batch} at {per_second:g}/s, {args.clients} clients", file=sys.stderr)
    made = bodies(count, args.batch)
    transports, arrivals = await connect_clients(port, session, args.clients)
    sender = Sender(port, source["endpoints"]["legacy_push"], source["api_token"])
    started = time.time()
    await send_at_rate(sender, made, per_second)
    elapsed = time.time() - started
    await asyncio.sleep(3.0)  # the last ticks reach the clients
    for transport in transports:
        transport.close()
    return sender, arrivals, elapsed


def live_results(args, sender, arrivals, elapsed):
    ids = batch_ids(f"{args.pg}/{DB}")
    latencies, missing, acknowledged = [], 0, {}
    for message_id, (at, _) in sender.acks.items():
        if message_id in ids:
            acknowledged[ids[message_id]] = at
    for seen in arrivals:
        for batch_id, at in acknowledged.items():
            if batch_id in seen:
                latencies.append(max(0.0, seen[batch_id] - at))
            else:
                missing += 1
    return {
        "events_per_second_offered": args.rate,
        "events_per_second_acknowledged": round(len(sender.acks) * args.batch / elapsed),
        "pushes_failed": sender.failures,
        "ack_latency": percentiles([took for _, took in sender.acks.values()]),
        "ack_to_frame": percentiles(latencies),
        "deliveries_missing": missing,
        "clients": args.clients,
        "workers": args.workers,
    }


# --- Snapshot over a large history -----------------------------------------------------------------------

HISTORY_SQL = """
INSERT INTO dashboard_minutecount (source_id, stream, type, activity_type_id, minute, count)
SELECT %(source)s, 'activity', 'com.adobe.platform.marketo.activity.standard.type' || t, t,
       date_trunc('minute', now()) - make_interval(mins => m), %(per_row)s
FROM generate_series(1, 20) AS t, generate_series(0, 7 * 24 * 60 - 1) AS m
"""
HOURS_SQL = """
INSERT INTO dashboard_hourcount (source_id, stream, type, activity_type_id, hour, count)
SELECT source_id, stream, type, activity_type_id, date_trunc('hour', minute), SUM(count)
FROM dashboard_minutecount WHERE type LIKE 'com.adobe.platform.marketo.activity.standard.type%%'
GROUP BY 1, 2, 3, 4, 5
"""
RAW_SQL = """
INSERT INTO streams_event (source_id, batch_id, munchkin_id, stream, type, event_uid, activity_key, received_at,
  occurred_at, activity_type_id, activity_type_name, lead_id, primary_attribute, primary_attribute_id,
  campaign_id, campaign_name, program_id, program_name, component_type, component_id, action, user_numeric,
  user_email, kind, subtype, details, flags, raw)
SELECT %(source)s, %(batch)s, '123-ABC-456', 'activity',
  'com.adobe.platform.marketo.activity.standard.type' || (g %% 20 + 1),
  'bench-' || g, NULL, now() - make_interval(secs => (g::float8 * %(spread)s / %(n)s)),
  now() - make_interval(secs => (g::float8 * %(spread)s / %(n)s) + 5), g %% 20 + 1, 'Type ' || (g %% 20 + 1),
  (g %% 50000)::text, '/page/' || (g %% 1000), '', '', '', '', '', '', '', '', '', '', '', '', '', '[]'::jsonb,
  '{"leadId": ' || (g %% 50000) || ', "activityTypeId": ' || (g %% 20 + 1) || ', "attributes": []}'
FROM generate_series(1, %(n)s) AS g
"""


def fill_history(args, source_id):
    free = shutil.disk_usage(VAR).free
    if free < MIN_FREE_BYTES:
        raise SystemExit(f"only {free / 2**30:.1f} GiB free; the snapshot phase needs {MIN_FREE_BYTES / 2**30:.0f}")
    per_row = max(1, args.history_events // (20 * 7 * 24 * 60))
    with psycopg.connect(f"{args.pg}/{DB}", autocommit=True) as conn:
        started = time.time()
        conn.execute(HISTORY_SQL, {"source": source_id, "per_row": per_row})
        conn.execute(HOURS_SQL)
        batch = conn.execute(
            "INSERT INTO streams_batch (received_at, protocol, source_id, accepted, duplicates, counts, meta) "
            "VALUES (now() - interval '8 days', 'bench', %s, 0, 0, '[]', '{}') RETURNING id",
            [source_id],
        ).fetchone()[0]
        # Mark it rolled up: its events are the raw-event filler, already counted by the history above.
        conn.execute("INSERT INTO dashboard_rolledupbatch (batch_id) VALUES (%s)", [batch])
        chunk = 500_000
        for offset in range(0, args.raw_events, chunk):
            n = min(chunk, args.raw_events - offset)
            conn.execute(_raw_chunk(offset, n, args.raw_events), {"source": source_id, "batch": batch})
            print(f"snapshot: {offset + n:,} raw events stored", file=sys.stderr)
        conn.execute("ANALYZE")
        took = time.time() - started
    return {"rollup_rows": 20 * 7 * 24 * 60, "history_events": per_row * 20 * 7 * 24 * 60,
            "raw_events": args.raw_events, "fill_seconds": round(took, 1)}  # fmt: skip


def _raw_chunk(offset, n, total):
    """RAW_SQL for events offset+1 … offset+n, spread evenly over 7 days before now."""
    spread = 7 * 86400
    return (
        RAW_SQL.replace("%(n)s", str(n))
        .replace("'bench-' || g", f"'bench-' || (g + {offset})")
        .replace("(g::float8 * %(spread)s / %(n)s)", f"((g + {offset})::float8 * {spread} / {total})")
        .replace("%(spread)s", str(spread))
    )


def time_snapshots(port, session, repeats):
    results = {}
    for name in RANGES:
        took = []
        for attempt in range(repeats + 1):
            conn = http.client.HTTPConnection(HOST, port, timeout=60)
            started = time.perf_counter()
            conn.request("GET", f"/api/v1/overview?range={name}&tz=UTC", headers={"Cookie": f"sessionid={session}"})
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            conn.close()
            if response.status != 200:
                raise SystemExit(f"snapshot {name}: {response.status} {body[:200]!r}")
            if attempt:  # the first one warms caches and connections
                took.append(elapsed)
        results[name] = percentiles(took) | {"bytes": len(body), "events": orjson.loads(body)["totals"]["events"]}
    return results


# --- Paint: the overview in a browser ----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [  # as tests/browser.py: without them Chromium keeps calling hosts this network refuses
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAINT_SCRIPT = """() => {
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  const plotly = performance.getEntriesByType('resource').find(r => r.name.includes('/vendor/plotly'));
  return {
    fcp: paint ? paint.startTime : null,
    plotly_transfer: plotly ? plotly.transferSize : null,
    plotly_encoded: plotly ? plotly.encodedBodySize : null,
  };
}"""
CHART_DRAWN = "() => { const c = document.getElementById('rate-chart'); return !!(c && c._fullLayout); }"


def time_paint(port, session, repeats):
    """First contentful paint and chart drawn (ms from navigation start) of the overview, warm cache."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not shutil.which(CHROMIUM):
        return {"skipped": f"{CHROMIUM} is not installed"}
    base = f"http://{HOST}:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
        page = context.new_page()
        visits = [_visit(page, base) for _ in range(repeats + 1)]
        browser.close()
    first, later = visits[0], visits[1:]
    return {
        "first_visit": first,
        "fcp": percentiles([v["fcp"] / 1000 for v in later if v["fcp"] is not None]),
        "chart_drawn": percentiles([v["chart_drawn"] / 1000 for v in later]),
        "plotly_transfer_bytes_first": first["plotly_transfer"],
        "plotly_transfer_bytes_later": max(v["plotly_transfer"] or 0 for v in later) if later else None,
    }


def _visit(page, base):
    page.goto(base + "/", wait_until="load")
    page.wait_for_function(CHART_DRAWN, timeout=30_000)
    drawn = page.evaluate("() => performance.now()")
    measured = page.evaluate(PAINT_SCRIPT)
    return measured | {"chart_drawn": drawn}


# --- Main ------------------------------------------------------------------------------------------------


def report(results):
    lines = ["## bench/live", ""]
    if "live" in results:
        live = results["live"]
        lines += [
            f"Live: {live['workers']} web processes, {live['clients']} WebSocket clients following every source, "
            f"legacy pushes of 500 at {live['events_per_second_offered']:g} events/s offered "
            f"({live['events_per_second_acknowledged']} acknowledged/s, {live['pushes_failed']} failed).",
            "",
            "| measure | n | p50 ms | p95 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name in ("ack_latency", "ack_to_frame"):
            p = live[name]
            lines.append(f"| {name} | {p.get('n')} | {p.get('p50_ms')} | {p.get('p95_ms')} | {p.get('p99_ms')} | "
                         f"{p.get('max_ms')} |")  # fmt: skip
        lines += ["", f"Deliveries missing (client, batch): {live['deliveries_missing']}.", ""]
    if "snapshot" in results:
        fill = results["history"]
        lines += [
            f"Snapshot: {fill['history_events']:,} events' worth of rollups ({fill['rollup_rows']:,} rows) and "
            f"{fill['raw_events']:,} raw events (filled in {fill['fill_seconds']} s).",
            "",
            "| range | n | p50 ms | p95 ms | max ms | events |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, p in results["snapshot"].items():
            lines.append(f"| {name} | {p['n']} | {p['p50_ms']} | {p['p95_ms']} | {p['max_ms']} | {p['events']:,} |")
    if "paint" in results:
        lines += ["", *paint_lines(results["paint"])]
    return "\n".join(lines)


def paint_lines(paint):
    if "skipped" in paint:
        return [f"Paint: skipped ({paint['skipped']})."]
    first = paint["first_visit"]
    lines = [
        f"Paint: the overview in headless Chromium; first visit: first paint {first['fcp']:.0f} ms, chart drawn "
        f"{first['chart_drawn']:.0f} ms, Plotly.js {first['plotly_transfer']:,} bytes on the wire. Later visits "
        f"(warm cache, Plotly.js {paint['plotly_transfer_bytes_later']:,} bytes on the wire):",
        "",
        "| measure | n | p50 ms | p95 ms | max ms | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, target in (("fcp", "< 500 ms"), ("chart_drawn", "")):
        p = paint[name]
        lines.append(
            f"| {name} | {p.get('n')} | {p.get('p50_ms')} | {p.get('p95_ms')} | {p.get('max_ms')} | {target} |"
        )
    return lines


def main():
    args = parse_args()
    env = environment(args)
    source, session = prepare(args, env)
    results = {}
    try:
        if not args.skip_live:
            port = free_port()
            process, log = start_server(args, env, port)
            try:
                sender, arrivals, elapsed = asyncio.run(live_phase(args, port, source, session))
            finally:
                stop_server(process, log)
            results["live"] = live_results(args, sender, arrivals, elapsed)
        if not args.skip_snapshot:
            results["history"] = fill_history(args, source["id"])
            port = free_port()
            process, log = start_server(args, env, port)
            try:
                results["snapshot"] = time_snapshots(port, session, args.snapshot_repeats)
                if not args.skip_paint:
                    results["paint"] = time_paint(port, session, args.paint_repeats)
            finally:
                stop_server(process, log)
        elif not args.skip_paint:
            port = free_port()
            process, log = start_server(args, env, port)
            try:
                results["paint"] = time_paint(port, session, args.paint_repeats)
            finally:
                stop_server(process, log)
    finally:
        if not args.keep:
            admin_sql(args.pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    (VAR / "results.json").write_text(json.dumps(results, indent=2))
    print(report(results))


if __name__ == "__main__":
    main()
