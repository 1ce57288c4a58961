"""bench/alerts: from a push's acknowledgement to the notifier being called, with 100 rules under load.

    .venv/bin/python bench/alerts.py [--rules 100] [--rate 5000] [--duration 90] [--workers 2]
                                     [--concurrency 2] [--probes-per-second 2]

Creates its own PostgreSQL database (``fluxo_bench_alerts``, dropped at the end unless --keep), two
sources ("Bench", loaded; "Quiet", one push then silence), ``--rules`` enabled rules, and starts what
production runs: the web processes (``python -m fluxo.serve``), a Celery worker and Celery beat, on
PostgreSQL and Redis (REDIS_URL, default redis://127.0.0.1:6379/13). A local HTTP server stands in
for the notifier: a webhook destination that records when each message arrives.

- Load: legacy pushes of 500 activities at ``--rate`` events/s (open loop), for ``--duration`` s.
- Rules: one probe rule (a Delete Lead whose lead id starts with "probe-", grouped per lead, no
  grouping wait, to the webhook), one absence rule on "Quiet" (1 minute, to the webhook), and the
  rest a mix of match rules on types and attributes, watch lists, thresholds and absences that
  evaluate every event without flooding the notifier.
- Latency: ``--probes-per-second`` of the pushes carry one probe activity; for each, the time from
  that push's acknowledgement (its 200 read by the sender) to the webhook POST naming its lead.
- Absence: when the "Quiet" alert arrives, measured from the moment it was due (its last event's
  acknowledgement plus the window).

Prints a Markdown summary and writes var/bench-alerts/results.json.
"""

import argparse
import asyncio
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import live  # bench/live.py: database set-up, the web processes, the open-loop sender
import orjson

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench-alerts"
DB = "fluxo_bench_alerts"
ABSENCE_WINDOW = 60.0
PROBE = re.compile(rb"probe-\d+")

RULES_SCRIPT = """
import json
from alerts.models import Destination, Rule, WatchList
from streams.models import Source
spec = json.loads('''{spec}''')
hook = Destination.objects.create(name="notifier", kind="webhook", url=spec["hook"], rate_limit_per_minute=100000)
bench, quiet = Source.objects.get(name="Bench"), Source.objects.get(name="Quiet")
vip = WatchList.objects.create(name="bench VIPs", entries="\\n".join(str(900000 + i) for i in range(1000)))
lists = WatchList.objects.create(name="bench lists", entries="Board members\\nVIP prospects")
def rule(**fields):
    destinations = fields.pop("destinations", [])
    sources = fields.pop("sources", [])
    made = Rule.objects.create(**fields)
    made.destinations.set(destinations)
    made.sources.set(sources)
rule(name="probe", kind="match", group_by="lead", group_wait_seconds=0, destinations=[hook],
     conditions=[{{"path": "activity_type_id", "op": "eq", "value": 37}},
                 {{"path": "lead_id", "op": "matches", "value": "^probe-"}}])
rule(name="quiet source", kind="absence", group_by="source", window_minutes=1, group_wait_seconds=0,
     destinations=[hook], sources=[quiet])
kinds = ["match", "match", "match", "match", "watch", "threshold", "threshold", "absence", "match", "match"]
for i in range(spec["rules"] - 2):
    kind = kinds[i % len(kinds)]
    type_id = [1, 2, 6, 7, 10, 11, 12, 13, 22, 24][i % 10]
    if kind == "match":
        conditions = [{{"path": "activity_type_id", "op": "eq", "value": type_id}},
                      {{"path": 'attributes["Campaign Run ID"]', "op": "gt", "value": 10**9 + i}}]
        if i % 3 == 0:
            conditions = [{{"path": "activity_type_id", "op": "eq", "value": 24}},
                          {{"path": "primary_attribute", "op": "in_watch_list", "value": "bench lists"}}]
        rule(name=f"match {{i}}", kind="match", conditions=conditions, group_wait_seconds=30)
    elif kind == "watch":
        rule(name=f"watch {{i}}", kind="watch", watch_list=vip, group_wait_seconds=30)
    elif kind == "threshold":
        rule(name=f"threshold {{i}}", kind="threshold", group_by="source", threshold=10**7, window_minutes=5,
             conditions=[{{"path": "activity_type_id", "op": "eq", "value": type_id}}])
    else:
        rule(name=f"absence {{i}}", kind="absence", group_by="source", window_minutes=60, sources=[bench],
             conditions=[{{"path": "activity_type_id", "op": "eq", "value": type_id}}])
print(Rule.objects.filter(enabled=True).count())
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--workers", type=int, default=2, help="web processes")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--rate", type=float, default=5000, help="events/s of ingest")
    parser.add_argument("--batch", type=int, default=500, help="activities per push")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of ingest (over 75 for the absence)")
    parser.add_argument("--probes-per-second", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


class Notifier:
    """The webhook receiver: records (arrival time, body) of every POST."""

    def __init__(self):
        self.arrivals = []
        notifier = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                notifier.arrivals.append((time.time(), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((live.HOST, 0), Handler)
        self.url = f"http://{live.HOST}:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


def prepare(args, env, notifier):
    live.VAR = VAR
    source, _session = live.prepare(args, env)
    quiet = json.loads(live.manage(env, "add_source", "Quiet", "--munchkin-id", "999-QUI-999", "--json"))
    spec = json.dumps({"hook": notifier.url, "rules": args.rules})
    count = live.manage(env, "shell", "-c", RULES_SCRIPT.format(spec=spec)).strip().splitlines()[-1]
    return source, quiet, int(count)


def start_celery(env, *arguments):
    log = open(VAR / f"celery-{arguments[0]}.log", "w")  # noqa: SIM115 (closed by stop)
    command = [sys.executable, "-m", "celery", "-A", "fluxo", *arguments, "--loglevel", "INFO"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log


def with_probes(made, every):
    """Replace one activity in every ``every``-th push by a probe; {message id: probe lead}."""
    probes = {}
    for index in range(0, len(made), every):
        message_id, body = made[index]
        document = orjson.loads(body)
        lead = f"probe-{index}"
        document["activities"][0] = {
            "marketoGUID": str(uuid.uuid4()),
            "leadId": lead,
            "activityDate": "2026-12-01T10:00:00Z",
            "activityTypeId": 37,
            "primaryAttributeValue": "probe",
            "attributes": [],
        }
        made[index] = (message_id, orjson.dumps(document))
        probes[message_id] = lead
    return probes


async def load(args, port, source, quiet):
    per_second = args.rate / args.batch
    made = live.bodies(int(per_second * args.duration), args.batch)
    probes = with_probes(made, max(1, round(per_second / args.probes_per_second)))
    quiet_sender = live.Sender(port, quiet["endpoints"]["legacy_push"], quiet["api_token"], threads=1)
    quiet_body = orjson.dumps({"munchkinId": "999-QUI-999", "activities": [live.TEMPLATE[0]]})
    quiet_sender.post("quiet", quiet_body)
    sender = live.Sender(port, source["endpoints"]["legacy_push"], source["api_token"])
    print(f"load: {len(made)} pushes at {per_second:g}/s, {len(probes)} probes", file=sys.stderr)
    await live.send_at_rate(sender, made, per_second)
    return sender, probes, quiet_sender.acks.get("quiet", (None,))[0]


def results(args, notifier, sender, probes, quiet_acked, rules):
    arrived = {}
    quiet_at = None
    for at, body in notifier.arrivals:
        for lead in PROBE.findall(body):
            arrived.setdefault(lead.decode(), at)
        if b"quiet source" in body and b"firing" in body and quiet_at is None:
            quiet_at = at
    latencies = [
        arrived[lead] - sender.acks[message_id][0]
        for message_id, lead in probes.items()
        if message_id in sender.acks and lead in arrived
    ]
    return {
        "rules": rules,
        "events_per_second_offered": args.rate,
        "events_per_second_acknowledged": round(len(sender.acks) * args.batch / args.duration),
        "pushes_failed": sender.failures,
        "probes_sent": sum(1 for m in probes if m in sender.acks),
        "probes_notified": len(latencies),
        "ack_to_notifier": live.percentiles(latencies),
        "absence_late_s": None
        if quiet_at is None or quiet_acked is None
        else round(quiet_at - (quiet_acked + ABSENCE_WINDOW), 1),
        "messages": len(notifier.arrivals),
    }


def report(r):
    p = r["ack_to_notifier"]
    return "\n".join(
        [
            "## bench/alerts",
            "",
            f"{r['rules']} enabled rules; legacy pushes of 500 at {r['events_per_second_offered']:g} events/s offered "
            f"({r['events_per_second_acknowledged']} acknowledged/s, {r['pushes_failed']} failed).",
            "",
            "| measure | n | p50 ms | p95 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| ack → notifier | {p.get('n')} | {p.get('p50_ms')} | {p.get('p95_ms')} | {p.get('p99_ms')} | "
            f"{p.get('max_ms')} |",
            "",
            f"Probes notified: {r['probes_notified']} of {r['probes_sent']}. Absence (1-minute window) notified "
            f"{r['absence_late_s']} s after it was due. Webhook messages in all: {r['messages']}.",
        ]
    )


def main():
    args = parse_args()
    VAR.mkdir(parents=True, exist_ok=True)
    live.DB = DB
    env = {**live.environment(args), "FLUXO_VAR_DIR": str(VAR), "FLUXO_ALLOW_PRIVATE_URLS": "1"}
    notifier = Notifier()
    source, quiet, rules = prepare(args, env, notifier)
    try:
        port = live.free_port()
        server, server_log = live.start_server(args, env, port)
        worker = start_celery(env, "worker", "--concurrency", str(args.concurrency), "--without-gossip")
        beat = start_celery(env, "beat", "--schedule", str(VAR / "celerybeat-schedule"))
        try:
            time.sleep(5)  # the worker subscribed, the beat's first tick set the deadlines
            sender, probes, quiet_acked = asyncio.run(load(args, port, source, quiet))
            deadline = time.time() + max(20.0, (quiet_acked or time.time()) + ABSENCE_WINDOW + 30 - time.time())
            while time.time() < deadline:
                time.sleep(1)
        finally:
            for process, log in (beat, worker):
                process.terminate()
                process.wait(timeout=30)
                log.close()
            live.stop_server(server, server_log)
    finally:
        if not args.keep:
            live.admin_sql(args.pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    outcome = results(args, notifier, sender, probes, quiet_acked, rules)
    (VAR / "results.json").write_text(json.dumps(outcome, indent=2))
    print(report(outcome))


if __name__ == "__main__":
    main()
