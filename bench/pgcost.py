"""What one signed 20-event Adobe I/O request costs PostgreSQL: round trips, statements, backend CPU.

In process, through the whole Django ASGI application as daphne calls it (so the pool's hand-out
and return are counted), one request at a time, on fresh bodies; then the view alone (no ASGI
handler: the difference is Django's request handling and its thread hand-offs). Every round trip is one call of
psycopg's ``Connection.wait``; each is timed (wall, loopback) and labelled with its statement.
PostgreSQL's CPU is read from /proc for the backends connected to this database (the bench's own
database: nobody else's work is counted). Then EXPLAIN (ANALYZE, BUFFERS) of the event insert.

Run: DATABASE_URL=… python bench/pgcost.py --source-json FILE [--requests 300]
(bench/run.sh creates the database and the source; so does `manage.py add_source … --json`).
"""

import argparse
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cpu
import orjson
import payloads

ROOT = Path(__file__).resolve().parent.parent


class RoundTrips:
    """libpq's protocol trace of every connection opened while installed, read back as round trips.

    One trace file per connection (libpq buffers each): a round trip runs from the client's first
    message to the server's ReadyForQuery; it is labelled with its statement and timed from the
    trace's timestamps (the server's work plus loopback).
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in self.directory.glob("conn-*.trace"):
            old.unlink()
        self.files = []

    def install(self):
        import psycopg

        original, trips = psycopg.Connection.connect.__func__, self

        def connect(cls, *args, **kwargs):
            conn = original(cls, *args, **kwargs)
            trace = (trips.directory / f"conn-{len(trips.files)}.trace").open("w")
            trips.files.append(trace)
            conn.pgconn.trace(trace.fileno())
            return conn

        psycopg.Connection.connect = classmethod(connect)

    def mark(self, conns):
        """Where each connection's trace is now (its size): round trips are read from a mark on."""
        return {Path(f.name): Path(f.name).stat().st_size for f in self.files}

    def read(self, marks):
        trips = []
        for path in sorted(self.directory.glob("conn-*.trace")):
            trips += _round_trips(path, marks.get(path, 0))
        return trips


def _round_trips(path, since):
    trips, label, started = [], None, None
    prepared = {}  # statement name -> label: a prepared statement's later runs send only Bind
    offset = 0
    with path.open("rb") as trace:
        for raw in trace:
            offset += len(raw)
            parts = raw.decode(errors="replace").rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            moment = _seconds(parts[0])
            rest = parts[4] if len(parts) > 4 else ""
            if parts[1] == "F" and parts[3] == "Parse" and (name := _quoted(rest, 0)):
                prepared[name] = _label(_statement("Parse", rest)) + " (prepared)"
            if offset <= since:  # before the mark: only the names prepared there are wanted
                continue
            if parts[1] == "F" and label is None:
                label, started = "", moment
            if parts[1] == "F" and parts[3] in ("Query", "Parse") and not label:
                label = _label(_statement(parts[3], rest))
            if parts[1] == "F" and parts[3] == "Bind" and not label and (name := _quoted(rest, 1)):
                label = prepared.get(name, f"prepared {name}")
            if parts[1] == "B" and parts[3] == "ReadyForQuery" and label is not None:
                trips.append((label or "(empty query: the pool's check)", moment - started))
                label = None
    return trips


def _quoted(rest, n):
    """The n-th double-quoted field of a traced message (Parse: the statement; Bind: portal, statement)."""
    fields = rest.split('"')
    return fields[2 * n + 1] if len(fields) > 2 * n + 1 else ""


def _seconds(stamp):
    clock = stamp.split(" ")[-1]
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _statement(message, rest):
    """The SQL of a Query (' "SQL"') or Parse (' "name" "SQL" n types') message as libpq traces it."""
    rest = rest.strip()
    if message == "Parse":
        rest = rest[rest.index('"', 1) + 1 :].strip()  # past the statement's name
    return rest[1 : rest.rindex('"')] if rest.count('"') >= 2 else ""


def _label(sql):
    words = " ".join(sql.split())
    if not words:
        return ""
    for table in ("streams_source", "streams_batch", "streams_event", "streams_sourcetoken"):
        if table in words:
            return f"{words.split()[0]} {table}" + (
                " (+ events)" if "streams_event" in words and table != "streams_event" else ""
            )
    return words[:60]


def backends_cpu(dsn):
    """CPU seconds of this database's backends (other than the one asking), from /proc."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    return sum(cpu._stat(pid)[0] for pid in pids), pids


def measure(source, signer, requests, trips):
    import stages

    from streams import receivers

    caller = stages._asgi_caller(source, "adobe_io")
    bodies = payloads.io_requests(signer, requests + 20, seed=int(time.time()), processes=2)
    for item in bodies[:20]:  # warm: imports, keys fetched, pool filled
        caller(item)
    dsn = os.environ["DATABASE_URL"]
    pg_before, pids_before = backends_cpu(dsn)
    for trace in trips.files:
        trace.flush()
    mark = trips.mark(None)
    own_before, wall_started = time.process_time(), time.perf_counter()
    per_request = []
    for item in bodies[20:]:
        started = time.perf_counter()
        caller(item)
        per_request.append(time.perf_counter() - started)
    wall = time.perf_counter() - wall_started
    own = time.process_time() - own_before
    pg_after, pids_after = backends_cpu(dsn)
    if pids_before != pids_after:
        print(f"  (backends changed during the run: {pids_before} -> {pids_after}; the CPU figure is partial)")
    from django.db import connection

    connection.close()  # back to the pool; libpq flushes its trace buffers on each message anyway
    count, seconds = Counter(), defaultdict(float)
    for label, elapsed in trips.read(mark):
        count[label] += 1
        seconds[label] += elapsed
    view = stages._view_caller(receivers.adobe_io, source, "adobe_io")
    view_bodies = payloads.io_requests(signer, requests, seed=int(time.time()) + 1, processes=2)
    view_started = time.process_time()
    for item in view_bodies:
        view(item)
    view_cpu = time.process_time() - view_started
    return {
        "requests": requests,
        "python_cpu_ms_per_request_view_only": round(view_cpu / requests * 1000, 2),
        "round_trips_per_request": round(sum(count.values()) / requests, 2),
        "by_statement": {
            label: {"per_request": round(n / requests, 2), "ms_each": round(seconds[label] / n * 1000, 3)}
            for label, n in count.most_common()
        },
        "pg_backend_cpu_ms_per_request": round((pg_after - pg_before) / requests * 1000, 2),
        "python_cpu_ms_per_request": round(own / requests * 1000, 2),
        "wall_ms_median": round(statistics.median(per_request) * 1000, 2),
        "wall_total_s": round(wall, 2),
    }


def explain_insert(source):
    """EXPLAIN (ANALYZE, BUFFERS) of one 20-event insert, rolled back."""
    import psycopg
    from django.db import connection, transaction
    from django.utils import timezone

    from streams import store, wire
    from streams.models import Source

    body = payloads.io_body(payloads.Ids(int(time.time()) + 7), payloads.io_templates(), 20)
    rows = [wire.normalise_io(element) for element in orjson.loads(body)]
    receiving = Source.objects.get(id=source["id"])
    store.prepare(rows, receiving)  # filed under their sources and in key order, as store() commits them
    if hasattr(store, "_Job"):  # the statement for a group of requests (group commit), one here
        sql, params = store._STORE_SQL, store._store_params([store._Job(rows, receiving.id, "io", timezone.now(), {})])
    elif hasattr(store, "_STORE_SQL"):
        sql, params = store._STORE_SQL, store._store_params(rows, receiving, "io", timezone.now(), {}, len(rows))
    else:
        return ["(this tree has no store._STORE_SQL: skipped)"]
    with transaction.atomic():
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            if hasattr(store, "_TextArray"):  # the store's own text[] dumper (issue 15)
                cursor.adapters.register_dumper(store._TextArray, store._TextArrayDumper)
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            plan = [line for (line,) in cursor.fetchall()]
        transaction.set_rollback(True)
    return plan


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--tree", default=str(ROOT))
    parser.add_argument("--trace-dir", default=str(ROOT / "var" / "pgcost"), help="libpq's trace files (replaced)")
    args = parser.parse_args()
    source = orjson.loads(Path(args.source_json).read_bytes())
    os.chdir(args.tree)
    sys.path.insert(0, args.tree)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()
    import ingest
    from django.conf import settings

    trips = RoundTrips(args.trace_dir)
    trips.install()  # before the first connection: the pool opens its own
    signer = payloads.Signer()
    settings.ADOBE_IO_KEY_BASE_URL = ingest.start_key_server(signer.public_pems())
    print(f"load average {os.getloadavg()[0]:.2f}")
    result = measure(source, signer, args.requests, trips)
    print(f"== one signed 20-event I/O request through the ASGI app ({args.requests} requests, one at a time)")
    names = ("round_trips_per_request", "pg_backend_cpu_ms_per_request", "python_cpu_ms_per_request")
    for name in (*names, "python_cpu_ms_per_request_view_only"):
        print(f"  {name:<38}{result[name]}")
    print(f"  {'wall_ms_median':<34}{result['wall_ms_median']}")
    print("  round trips: per request, wall ms each (loopback; includes the backend's work)")
    for label, numbers in result["by_statement"].items():
        print(f"    {numbers['per_request']:>5} x {numbers['ms_each']:>7} ms  {label}")
    print("== EXPLAIN (ANALYZE, BUFFERS) of the 20-event insert")
    for line in explain_insert(source):
        print("  " + line)


if __name__ == "__main__":
    main()
