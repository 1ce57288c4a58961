"""bench/ingest: both receivers on PostgreSQL under concurrent clients, against the raw ceiling.

Run by bench/run.sh (``make bench``), which creates the database, migrates, adds the source and
exports DATABASE_URL, REDIS_URL and SECRET_KEY. For each configuration (number of daphne processes,
empty or pre-filled event table) this script starts ``python -m fluxo.serve``, measures

  legacy push, 500-activity batches: closed loop (maximum events/s) and open loop (10 pushes/s)
  Adobe I/O, signed 20-event batches: closed loop (maximum requests/s) and open loop (100 requests/s)

stops the server, then measures the ceiling (bench/ceiling.py) with as many writers as the server
had processes, on the rows of the same legacy bodies, and prints everything with the ratio.
"""

import argparse
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import ceiling
import cpu
import load
import orjson
import payloads
import stages

ROOT = Path(__file__).resolve().parent.parent

HOST = "127.0.0.1"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True, help="what `add_source --json` printed")
    parser.add_argument("--dsn", required=True, help="psycopg DSN of the bench database")
    parser.add_argument("--workers", default="1,2", help="daphne process counts to measure, e.g. 1,2")
    parser.add_argument("--prefill", type=int, default=1_500_000, help="rows for the pre-filled run (0: skip)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each closed-loop phase")
    parser.add_argument("--steady-duration", type=float, default=15.0, help="seconds of each open-loop phase")
    parser.add_argument("--legacy-concurrency", type=int, default=8)
    parser.add_argument("--io-concurrency", type=int, default=16)
    parser.add_argument("--legacy-rate", type=float, default=10.0, help="pushes/s of the open loop")
    parser.add_argument("--io-rate", type=float, default=100.0, help="requests/s of the open loop")
    parser.add_argument("--legacy-pool", type=int, default=1200, help="500-activity bodies for the closed loop")
    parser.add_argument("--io-pool", type=int, default=6000, help="signed bodies for the closed loop")
    parser.add_argument("--balance", choices=("reuseport", "shared"), default="reuseport", help="fluxo.serve's")
    parser.add_argument(
        "--server",
        choices=("daphne", "uvicorn"),
        default="daphne",
        help="daphne: fluxo.serve, as deployed; uvicorn: the same application under uvicorn (httptools, uvloop), "
        "to measure what the HTTP server costs (not a deployment: no body cap before reading)",
    )
    parser.add_argument("--tree", default=str(ROOT), help="the Fluxo tree to serve (e.g. a copy with a change)")
    parser.add_argument("--results", default=str(ROOT / "var" / "bench" / "results.json"))
    parser.add_argument("--log", default=str(ROOT / "var" / "bench" / "server.log"))
    args = parser.parse_args()
    for name in ("source_json", "results", "log", "tree"):
        setattr(args, name, str(Path(getattr(args, name)).resolve()))  # this script changes directory
    return args


# --- The Adobe key host stand-in -------------------------------------------------------------------------


def start_key_server(pems):
    """Serve the two public keys at Adobe's paths; 404 for anything else. Returns its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            pem = pems.get(self.path)
            self.send_response(200 if pem else 404)
            self.end_headers()
            if pem:
                self.wfile.write(pem)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://{HOST}:{server.server_address[1]}"


# --- The server under test ---------------------------------------------------------------------------------


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """``python -m fluxo.serve`` with N daphne processes, as the README recommends for production.

    Or, with ``kind="uvicorn"``, the same ASGI application in N uvicorn processes (its own supervisor,
    one shared socket): the HTTP server's share of the CPU per request, measured by swapping it alone.
    """

    def __init__(self, workers, key_url, log_path, tree, balance, kind="daphne"):
        self.workers, self.port, self.tree = workers, free_port(), tree
        self.command = [sys.executable, "-m", "fluxo.serve", "--workers", str(workers), "--bind", f"{HOST}:{self.port}"]
        if balance != "reuseport":
            self.command += ["--balance", balance]
        if kind == "uvicorn":
            self.command = [sys.executable, "-m", "uvicorn", "fluxo.asgi:application", "--host", HOST]
            self.command += ["--port", str(self.port), "--workers", str(workers), "--http", "httptools"]
            self.command += ["--loop", "uvloop", "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        self.env = {**os.environ, "ADOBE_IO_KEY_BASE_URL": key_url}
        self.log_path = Path(log_path)

    def __enter__(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            self.command, cwd=self.tree, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        return self

    def daphne_pids(self):
        """The serving processes: the children (fluxo.serve, uvicorn's supervisor), or the one process."""
        deadline = time.monotonic() + 30
        while len(pids := cpu.children_of(self.proc.pid)) < self.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return pids or [self.proc.pid]

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --- Phases ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, source, bodies, key_url):
        self.args, self.source, self.bodies, self.key_url = args, source, bodies, key_url
        self.postmaster = cpu.postmaster_pid()
        self.database = args.dsn.rsplit("/", 1)[1].split("?")[0]
        self.token = source["api_token"]

    def targets(self, port):
        legacy = load.Target(
            HOST, port, self.source["endpoints"]["legacy_push"], {"Authorization": f"Bearer {self.token}"}, 500
        )
        io = load.Target(HOST, port, self.source["endpoints"]["adobe_io"], {"Content-Type": "application/json"}, 20)
        return legacy, io

    def configuration(self, workers, label):
        """Every phase against ``workers`` daphne processes, then the ceiling with as many writers."""
        print(f"\n== {label}: {workers} {self.args.server} process(es)", flush=True)
        report = {"label": label, "workers": workers, "server": self.args.server, "phases": {}}
        a = self.args
        with Server(workers, self.key_url, a.log, a.tree, a.balance, a.server) as server:
            report["server_command"] = " ".join(["python", *server.command[1:]])
            if not load.wait_until_serving(HOST, server.port, self.source["endpoints"]["legacy_push"]):
                raise SystemExit("the server did not start; see " + str(self.args.log))
            meter = cpu.Meter(server.daphne_pids(), self.postmaster, self.database)
            report["idle_cpu"] = self.idle(meter)
            legacy, io = self.targets(server.port)
            self.warm_up(legacy, io)
            for name, run in self.phases(legacy, io):
                report["phases"][name] = self.measure(meter, name, run)
            # The web processes' peak memory over every phase (issue 15: under 200 MB under load).
            report["peak_rss_mib"] = [cpu.peak_rss_mib(pid) for pid in server.daphne_pids()]
            print(f"  peak RSS of each server process: {report['peak_rss_mib']} MiB", flush=True)
        report["ceiling"] = self.ceiling(workers)
        return report

    def phases(self, legacy, io):
        a, b = self.args, self.bodies
        return [
            ("legacy_max", lambda: load.saturate(legacy, b["legacy"], a.legacy_concurrency, a.duration)),
            ("legacy_steady", lambda: load.steady(legacy, b["legacy_steady"], a.legacy_rate, a.steady_duration)),
            ("io_max", lambda: load.saturate(io, b["io"], a.io_concurrency, a.duration)),
            ("io_steady", lambda: load.steady(io, b["io_steady"], a.io_rate, a.steady_duration)),
        ]

    def idle(self, meter):
        """CPU the machine spends with the server idle: other work that would skew the numbers."""
        before = meter.sample()
        time.sleep(1.0)
        return cpu.Meter.share(before, meter.sample(), 1.0)

    def warm_up(self, legacy, io):
        """A few requests on many connections, so every process has imported, connected and fetched keys."""
        load.saturate(legacy, self.bodies["legacy_warm"], 8, 30)
        load.saturate(io, self.bodies["io_warm"], 16, 30)

    def measure(self, meter, name, run):
        before = meter.sample()
        result = run()
        share = cpu.Meter.share(before, meter.sample(), result.elapsed)
        summary = summarise(result, share)
        print_phase(name, summary)
        return summary

    def ceiling(self, writers):
        rows, elapsed, exhausted = ceiling.measure(
            self.args.dsn, self.bodies["ceiling_rows"], writers, self.args.duration
        )
        summary = {"writers": writers, "events_per_s": round(rows / elapsed), "rows": rows, "exhausted": exhausted}
        print(f"  ceiling     {writers} writer(s): {summary['events_per_s']:>8,} events/s (COPY + ON CONFLICT)")
        return summary


def summarise(result, share):
    return {
        "events_per_s": round(result.rate("events")),
        "requests_per_s": round(result.rate("requests"), 1),
        "requests": result.requests,
        "p50_ms": round(result.percentile(50) * 1000, 1),
        "p99_ms": round(result.percentile(99) * 1000, 1),
        "max_ms": round(max(result.latencies, default=0) * 1000, 1),
        "errors": {str(k): v for k, v in result.errors.items()},
        "exhausted": result.exhausted,
        "cpu_percent_of_one_core": share,
    }


def print_phase(name, s):
    errors = f" errors={s['errors']}" if s["errors"] else ""
    warn = " (body pool ran out: raise --*-pool)" if s["exhausted"] and name.endswith("max") else ""
    c = s["cpu_percent_of_one_core"]
    print(
        f"  {name:<14}{s['events_per_s']:>8,} events/s {s['requests_per_s']:>7} req/s  "
        f"p50 {s['p50_ms']:>6} ms  p99 {s['p99_ms']:>6} ms  "
        f"cpu% server {c['server']} {c['each_server']} pg {c['postgres']} (bench db {c['pg_db']}) "
        f"client {c['client']} other {c['other']}"
        f"{errors}{warn}",
        flush=True,
    )


# --- Setup and the report ------------------------------------------------------------------------------------


def make_bodies(args, signer):
    started = time.perf_counter()
    steady_legacy = int(args.legacy_rate * args.steady_duration) + 1
    steady_io = int(args.io_rate * args.steady_duration) + 1
    legacy = payloads.legacy_bodies(args.legacy_pool + steady_legacy + 32, seed=1)
    io = payloads.io_requests(signer, args.io_pool + steady_io + 64, seed=2)
    bodies = {
        "legacy": legacy[: args.legacy_pool],
        "legacy_steady": legacy[args.legacy_pool : args.legacy_pool + steady_legacy],
        "legacy_warm": legacy[args.legacy_pool + steady_legacy :],
        "io": io[: args.io_pool],
        "io_steady": io[args.io_pool : args.io_pool + steady_io],
        "io_warm": io[args.io_pool + steady_io :],
    }
    print(
        f"bodies: {len(legacy)} legacy of 500 activities ({len(legacy[0]) // 1024} KiB each), "
        f"{len(io)} signed I/O of 20 events ({len(io[0][0]) // 1024} KiB each), "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return bodies


def setup_django(tree):
    """Django of the tree under test, in this process: streams.wire makes the ceiling's rows."""
    # From the tree itself: Celery's app (imported with fluxo) puts the working directory first on sys.path.
    os.chdir(tree)
    sys.path.insert(0, str(tree))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()


def print_summary(reports):
    """One Markdown table row per configuration (pasted as is into BENCHMARKS.md)."""
    print("\n| configuration | legacy max ev/s | ceiling ev/s | ratio | legacy 10x500/s p50 / p99 ms |", end="")
    print(" I/O max req/s | I/O 100/s p50 / p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for report in reports:
        p, ceil = report["phases"], report["ceiling"]["events_per_s"]
        report["legacy_to_ceiling"] = round(p["legacy_max"]["events_per_s"] / ceil, 2) if ceil else 0.0
        errors = {name: phase["errors"] for name, phase in p.items() if phase["errors"]}
        steady, io_steady = p["legacy_steady"], p["io_steady"]
        print(
            f"| {report['label']} | {p['legacy_max']['events_per_s']:,} | {ceil:,} | {report['legacy_to_ceiling']:.2f} "
            f"| {steady['p50_ms']} / {steady['p99_ms']} | {p['io_max']['requests_per_s']} "
            f"| {io_steady['p50_ms']} / {io_steady['p99_ms']} | {errors or '-'} |"
        )


def main():
    args = parse_args()
    setup_django(args.tree)
    source = orjson.loads(Path(args.source_json).read_bytes())
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; tree {args.tree}", flush=True)
    signer = payloads.Signer()
    key_url = start_key_server(signer.public_pems())
    stage_times = stages.report(source, key_url, signer)
    bodies = make_bodies(args, signer)
    bodies["ceiling_rows"] = ceiling.rows_of(bodies["legacy"], source["id"])
    bench = Bench(args, source, bodies, key_url)
    ceiling.create_copy(args.dsn)
    reports = []
    for workers in [int(n) for n in args.workers.split(",")]:
        ceiling.reset(args.dsn)
        reports.append(bench.configuration(workers, f"empty table, {workers} proc"))
    if args.prefill:
        workers = max(int(n) for n in args.workers.split(","))
        ceiling.reset(args.dsn)
        started = time.perf_counter()
        ceiling.prefill(args.dsn, args.prefill, source["id"])
        count, size = ceiling.sizes(args.dsn)
        print(f"\nprefilled streams_event and its copy: {count:,} rows, {size} ({time.perf_counter() - started:.0f} s)")
        reports.append(bench.configuration(workers, f"{count / 1e6:.1f}M rows, {workers} proc"))
    print_summary(reports)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    document = {"stages": stage_times, "configurations": reports}
    Path(args.results).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print(f"\nresults: {args.results}")


if __name__ == "__main__":
    main()
