"""bench/scaleout: Fluxo as several hosts on this machine: ingest throughput through nginx with one and
with two web hosts, then the long scale-out drill.

    .venv/bin/python bench/scaleout.py [--runs 3] [--duration 8] [--senders 8]
                                       [--drill-seconds 180] [--drill-rate 200] [--skip-throughput] [--skip-drill]

The hosts are those of tests/cluster.py (the short drill, tests/test_scale_out.py): web hosts
(``python -m fluxo.serve --workers 1``) on 127.0.0.2 and 127.0.0.3, nginx on 127.0.0.4 with
deploy/nginx/fluxo-proxy.conf, workers and beats as processes of their own; PostgreSQL and Redis
(REDIS_URL, default redis://127.0.0.1:6379/12) on 127.0.0.1. Its own database (``fluxo_scaleout_PID``,
dropped at the end).

1. throughput: 8 senders back to back (closed loop) post legacy pushes of 500 activities for
   ``--duration`` seconds, (a) straight to one web host, (b) through nginx to one web host, (c) through
   nginx to two; the configurations alternate, ``--runs`` times each, the table empty before each run;
   the median is reported, with where the machine's CPU went.
2. drill: the sandbox sends all three streams through nginx at ``--drill-rate`` events/s for
   ``--drill-seconds``; a web host is killed (SIGKILL) at 1/6 of it and restarted at 1/3, a worker is
   killed at 1/2 whatever it is doing, and with the single-beat lock (fluxo/beat.py) a second beat is
   started and the first killed at 2/3. Then: acknowledged ids against the stored ones, fired alerts
   against the webhook's deliveries (waiting for the sweeper's 3 minutes when the worker died
   mid-delivery), frames per web host's sockets, and which beat ticked.

Prints a Markdown summary and writes var/bench-scaleout/results.json.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # bench/ stays first (load, payloads, cpu); then the project and its tests

import cpu  # noqa: E402
import load  # noqa: E402
import payloads  # noqa: E402
import psycopg  # noqa: E402

from tests import cluster  # noqa: E402
from tests.alerts_receivers import Receiver  # noqa: E402

VAR = ROOT / "var" / "bench-scaleout"
WEB1, WEB2 = cluster.WEB_HOSTS
BODY_EVENTS = 500
MAX_PUSHES_PER_SECOND = 60  # bodies made per run: more than two cores here can take (≈ 45/s)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--runs", type=int, default=3, help="runs of each throughput configuration")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each throughput run")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--drill-seconds", type=float, default=180.0)
    parser.add_argument("--drill-rate", type=float, default=200.0, help="events/s the sandbox sends in the drill")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-drill", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.runs <= 9 or not 1 <= args.duration <= 60 or not 10 <= args.drill_seconds <= 900:
        parser.error("keep it bounded: --runs 1..9, --duration 1..60 s, --drill-seconds 10..900")
    return args


# --- Throughput ------------------------------------------------------------------------------------------


def make_bodies(count, seed):
    # payloads makes its bodies for its own Munchkin ID; these are the drill source's.
    payloads.MUNCHKIN_ID = cluster.MUNCHKIN_ID
    return payloads.legacy_bodies(count, BODY_EVENTS, seed=seed)


def empty_tables(system):
    with psycopg.connect(system.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE streams_event, streams_batch CASCADE")
        conn.execute("CHECKPOINT")  # each run starts without the last one's dirty pages to write


def wal_position(system):
    with psycopg.connect(system.dsn) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]


def disk_per_event(system, wal_before):
    """Bytes per stored event: the table with its indexes and TOAST, and the WAL written meanwhile
    (the whole server's WAL: other sessions' databases on a shared server add to it)."""
    with psycopg.connect(system.dsn) as conn:
        rows, table, wal = conn.execute(
            "SELECT count(*), pg_total_relation_size('streams_event') + pg_total_relation_size('streams_batch'),"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), %s) FROM streams_event",
            (wal_before,),
        ).fetchone()
    return {"stored": rows, "bytes_per_event": round(table / rows) if rows else None,
            "wal_bytes_per_event": round(float(wal) / rows) if rows else None}  # fmt: skip


def server_pids(system):
    pids = []
    for process in system.webs.values():
        pids += cpu.children_of(process.popen.pid)  # the daphne processes under fluxo.serve
    return pids


def nginx_pids(system):
    return cpu.children_of(system.proxy_process.pid) if system.nginx else []


def one_run(system, host, port, args, seed):
    source = system.source
    headers = {"Authorization": f"Bearer {source['api_token']}", "Content-Type": "application/json"}
    target = load.Target(host, port, source["endpoints"]["legacy_push"], headers, BODY_EVENTS)
    load.saturate(target, make_bodies(16, seed + 1_000_000), 8, 30)  # warm: imports, pools, nginx's keep-alive
    bodies = make_bodies(int(args.duration * MAX_PUSHES_PER_SECOND), seed)
    empty_tables(system)
    meter = cpu.Meter(server_pids(system) + nginx_pids(system), cpu.postmaster_pid(), system.db_name)
    webs, proxies = len(server_pids(system)), len(nginx_pids(system))
    wal_before = wal_position(system)
    before = meter.sample()
    result = load.saturate(target, bodies, args.senders, args.duration)
    share = cpu.Meter.share(before, meter.sample(), result.elapsed)
    each = share["each_server"]
    return {
        **disk_per_event(system, wal_before),
        "events_per_s": round(result.rate("events")),
        "p50_ms": round(result.percentile(50) * 1000, 1),
        "p99_ms": round(result.percentile(99) * 1000, 1),
        "errors": result.errors,
        "exhausted": result.exhausted,
        "cpu_web": each[:webs],
        "cpu_nginx": sum(each[webs : webs + proxies]),
        "cpu_pg": share["pg_db"],
        "cpu_client": share["client"],
        "cpu_other": share["other"],
    }


CONFIGURATIONS = (
    ("1 web host, no proxy", None),
    ("1 web host behind nginx", (WEB1,)),
    ("2 web hosts behind nginx", (WEB1, WEB2)),
)


def throughput(system, args):
    runs = {label: [] for label, _hosts in CONFIGURATIONS}
    seed = 1
    for round_number in range(args.runs):
        for label, hosts in CONFIGURATIONS:
            seed += 1
            if hosts is None:
                result = one_run(system, WEB1, system.web_port, args, seed)
            else:
                system.start_proxy(hosts)
                try:
                    result = one_run(system, cluster.PROXY_HOST, system.proxy_port, args, seed)
                finally:
                    system.stop_proxy()
                    system.proxy_port = cluster.free_port(cluster.PROXY_HOST)  # a fresh nginx each run
            runs[label].append(result)
            print(f"  run {round_number + 1} {label:<26} {result['events_per_s']:>7,} events/s  {result}", flush=True)
    empty_tables(system)
    return {label: {"runs": results, "median": median_of(results)} for label, results in runs.items()}


def median_of(results):
    keys = ("events_per_s", "p50_ms", "p99_ms", "cpu_nginx", "cpu_pg", "cpu_client", "cpu_other", "bytes_per_event",
            "wal_bytes_per_event")  # fmt: skip
    middle = {key: statistics.median(r[key] for r in results) for key in keys}
    middle["cpu_web"] = statistics.median(sum(r["cpu_web"]) for r in results)
    return middle


# --- The long drill ---------------------------------------------------------------------------------------


def drill(system, hook, args):
    length = args.drill_seconds
    web1, web2 = (WEB1, system.web_port), (WEB2, system.web_port)
    base = system.start_proxy(cluster.WEB_HOSTS)
    proxy = (cluster.PROXY_HOST, system.proxy_port)
    for name in ("worker-1", "worker-2"):
        system.start_worker(name)
    system.start_beat("beat-1")
    browsers = cluster.Browsers(system.session, [web1, web2, proxy], VAR).start()
    spec = cluster.sandbox_spec(base, system.var / "source.json", system.key_port, args.drill_rate, length)
    (VAR / "spec.json").write_text(json.dumps(spec))
    out = VAR / "sandbox.json"
    sandbox = cluster.Process("sandbox", cluster.sandbox_command(VAR / "spec.json", out), system.env(VAR), VAR)
    events = {}
    started = time.monotonic()

    def at(fraction, what):
        time.sleep(max(0.0, started + fraction * length - time.monotonic()))
        events[what] = round(time.monotonic() - started, 1)

    sandbox.start()
    at(1 / 6, "web host killed")
    system.webs[WEB1].kill()
    at(1 / 3, "web host restarted")
    system.start_web(WEB1)
    restarted = time.time()
    at(1 / 2, "worker killed")
    claimed_at_kill = system.claimed_deliveries()
    system.workers[0].kill()
    beat = None
    if cluster.beat_lock_available():
        second = system.start_beat("beat-2")
        at(2 / 3, "first beat killed")
        system.beats[0].kill()
        beat = second
    sandbox.popen.wait(timeout=length + 600)
    report = json.loads(out.read_text())
    summary, acknowledged = report["summary"], report["acknowledged"]
    stored = system.stored_keys()
    missing, doubled = cluster.stored_exactly_once(acknowledged, stored)
    delivered_wait = time.monotonic()
    undelivered = wait_for_deliveries(system, hook, timeout=300)
    result = {
        "events": events,
        "sandbox_exit": sandbox.popen.returncode,
        "deliveries": summary["deliveries"],
        "statuses": {f"{s['protocol']} {s['stream']}": s["statuses"] for s in summary["streams"]},
        "stored": len(stored),
        "acknowledged_missing": len(missing),
        "stored_twice": len(doubled),
        "alerts_fired": len(system.fired_alerts()),
        "alerts_undelivered": len(undelivered),
        "seconds_until_all_delivered": round(time.monotonic() - delivered_wait, 1),
        "deliveries_claimed_when_the_worker_died": claimed_at_kill,
        "frames": {f"{h}:{p}": browsers.frames((h, p)) for h, p in (web1, web2, proxy)},
        "frames_web1_after_restart": browsers.frames(web1, after=restarted),
        "beat_takeover": None if beat is None else "Sending due task" in beat.output(),
        "requests_nginx_moved_to_the_other_host": failovers(system),
    }
    browsers.stop()
    sandbox.stop()
    return result


def failovers(system):
    """Requests nginx could not hand to (or finish with) the killed host, and sent to the other one."""
    log = (system.var / "proxy" / "error.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if "upstream" in line and "[error]" in line)


def wait_for_deliveries(system, hook, timeout):
    deadline = time.monotonic() + timeout
    while True:
        fired = system.fired_alerts()
        undelivered = fired - {request.json()["alert_id"] for request in hook.requests}
        if not undelivered or time.monotonic() > deadline:
            return undelivered
        time.sleep(1.0)


# --- Report ------------------------------------------------------------------------------------------------


def print_report(results):
    if "throughput" in results:
        print("\n| configuration | events/s (median) | p50 / p99 ms | CPU % of a core: web, nginx, pg, client, other |")
        print("|---|---|---|---|")
        for label, value in results["throughput"].items():
            m = value["median"]
            runs = ", ".join(f"{r['events_per_s']:,}" for r in value["runs"])
            print(
                f"| {label} | **{m['events_per_s']:,.0f}** ({runs}) | {m['p50_ms']} / {m['p99_ms']} |"
                f" {m['cpu_web']:.0f}, {m['cpu_nginx']:.0f}, {m['cpu_pg']:.0f}, {m['cpu_client']:.0f},"
                f" {m['cpu_other']:.0f} |"
            )
    if "drill" in results:
        print("\n" + json.dumps(results["drill"], indent=2))


def main():
    args = parse_args()
    VAR.mkdir(parents=True, exist_ok=True)
    hook = Receiver()
    system = cluster.Cluster(VAR / "hosts", args.pg, args.redis, cluster.free_port(), f"{hook.url}/hook")
    results = {"args": vars(args), "load_before": os.getloadavg()}
    try:
        system.create()
        for host in cluster.WEB_HOSTS:
            system.start_web(host)
        if not args.skip_throughput:
            results["throughput"] = throughput(system, args)
        if not args.skip_drill:
            results["drill"] = drill(system, hook, args)
    finally:
        system.stop_all()
        system.drop()
        hook.close()
    results["load_after"] = os.getloadavg()
    (VAR / "results.json").write_text(json.dumps(results, indent=2))
    print_report(results)


if __name__ == "__main__":
    main()
