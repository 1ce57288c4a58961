"""bench/storage: the partitioned storage at scale (issue 10), on PostgreSQL, over loopback.

Phases (``--phases``, all by default):

- ``ingest``: both receivers (closed loop, ``python -m fluxo.serve --workers 2``) on an empty database
  and on a filled one (``--rows``, default 20M: ``--big`` of them on one day past the retention, the
  rest over the week before today; keys filled too), interleaved ``--rounds`` times (E F, F E, E F),
  today's partitions emptied before each run so each starts equal; then the ceiling (bench/ceiling.py,
  2 writers, the same partitioned schema and key structure) after each run. Medians, full/empty ratios,
  and the ratio of the legacy push to the ceiling.
- ``drop``: on the filled database, a steady legacy push (10 pushes/s of 500 activities) without, then
  during ``streams.partitions.drop_expired`` dropping the big day (events, batches, keys): drop time,
  p99 / max latency and errors.
- ``read``: ``GET /api/v1/events?since=<1 h ago>`` (a personal API token) and a lead's timeline page
  over HTTP on the filled database: medians of ``--read-samples`` requests.
- ``migrate``: for each of ``--migrate-rows`` (default 1M and 10M): a database at streams 0005 (the
  last tree before the partitioned storage runs on it: its code serves the push while the upgrade
  runs), filled with SQL over the past week, then ``manage.py migrate`` of this tree while that
  server takes a steady push (10 pushes/s of 100): total time, the switch (the upgrade's exclusive
  lock on the event tables, polled every 20 ms), 503s and the push's max latency.

Run: ``make bench-storage`` (bench/run.sh --storage), or ``bash bench/run.sh --storage --phases drop``.
BENCH_KEEP=1 (or ``--keep``) keeps the filled database fluxo_benchst_full and reuses it; a day the
drop removed is filled again next time. The other bench databases are dropped at the end.
"""

import argparse
import http.client
import os
import queue
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import ceiling
import cpu
import fill
import ingest
import load
import orjson
import payloads
import psycopg

ROOT = Path(__file__).resolve().parent.parent
EMPTY, FULL, MIG = "fluxo_benchst_empty", "fluxo_benchst_full", "fluxo_benchst_mig"
# The last commit before the partitioned storage: its code runs on the 0005 schema, as a live
# installation does while it upgrades.
OLD_COMMIT = "11fa98a"
HOST = ingest.HOST


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", default="ingest,drop,read,migrate")
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the filled database")
    parser.add_argument("--big", type=int, default=10_000_000, help="rows of its one day past the retention")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each closed loop")
    parser.add_argument("--steady-duration", type=float, default=20.0, help="seconds of each drop-phase window")
    parser.add_argument("--read-samples", type=int, default=15)
    parser.add_argument("--migrate-rows", default="1000000,10000000")
    parser.add_argument("--db-prefix", default="fluxo_benchst_", help="of the databases made (…empty, …full, …mig)")
    parser.add_argument("--keep", action="store_true", default=os.environ.get("BENCH_KEEP") == "1")
    parser.add_argument("--var", default=str(ROOT / "var" / "bench-storage"))
    args = parser.parse_args()
    args.phases = set(args.phases.split(","))
    args.var = Path(args.var).resolve()
    global EMPTY, FULL, MIG
    EMPTY, FULL, MIG = (f"{args.db_prefix}{name}" for name in ("empty", "full", "mig"))
    return args


def median(values):
    return round(statistics.median(values), 1) if values else None


def load_average():
    return round(os.getloadavg()[0], 2)


class LazyBodies:
    """Fresh legacy bodies made when taken (for open loops of unknown length)."""

    def __init__(self, size, seed):
        self.size, self.ids, self.templates = size, payloads.Ids(seed), payloads.legacy_templates()

    def __len__(self):
        return 10**9

    def __getitem__(self, index):
        return payloads.legacy_body(self.ids, self.templates, self.size)


def steady_until(target, items, rate, stop):
    """load.steady's open loop, until ``stop`` is set: latency from the scheduled time."""
    phase = load._Phase(target, items)
    connections = [load.Connection(target.host, target.port) for _ in range(32)]
    work = queue.SimpleQueue()
    cpu0, start = os.times(), time.perf_counter()

    def sender(connection):
        while (job := work.get()) is not None:
            scheduled, item = job
            status = load._send(connection, target, item)
            phase.record(status, time.perf_counter() - scheduled)

    threads = load._start_threads(sender, connections)
    n = 0
    while not stop.is_set():
        scheduled = start + n / rate
        pause = scheduled - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        work.put((scheduled, phase.take()))
        n += 1
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    return load._finish(phase, connections, cpu0, start)


def steady_summary(result):
    return {
        "requests": result.requests,
        "p50_ms": round(result.percentile(50) * 1000, 1),
        "p99_ms": round(result.percentile(99) * 1000, 1),
        "max_ms": round(max(result.latencies, default=0) * 1000, 1),
        "errors": {str(k): v for k, v in result.errors.items()},
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.signer = payloads.Signer()
        self.key_url = ingest.start_key_server(self.signer.public_pems())
        self.postmaster = cpu.postmaster_pid()
        self.log = args.var / "server.log"
        self.report = {"machine": {"cores": os.cpu_count()}, "load_average": []}

    def note_load(self, what):
        self.report["load_average"].append([what, load_average()])

    def serve(self, database, source, tree=ROOT):
        server = ingest.Server(2, self.key_url, self.log, str(tree), "reuseport")
        server.env["DATABASE_URL"] = fill.dsn(database)
        return server

    def targets(self, server, source):
        token = {"Authorization": f"Bearer {source['api_token']}"}
        legacy = load.Target(HOST, server.port, source["endpoints"]["legacy_push"], token, 500)
        io = load.Target(HOST, server.port, source["endpoints"]["adobe_io"], {"Content-Type": "application/json"}, 20)
        return legacy, io

    def started(self, server, source):
        if not load.wait_until_serving(HOST, server.port, source["endpoints"]["legacy_push"]):
            raise SystemExit(f"the server did not start; see {self.log}")

    # --- Bodies --------------------------------------------------------------------------------------

    def make_bodies(self):
        started = time.perf_counter()
        legacy = payloads.legacy_bodies(400 + 32, seed=1)
        steady = payloads.legacy_bodies(int(20 * self.args.steady_duration) + 2, seed=3)
        io = payloads.io_requests(self.signer, 4000 + 64, seed=2)
        self.bodies = {
            "legacy": legacy[:400], "legacy_warm": legacy[400:], "io": io[:4000], "io_warm": io[4000:],
            "steady": steady,
        }  # fmt: skip
        print(f"bodies made in {time.perf_counter() - started:.0f} s", flush=True)

    # --- Ingest, empty against filled ----------------------------------------------------------------

    def ingest(self):
        sources = {EMPTY: self.empty_source, FULL: self.full_source}
        rows = {db: ceiling.rows_of(self.bodies["legacy"], s["id"]) for db, s in sources.items()}
        for db in sources:
            ceiling.create_copy(fill.dsn(db))
        runs = {db: [] for db in sources}
        for n in range(self.args.rounds):
            order = (EMPTY, FULL) if n % 2 == 0 else (FULL, EMPTY)
            for db in order:
                self.note_load(f"ingest round {n + 1} {db}")
                run = self.ingest_run(db, sources[db], rows[db])
                runs[db].append(run)
                print(
                    f"  round {n + 1} {db:<20} legacy {run['legacy_max']['events_per_s']:>7,} ev/s  "
                    f"I/O {run['io_max']['requests_per_s']:>6} req/s  ceiling {run['ceiling']:>7,} ev/s  "
                    f"load {load_average()}  cpu% legacy {run['legacy_max']['cpu_percent_of_one_core']}",
                    flush=True,
                )
        self.report["ingest"] = {"runs": runs, "medians": self.ingest_medians(runs)}

    def ingest_run(self, db, source, ceiling_rows):
        fill.empty_today(db)
        with self.serve(db, source) as server:
            self.started(server, source)
            meter = cpu.Meter(server.daphne_pids(), self.postmaster, db)
            legacy, io = self.targets(server, source)
            load.saturate(legacy, self.bodies["legacy_warm"], 8, 30)
            load.saturate(io, self.bodies["io_warm"], 16, 30)
            run = {}
            for name, target, items, concurrency in (
                ("legacy_max", legacy, self.bodies["legacy"], 8),
                ("io_max", io, self.bodies["io"], 16),
            ):
                before = meter.sample()
                result = load.saturate(target, items, concurrency, self.args.duration)
                run[name] = ingest.summarise(result, cpu.Meter.share(before, meter.sample(), result.elapsed))
        ceiling.reset_copy(fill.dsn(db))
        count, elapsed, _ = ceiling.measure(fill.dsn(db), ceiling_rows, 2, self.args.duration)
        run["ceiling"] = round(count / elapsed)
        ceiling.reset_copy(fill.dsn(db))
        fill.empty_today(db)
        return run

    def ingest_medians(self, runs):
        medians = {}
        for db, each in runs.items():
            medians[db] = {
                "legacy_events_per_s": median([r["legacy_max"]["events_per_s"] for r in each]),
                "io_requests_per_s": median([r["io_max"]["requests_per_s"] for r in each]),
                "ceiling_events_per_s": median([r["ceiling"] for r in each]),
            }
        e, f = medians[EMPTY], medians[FULL]
        medians["full_over_empty"] = {k: round(f[k] / e[k], 2) for k in e}
        medians["legacy_over_ceiling"] = {
            db: round(medians[db]["legacy_events_per_s"] / medians[db]["ceiling_events_per_s"], 2) for db in runs
        }
        print(f"\ningest medians: {orjson.dumps(medians).decode()}", flush=True)
        return medians

    # --- Dropping a day ------------------------------------------------------------------------------

    def drop(self):
        db, source = FULL, self.full_source
        fill.empty_today(db)
        big_day = fill.plan(self.args.rows, self.args.big)[0][0]
        sizes = partition_sizes(db, big_day)
        with self.serve(db, source) as server:
            self.started(server, source)
            legacy, _io = self.targets(server, source)
            load.saturate(legacy, self.bodies["legacy_warm"], 8, 30)
            half = len(self.bodies["steady"]) // 2
            self.note_load("drop baseline")
            baseline = load.steady(legacy, self.bodies["steady"][:half], 10, self.args.steady_duration)
            self.note_load("drop")
            holder = {}
            pusher = threading.Thread(
                target=lambda: holder.update(
                    result=load.steady(legacy, self.bodies["steady"][half:], 10, self.args.steady_duration)
                )
            )
            pusher.start()
            time.sleep(3)
            dropped = self.run_drop(db)
            pusher.join()
        filled = fill.meta(db, "filled") or {}
        filled.pop(big_day.isoformat(), None)  # filled again by the next run that keeps the database
        fill.set_meta(db, "filled", filled)
        self.report["drop"] = {
            "day": big_day.isoformat(),
            "sizes": sizes,
            **dropped,
            "push_without_drop": steady_summary(baseline),
            "push_during_drop": steady_summary(holder["result"]),
        }
        print(f"\ndrop: {orjson.dumps(self.report['drop']).decode()}", flush=True)

    def run_drop(self, db):
        """drop_expired in its own process (as the beat's worker runs it), each partition's drop timed."""
        script = (
            "import json, time\n"
            "from streams import partitions\n"
            "each, real = [], partitions._drop\n"
            "def timed(table, partition):\n"
            "    t = time.perf_counter(); out = real(table, partition)\n"
            "    each.append([partition.name, round((time.perf_counter() - t) * 1000, 1)]); return out\n"
            "partitions._drop = timed\n"
            "t = time.perf_counter(); dropped = partitions.drop_expired()\n"
            "print(json.dumps({'dropped': dropped, 'seconds': round(time.perf_counter() - t, 3), 'each_ms': each}))\n"
        )
        os.environ["FLUXO_RETENTION_DAYS"] = str(fill.RETENTION_DAYS)
        env = {**os.environ, "DATABASE_URL": fill.dsn(db), "FLUXO_LOG_LEVEL": "INFO"}
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(done.stderr)
        # The partitions module's warnings (a lock not granted in time, a retry) say where time went.
        logged = [line for line in done.stderr.splitlines() if "partition" in line]
        return {**orjson.loads(done.stdout.strip().splitlines()[-1]), "log": logged}

    # --- The read API and a lead's timeline ----------------------------------------------------------

    def read(self):
        db, source = FULL, self.full_source
        script = (
            "import json\n"
            "from django.conf import settings\n"
            "from django.contrib.auth import get_user_model\n"
            "from django.db import connection\n"
            "from django.test import Client\n"
            "from streams import api_tokens\n"
            "User = get_user_model()\n"
            "user = User.objects.filter(username='bench-reader').first() or "
            "User.objects.create_superuser('bench-reader', 'r@example.com', None)\n"
            "_t, secret = api_tokens.create(user, name='bench')\n"
            "client = Client(); client.force_login(user)\n"
            "cursor = connection.cursor()\n"
            "cursor.execute(\"SELECT lead_id FROM streams_event WHERE received_at < now() - interval '1 day' "
            "AND stream = 'activity' LIMIT 1\")\n"
            "lead = cursor.fetchone()[0]\n"
            "cursor.execute('SELECT count(*) FROM streams_event WHERE lead_id = %s', [lead])\n"
            "print(json.dumps({'token': secret, 'cookie': settings.SESSION_COOKIE_NAME, "
            "'session': client.cookies[settings.SESSION_COOKIE_NAME].value, 'lead': lead, "
            "'lead_events': cursor.fetchone()[0]}))\n"
        )
        found = orjson.loads(fill.manage(db, "shell", "-c", script, capture=True).strip().splitlines()[-1])
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        with psycopg.connect(fill.dsn(db)) as conn:
            last_hour = conn.execute(
                "SELECT count(*) FROM streams_event WHERE received_at >= now() - interval '1 hour'"
            ).fetchone()[0]
        cases = {
            "api_since_last_hour": (f"/api/v1/events?since={since}", {"Authorization": f"Bearer {found['token']}"}),
            "lead_timeline_page": (
                f"/leads/{source['id']}/{found['lead']}/",
                {"Cookie": f"{found['cookie']}={found['session']}"},
            ),
        }
        self.note_load("read")
        results = {"events_in_last_hour": last_hour, "lead_events": found["lead_events"]}
        with self.serve(db, source) as server:
            self.started(server, source)
            for name, (path, headers) in cases.items():
                results[name] = self.time_gets(server.port, path, headers, self.args.var / f"{name}.out")
            # Today's partitions as autovacuum leaves them after its next visit (statistics, visibility
            # map): seconds-old rows in a partition created empty can mislead the planner until then.
            with psycopg.connect(fill.dsn(db), autocommit=True) as conn:
                for table in fill.today_partitions():
                    conn.execute(f"VACUUM ANALYZE {table}")
            for name, (path, headers) in cases.items():
                results[f"{name}_analysed"] = self.time_gets(server.port, path, headers, self.args.var / f"{name}.out")
        self.report["read"] = results
        print(f"\nread: {orjson.dumps(results).decode()}", flush=True)

    def time_gets(self, port, path, headers, keep_as):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        times, statuses = [], set()
        for n in range(self.args.read_samples + 3):
            started = time.perf_counter()
            conn.request("GET", path, headers={**headers, "Host": HOST})
            response = conn.getresponse()
            body = response.read()
            if n >= 3:  # the first ones warm the process up (imports, connection, templates)
                times.append((time.perf_counter() - started) * 1000)
            statuses.add(response.status)
        conn.close()
        keep_as.write_bytes(body)  # the last answer, to look at
        return {
            "median_ms": median(times),
            "max_ms": round(max(times), 1),
            "status": sorted(statuses),
            "kb": len(body) >> 10,
        }

    # --- The upgrade ---------------------------------------------------------------------------------

    def old_tree(self):
        tree = self.args.var / f"tree-{OLD_COMMIT}"
        if not (tree / "manage.py").exists():
            archive = subprocess.run(["git", "archive", OLD_COMMIT], cwd=ROOT, check=True, capture_output=True).stdout
            tree.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=BytesIO(archive)) as tar:
                tar.extractall(tree, filter="data")
        return tree

    def migrate(self, rows):
        old = self.old_tree()
        fill.drop(MIG)
        fill.admin(f"CREATE DATABASE {MIG}")
        fill.manage(MIG, "migrate", "--noinput", "-v", "0", tree=old)
        fill.manage(MIG, "migrate", "--noinput", "-v", "0", "streams", "0005")
        out = fill.manage(
            MIG, "add_source", "Bench", "--munchkin-id", fill.MUNCHKIN, "--adobe-client-id", "bench_client", "--json",
            capture=True, tree=old,
        )  # fmt: skip
        source = orjson.loads(out.strip().splitlines()[-1])
        started = time.perf_counter()
        fill_unpartitioned(fill.dsn(MIG), rows, source["id"])
        filled_in = time.perf_counter() - started
        print(f"\nmigrate {rows:,}: filled at 0005 in {filled_in:.0f} s", flush=True)
        self.note_load(f"migrate {rows}")
        stop, switch = threading.Event(), {}
        with self.serve(MIG, source, tree=old) as server:
            self.started(server, source)
            legacy, _io = self.targets(server, source)
            legacy.events_per_request = 100
            holder = {}
            pusher = threading.Thread(
                target=lambda: holder.update(result=steady_until(legacy, LazyBodies(100, seed=11), 10, stop))
            )
            poller = threading.Thread(target=poll_switch, args=(fill.dsn(MIG), stop, switch))
            pusher.start(), poller.start()
            time.sleep(3)
            t0 = time.perf_counter()
            fill.manage(MIG, "migrate", "--noinput", "-v", "0")
            took = time.perf_counter() - t0
            time.sleep(2)
            stop.set()
            pusher.join(), poller.join()
        report = {
            "rows": rows,
            "fill_seconds": round(filled_in),
            "migrate_seconds": round(took, 1),
            "switch_seconds": switch.get("seconds"),
            "switch_statements": switch.get("samples"),
            "push": steady_summary(holder["result"]),
        }
        print(f"migrate {rows:,}: {orjson.dumps(report).decode()}", flush=True)
        self.report.setdefault("migrate", []).append(report)
        fill.drop(MIG)

    # --- All of it -----------------------------------------------------------------------------------

    def run(self):
        args = self.args
        print(f"machine: {os.cpu_count()} cores, load average {load_average()}", flush=True)
        self.make_bodies()
        if args.phases & {"ingest", "drop", "read"}:
            self.full_source = fill.prepare(FULL, args.rows, args.big, args.keep)
            count, keys, size = fill.sizes(FULL)
            self.report["full"] = {"events": count, "keys": keys, "size": size}
            print(f"{FULL}: {count:,} events, {keys:,} keys, {size}", flush=True)
        try:
            if "ingest" in args.phases:
                self.empty_source = fill.create(EMPTY)
                fill.steady_layout(EMPTY)
                self.ingest()
            if "drop" in args.phases:
                self.drop()
            if "read" in args.phases:
                self.read()
            if "migrate" in args.phases:
                for rows in [int(n) for n in args.migrate_rows.split(",")]:
                    self.migrate(rows)
        finally:
            fill.drop(EMPTY)
            fill.drop(MIG)
            if not args.keep and args.phases & {"ingest", "drop", "read"}:
                fill.drop(FULL)
            path = args.var / f"results-{'-'.join(sorted(args.phases))}.json"
            path.write_bytes(orjson.dumps(self.report, option=orjson.OPT_INDENT_2))
            print(f"\nresults: {path}")


def partition_sizes(database, day):
    """Rows (as last analysed), heap and index MB of the day's event and key partitions (what the drop removes)."""
    found = {}
    with psycopg.connect(fill.dsn(database)) as conn:
        for table in ("streams_event", "streams_eventkey"):
            name = f"{table}_p{day:%Y%m%d}"
            if conn.execute("SELECT to_regclass(%s)", [name]).fetchone()[0] is None:
                continue
            rows, heap, index = conn.execute(
                "SELECT reltuples::bigint, pg_relation_size(oid) >> 20, pg_indexes_size(oid) >> 20 FROM pg_class "
                "WHERE oid = %s::regclass",
                [name],
            ).fetchone()
            found[name] = {"rows": rows, "heap_mb": heap, "indexes_mb": index}
    return found


def fill_unpartitioned(url, rows, source_id):
    """``rows`` events of the past week into the 0005 schema's plain tables (indexes rebuilt after)."""
    with psycopg.connect(url, autocommit=True) as conn:
        base = fill._reserve(conn, "streams_event", rows)
        batch = fill._reserve(conn, "streams_batch", rows // fill.BATCH_SIZE + 1)
        conn.execute(
            "INSERT INTO streams_batch (id, received_at, protocol, source_id, accepted, duplicates, counts, meta) "
            "SELECT %s + j, now() - interval '4 days', 'legacy', %s, 500, 0, '[]', '{}' FROM generate_series(0, %s) j",
            [batch, source_id, rows // fill.BATCH_SIZE],
        )
    start, step = datetime.now(UTC) - timedelta(days=7), timedelta(days=7) / rows
    params = {"batch": batch, "base": base, "start": start, "step": step, "source": source_id}
    params |= {"munchkin": fill.MUNCHKIN, "raw": fill._RAW}
    chunks = [(a, min(base + rows - 1, a + fill.CHUNK - 1)) for a in range(base, base + rows, fill.CHUNK)]
    sql = fill._EVENTS.format(table="streams_event")
    ceiling._bulk_load(url, "streams_event", [(sql, {**params, "first": a, "last": b}) for a, b in chunks], 2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE streams_event, streams_batch")
        conn.execute("CHECKPOINT")


def poll_switch(url, stop, found):
    """How long the upgrade held an exclusive lock on the event tables (polled every 20 ms), and what
    its session was running meanwhile (samples per statement: where the switch's time goes)."""
    sql = (
        "SELECT l.pid, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 70) FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted "
        "AND l.mode = 'AccessExclusiveLock' AND l.database = (SELECT oid FROM pg_database WHERE datname = "
        "current_database()) AND c.relname IN ('streams_event', 'streams_event_legacy', 'streams_batch') LIMIT 1"
    )
    first = last = None
    statements = {}
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            try:
                held = conn.execute(sql).fetchone()
            except psycopg.Error:
                held = None
            now = time.perf_counter()
            if held:
                first = first or now
                last = now
                statements[held[1]] = statements.get(held[1], 0) + 1
            time.sleep(0.02)
    found["seconds"] = round(last - first + 0.02, 2) if first else None
    found["samples"] = dict(sorted(statements.items(), key=lambda item: -item[1]))


def main():
    args = parse_args()
    args.var.mkdir(parents=True, exist_ok=True)
    ingest.setup_django(str(ROOT))
    Bench(args).run()


if __name__ == "__main__":
    main()
