"""What makes the legacy push's latency tail at a steady 5,000 events/s (10 pushes of 500 a second).

Starts ``python -m fluxo.serve`` (bench/ingest.py's Server) from a tree, sends pushes on a fixed
schedule (open loop, latency from the scheduled time, as bench/load.py's ``steady``), and records,
for each push, when it was scheduled and how long it took. Meanwhile:

- every garbage collection in the daphne processes: a ``sitecustomize`` put first on their
  PYTHONPATH (this script writes it to a temporary folder; the tree is not touched) times each
  collection with ``gc.callbacks`` and appends the long ones to a file per process;
- PostgreSQL's checkpoints (``pg_stat_bgwriter``) and WAL written during the run;
- the machine's load, and the CPU of the server, PostgreSQL's bench backends and everything else.

It prints p50/p90/p99/max, the slow pushes (over ``--slow`` ms) and, for each, the collections
longer than 2 ms in any worker while it was in flight, and the checkpoints of the run.

Run (bench/run.sh-style environment: DATABASE_URL, REDIS_URL, SECRET_KEY, a migrated database and a
source): python bench/tail.py --source-json FILE --dsn DSN [--tree DIR] [--duration 30] [--env K=V ...]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cpu
import load
import orjson
import payloads
import psycopg

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

SITECUSTOMIZE = """
import gc, os, time
_log = open(os.path.join({folder!r}, "gc-%d.log" % os.getpid()), "a", buffering=1)
_started = [0.0]

_cpu = [0.0]

def _timed(phase, info):
    if phase == "start":
        _started[0], _cpu[0] = time.perf_counter(), time.thread_time()
        return
    took, cpu = time.perf_counter() - _started[0], time.thread_time() - _cpu[0]
    if took >= 0.002:
        _log.write("%.4f %.2f %d %.2f\\n" % (time.time() - took, took * 1000, info["generation"], cpu * 1000))

gc.callbacks.append(_timed)
"""


def checkpoints(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        timed, requested, written = conn.execute(
            "SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint FROM pg_stat_bgwriter"
        ).fetchone()
        wal = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0]
    return {"timed": timed, "requested": requested, "buffers": written, "wal_bytes": int(wal)}


def open_loop(target, bodies, rate, duration, pool=32):
    """[(scheduled wall time, latency s, status)] of ``rate`` pushes a second for ``duration`` s."""
    import queue

    work, records, lock = queue.SimpleQueue(), [], threading.Lock()
    connections = [load.Connection(target.host, target.port) for _ in range(pool)]

    def sender(connection):
        while (job := work.get()) is not None:
            scheduled, wall, item = job
            status = load._send(connection, target, item)
            with lock:
                records.append((wall, time.perf_counter() - scheduled, status))

    threads = [threading.Thread(target=sender, args=(c,), daemon=True) for c in connections]
    for thread in threads:
        thread.start()
    start, wall0 = time.perf_counter(), time.time()
    for n in range(min(int(rate * duration), len(bodies))):
        scheduled = start + n / rate
        if (pause := scheduled - time.perf_counter()) > 0:
            time.sleep(pause)
        work.put((scheduled, wall0 + n / rate, bodies[n]))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    for connection in connections:
        connection.close()
    return sorted(records)


def read_gc(folder):
    pauses = []  # (wall start, wall ms, generation, pid, CPU ms)
    for path in Path(folder).glob("gc-*.log"):
        pid = int(path.stem.split("-")[1])
        for line in path.read_text().splitlines():
            start, ms, generation, cpu_ms = line.split()
            pauses.append((float(start), float(ms), int(generation), pid, float(cpu_ms)))
    return sorted(pauses)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def report(records, pauses, slow_ms, pg_before, pg_after, shares):
    latencies = [latency * 1000 for _, latency, status in records if status == 200]
    errors = [status for _, _, status in records if status != 200]
    p50, p90, p99 = (percentile(latencies, p) for p in (50, 90, 99))
    print(f"  pushes {len(latencies)} (errors {len(errors)}): p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  ", end="")
    print(f"max {max(latencies):.1f} ms; mean {statistics.mean(latencies):.1f}")
    print(f"  cpu % of one core: {shares}")
    ckpt = {k: pg_after[k] - pg_before[k] for k in pg_before}
    print(f"  checkpoints timed {ckpt['timed']} requested {ckpt['requested']}, buffers {ckpt['buffers']}, ", end="")
    print(f"WAL {ckpt['wal_bytes'] / 1e6:.0f} MB")
    by_gen = {}
    for _, ms, generation, _, cpu_ms in pauses:
        by_gen.setdefault(generation, []).append((ms, cpu_ms))
    for generation, values in sorted(by_gen.items()):
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        print(f"  gc gen{generation} ≥2 ms: {len(values)} pauses, wall median {statistics.median(walls):.1f} ", end="")
        print(f"max {max(walls):.1f} total {sum(walls):.0f} ms; CPU median {statistics.median(cpus):.1f} ", end="")
        print(f"max {max(cpus):.1f} total {sum(cpus):.0f} ms")
    slow = [(wall, latency * 1000) for wall, latency, status in records if status == 200 and latency * 1000 > slow_ms]
    print(f"  pushes over {slow_ms} ms: {len(slow)}")
    for wall, ms in slow[:20]:
        during = [f"gen{g} {p:.0f}ms" for start, p, g, _, _ in pauses if wall - 0.05 <= start <= wall + ms / 1000]
        print(f"    t+{wall - records[0][0]:6.2f}s {ms:6.1f} ms  gc in flight: {', '.join(during) or '-'}")
    return {"p50": p50, "p90": p90, "p99": p99, "max": max(latencies), "n": len(latencies), "errors": len(errors)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--tree", default=str(ROOT))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--slow", type=float, default=100.0)
    parser.add_argument("--env", action="append", default=[], help="K=V for the server processes")
    parser.add_argument("--log", default=str(ROOT / "var" / "bench" / "tail-server.log"))
    args = parser.parse_args()
    source = orjson.loads(Path(args.source_json).read_bytes())
    sys.path.insert(0, str(Path(__file__).parent))
    import ingest

    args.log = str(Path(args.log).resolve())
    ingest.setup_django(ROOT)  # the simulator's generator makes the bodies

    folder = tempfile.mkdtemp(prefix="fluxo-tail-")
    Path(folder, "sitecustomize.py").write_text(SITECUSTOMIZE.format(folder=folder))
    extra = dict(item.split("=", 1) for item in args.env)
    os.environ.update(extra, PYTHONPATH=os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")]))
    count = int(args.rate * args.duration) + 40
    bodies = payloads.legacy_bodies(count, seed=int(time.time()))
    target_headers = {"Authorization": f"Bearer {source['api_token']}"}
    load_before = os.getloadavg()[0]
    with ingest.Server(args.workers, "http://127.0.0.1:9", args.log, args.tree, "reuseport") as server:
        target = load.Target(HOST, server.port, source["endpoints"]["legacy_push"], target_headers, 500)
        if not load.wait_until_serving(HOST, server.port, source["endpoints"]["legacy_push"]):
            raise SystemExit("the server did not start; see " + args.log)
        load.saturate(target, bodies[:40], 4, 30)  # warm up every process
        meter = cpu.Meter(server.daphne_pids(), cpu.postmaster_pid(), args.dsn.rsplit("/", 1)[1])
        for path in Path(folder).glob("gc-*.log"):
            path.write_text("")  # the warm-up's collections are not the run's
        pg_before, sample = checkpoints(args.dsn), meter.sample()
        started = time.perf_counter()
        records = open_loop(target, bodies[40:], args.rate, args.duration)
        shares = cpu.Meter.share(sample, meter.sample(), time.perf_counter() - started)
        pg_after = checkpoints(args.dsn)
    print(f"== {args.tree} env {extra or '-'}: {args.workers} workers, {args.rate}/s for {args.duration} s; ", end="")
    print(f"load average {load_before:.2f} → {os.getloadavg()[0]:.2f}")
    pauses = read_gc(folder)
    shutil.rmtree(folder, ignore_errors=True)
    return report(records, pauses, args.slow, pg_before, pg_after, shares)


if __name__ == "__main__":
    main()
