"""Where one request spends its time, in process: no HTTP, one request at a time.

For a 500-activity legacy push and a signed 20-event Adobe I/O batch, each stage is timed on fresh
bodies (nothing is a duplicate): the >64-bit integer scan and orjson (parsing), streams.wire
(normalisation), streams.store (one transaction), the announcement (Redis), the whole view, and
the whole Django ASGI application as daphne calls it (middleware, the sync view's per-request
thread, its database connection). Times are medians, as wall time and as this process's CPU
time (the CPU figure excludes PostgreSQL's own work and holds up better on a busy machine).
A cProfile of the legacy view then adds up its own time per file: what dominates.

Run: bench/run.sh does it first; alone: DATABASE_URL=… python bench/stages.py --source-json FILE
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson
import payloads

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = 15


def _median(function, items):
    """(wall ms, process CPU ms), medians over ``items``."""
    wall, cpu = [], []
    for item in items:
        started, cpu_started = time.perf_counter(), time.process_time()
        function(item)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return round(statistics.median(wall) * 1000, 2), round(statistics.median(cpu) * 1000, 2)


class Fresh:
    """New bodies for every stage, so that no stage meets another's rows as duplicates."""

    def __init__(self, signer):
        self.signer, self.seed = signer, int(time.time()) * 1000

    def legacy(self):
        self.seed += 1
        return payloads.legacy_bodies(SAMPLES, seed=self.seed)

    def io(self):
        self.seed += 1
        return payloads.io_requests(self.signer, SAMPLES, seed=self.seed, processes=1)


def legacy_stages(source, fresh):
    from django.utils import timezone

    from streams import announce, receivers, wire
    from streams.models import Source
    from streams.store import store

    receiving = Source.objects.get(id=source["id"])
    parsed = [orjson.loads(b) for b in fresh.legacy()]
    row_sets = [[wire.normalise_legacy(a, p["munchkinId"]) for a in p["activities"]] for p in parsed]
    stored = store(row_sets.pop()[:1], receiving, "legacy", timezone.now())
    view = _view_caller(receivers.marketo_push, source, "legacy_push")
    return {
        "huge-int scan": _median(wire._has_huge_int, fresh.legacy()),
        "orjson.loads": _median(orjson.loads, fresh.legacy()),
        "wire.parse_json": _median(wire.parse_json, fresh.legacy()),
        "normalise (wire)": _median(
            lambda p: [wire.normalise_legacy(a, p["munchkinId"]) for a in p["activities"]], parsed
        ),
        "store (store.py)": _median(lambda rows: store(rows, receiving, "legacy", timezone.now()), row_sets),
        "announce (Redis)": _median(lambda _: announce.batch_committed(stored, timezone.now(), {}), range(SAMPLES)),
        "view": _median(view, fresh.legacy()),
        "Django ASGI app": _median(_asgi_caller(source, "legacy_push"), fresh.legacy()),
    }


def io_stages(source, fresh):
    from streams import receivers, wire

    requests = fresh.io()
    return {
        "wire.parse_json": _median(wire.parse_json, [body for body, _ in requests]),
        "normalise (wire)": _median(
            lambda b: [wire.normalise_io(e) for e in orjson.loads(b)], [b for b, _ in requests]
        ),
        "view": _median(_view_caller(receivers.adobe_io, source, "adobe_io"), fresh.io()),
        "Django ASGI app": _median(_asgi_caller(source, "adobe_io"), fresh.io()),
    }


def _headers(source, endpoint, extra):
    headers = {"authorization": f"Bearer {source['api_token']}"} if endpoint == "legacy_push" else {}
    return {**headers, **extra}


def _view_caller(view, source, endpoint):
    from django.test import RequestFactory

    factory, path = RequestFactory(), source["endpoints"][endpoint]
    key = path.split("/")[2]

    def call(item):
        body, extra = item if isinstance(item, tuple) else (item, {})
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in _headers(source, endpoint, extra).items()}
        response = view(factory.post(path, data=body, content_type="application/json", **meta), key)
        if response.status_code != 200:
            raise RuntimeError(f"the view answered {response.status_code}: {response.content[:200]!r}")

    return call


def _asgi_caller(source, endpoint):
    """Call fluxo.asgi's application in process, as daphne would, and check the answer is 200."""
    from asgiref.sync import async_to_sync

    from fluxo.asgi import application

    path = source["endpoints"][endpoint]

    def call(item):
        body, extra = item if isinstance(item, tuple) else (item, {})
        headers = [(k.encode(), v.encode()) for k, v in _headers(source, endpoint, extra).items()]
        headers += [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b""}
        scope.update(headers=headers, http_version="1.1", scheme="http", server=("127.0.0.1", 80))
        scope.update(client=("127.0.0.1", 1), root_path="", asgi={"version": "3.0"})
        statuses, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect: Django cancels this when the response is sent

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async_to_sync(application)(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"the ASGI application answered {statuses}")

    return call


def profile_legacy_view(source, fresh):
    """Own time per file while the view handles SAMPLES pushes: (file group, ms per request) pairs."""
    from streams import receivers

    call = _view_caller(receivers.marketo_push, source, "legacy_push")
    bodies = fresh.legacy()
    profiler = cProfile.Profile()
    profiler.enable()
    for body in bodies:
        call(body)
    profiler.disable()
    per_group = defaultdict(float)
    for (filename, _line, function), (_cc, _nc, own, _cum, _callers) in pstats.Stats(profiler).stats.items():
        per_group[_group(filename, function)] += own
    ordered = sorted(per_group.items(), key=lambda item: -item[1])
    return [(group, round(seconds / SAMPLES * 1000, 2)) for group, seconds in ordered[:12]]


def _group(filename, function):
    for marker in ("streams/", "django/db/", "django/", "psycopg/", "redis/", "asgiref/", "re/"):
        if f"/{marker}" in filename:
            tail = filename.split(f"/{marker}", 1)[1]
            return marker + tail if marker in ("streams/", "psycopg/") else marker + "…"
    if filename == "~":
        return f"builtin {function}"
    return Path(filename).name


def report(source, key_url, signer):
    """Print (and return) both protocols' stage times and the legacy view's profile."""
    from django.conf import settings

    settings.ADOBE_IO_KEY_BASE_URL = key_url
    fresh = Fresh(signer)
    results = {"legacy_500": legacy_stages(source, fresh), "io_20": io_stages(source, fresh)}
    for name, stages in results.items():
        print(f"\n== one {name.replace('_', ' ')} request in process: median wall ms / CPU ms of this process")
        for stage, (wall, cpu) in stages.items():
            print(f"  {stage:<20}{wall:>9} {cpu:>9}")
    profile = profile_legacy_view(source, fresh)
    print("  legacy view, own time per file (cProfile, ms per request; profiling inflates small calls):")
    for group, ms in profile:
        print(f"    {group:<46}{ms:>8}")
    results["legacy_view_profile"] = profile
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True)
    parser.add_argument("--tree", default=str(ROOT), help="the Fluxo tree to measure")
    args = parser.parse_args()
    source = orjson.loads(Path(args.source_json).read_bytes())
    os.chdir(args.tree)  # Celery's app puts the working directory first on sys.path
    sys.path.insert(0, args.tree)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()
    import ingest

    signer = payloads.Signer()
    report(source, ingest.start_key_server(signer.public_pems()), signer)


if __name__ == "__main__":
    main()
