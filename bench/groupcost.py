"""What group commit saves: the store's statement for 1, 2, 4 or 8 requests at once, per request.

In process, on the bench database, one statement at a time (no HTTP, no concurrency: what a group
costs, not how often groups form). Each request is a fresh signed-body-sized batch: 20 Adobe I/O
events or a 500-activity legacy push, normalised beforehand (not measured). For each group size,
interleaved over rounds: PostgreSQL's CPU per request (the statement's backend, from /proc, with its
commit's WAL flush), the store's Python CPU per request (parameters, binary dump, psycopg), the
statement's wall time and the WAL it wrote.

Run: DATABASE_URL=… python bench/groupcost.py --source-json FILE [--rounds 3] [--requests 240]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cpu
import orjson
import payloads

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 2, 4, 8)


def requests_rows(kind, count, seed):
    """``count`` requests' rows, each as the receiver hands them to the store."""
    from streams import wire

    ids = payloads.Ids(seed)
    if kind == "io":
        templates = payloads.io_templates()
        bodies = [orjson.loads(payloads.io_body(ids, templates, 20)) for _ in range(count)]
        return [[wire.normalise_io(element) for element in body] for body in bodies]
    templates = payloads.legacy_templates()
    bodies = [orjson.loads(payloads.legacy_body(ids, templates, 500)) for _ in range(count)]
    return [[wire.normalise_legacy(a, body["munchkinId"]) for a in body["activities"]] for body in bodies]


def backend():
    """(CPU seconds of the Django connection's backend so far, the WAL position in bytes)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_current_wal_lsn() - '0/0'::pg_lsn")
        pid, wal = cursor.fetchone()
    return cpu._stat(pid)[0], int(wal)


def measure(receiving, kind, size, requests, seed):
    from django.utils import timezone

    from streams import store

    jobs = []
    for rows in requests_rows(kind, requests, seed):
        store.prepare(rows, receiving)  # filed and ordered as store() does
        jobs.append(store._Job(rows, receiving.id, kind, timezone.now(), {}))
    groups = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    (pg_before, wal_before), own_before, walls = backend(), time.process_time(), []
    for group in groups:
        started = time.perf_counter()
        store._store_jobs(group)
        walls.append(time.perf_counter() - started)
    own, (pg_after, wal_after) = time.process_time() - own_before, backend()
    return {
        "pg_ms": (pg_after - pg_before) / requests * 1000,
        "python_ms": own / requests * 1000,
        "statement_wall_ms": statistics.median(walls) * 1000,
        "wal_kib": (wal_after - wal_before) / requests / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=240, help="I/O requests per measurement (legacy: a tenth)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="requests a statement, e.g. 1,4")
    parser.add_argument("--kinds", default="io,legacy")
    args = parser.parse_args()
    source = orjson.loads(Path(args.source_json).read_bytes())
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()
    from streams.models import Source

    receiving = Source.objects.get(id=source["id"])
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} rounds, group sizes interleaved")
    seed = int(time.time())
    sizes, kinds = [int(size) for size in args.sizes.split(",")], args.kinds.split(",")
    for kind, requests in (("io", args.requests), ("legacy", max(8, args.requests // 10))):
        if kind not in kinds:
            continue
        measure(receiving, kind, 1, 8, seed)  # warm: the statement prepared, the pages cached
        found = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                seed += 1
                found[size].append(measure(receiving, kind, size, requests, seed))
        label = "20-event I/O" if kind == "io" else "500-activity legacy"
        print(f"== {label} requests, {requests} per measurement: medians of {args.rounds} (per request)")
        print("  group   PostgreSQL CPU ms   store Python CPU ms   statement wall ms   WAL KiB")
        for size, runs in found.items():
            pg, py, wall, wal = (statistics.median(r[name] for r in runs) for name in runs[0])
            print(f"  {size:>5}   {pg:>17.2f}   {py:>19.2f}   {wall:>17.1f}   {wal:>7.1f}")


if __name__ == "__main__":
    main()
