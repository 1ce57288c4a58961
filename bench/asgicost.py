"""CPU per signed 20-event Adobe I/O request through each way of serving /ingest/, in process, A/B.

One event loop runs the requests one at a time, as daphne would call the application, for each
variant in turn, over several interleaved rounds on fresh bodies (nothing is a duplicate), so
machine load affects every variant alike. Reported per variant: this process's CPU (all its threads:
the event loop, the view's thread, the pool's workers) and the CPU of PostgreSQL's backends of this
database, per request (medians over the rounds), and the wall median.

Variants:
- ``django``: Django's ASGIHandler with no middleware (fluxo.asgi's IngestHandler before issue 2's
  third round): three thread hand-offs per request, each in a thread made for that request;
- ``lean``: fluxo.asgi.application as it is (``ingest_asgi_app``: one hand-off on a fixed thread pool);
- either with the pool's check (``+roundtrip``: psycopg_pool's check_connection, an empty query at
  each hand-out; ``+poll``: fluxo.env's check, a poll of the socket) when ``--checks both``.

With ``--http N``, the same requests also go over HTTP to ``python -m fluxo.serve --workers 1``
(closed loop, N senders on keep-alive connections): that daphne process's CPU per request, less
the in-process figure of the variant it runs, is what daphne and Twisted cost around the app.

Run: DATABASE_URL=… python bench/asgicost.py --source-json FILE [--requests 200 --rounds 5 --http 4]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import orjson
import payloads

ROOT = Path(__file__).resolve().parent.parent


def django_handler():
    """fluxo.asgi's ingest handler before the single hand-off: Django's own, without middleware."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.exception import convert_exception_to_response

    class NoMiddleware(ASGIHandler):
        def load_middleware(self, is_async=False):
            self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
            self._middleware_chain = convert_exception_to_response(self._get_response_async)

    return NoMiddleware()


def scope_for(source, body, headers):
    path = source["endpoints"]["legacy_push" if "Authorization" in headers else "adobe_io"]
    pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
    pairs += [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    pairs += [(b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": pairs,
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "asgi": {"version": "3.0"},
    }


async def call(app, source, item):
    body, headers = item
    statuses, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: Django cancels this once the response is sent

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope_for(source, body, headers), receive, send)
    if statuses != [200]:
        raise RuntimeError(f"answered {statuses}")


def pool_check(name):
    """Set the Django pool's check (it is created once per process: change it on the live pool)."""
    from django.db import connection
    from psycopg_pool import ConnectionPool

    from fluxo import env

    connection.pool._check = {"roundtrip": ConnectionPool.check_connection, "poll": env.pool_check}[name]


async def run_variant(app, source, items):
    import pgcost

    dsn = os.environ["DATABASE_URL"]
    pg_before, _ = pgcost.backends_cpu(dsn)
    cpu_before = time.process_time()
    walls = []
    for item in items:
        started = time.perf_counter()
        await call(app, source, item)
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_before
    pg_after, _ = pgcost.backends_cpu(dsn)
    n = len(items)
    return cpu / n * 1000, (pg_after - pg_before) / n * 1000, statistics.median(walls) * 1000


async def main_async(args, source, signer):
    from fluxo.asgi import ingest_asgi_app

    apps = {"django": django_handler(), "lean": ingest_asgi_app}
    checks = ["roundtrip", "poll"] if args.checks == "both" else [args.checks]
    variants = [(a, c) for a in args.apps.split(",") for c in checks]
    needed = args.requests * len(variants) * args.rounds + 40
    if args.legacy:
        token = {"Authorization": f"Bearer {source['api_token']}"}
        bodies = [(body, token) for body in payloads.legacy_bodies(needed, seed=int(time.time()))]
    else:
        bodies = payloads.io_requests(signer, needed, seed=int(time.time()), processes=2)
    for item in bodies[:40]:  # warm up: imports, keys fetched, pool filled
        await call(apps["lean"], source, item)
    bodies = bodies[40:]
    results = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for app_name, check in variants:
            pool_check(check)
            items, bodies = bodies[: args.requests], bodies[args.requests :]
            results[(app_name, check)].append(await run_variant(apps[app_name], source, items))
    return results


def over_http(source, signer, requests, senders):
    """(daphne CPU ms, PostgreSQL backends CPU ms) per request, the whole app served by one daphne."""
    import cpu
    import ingest
    import load
    import pgcost

    items = payloads.io_requests(signer, requests + 200, seed=int(time.time()) + 99, processes=2)
    log = ROOT / "var" / "bench" / "asgicost-server.log"
    dsn = os.environ["DATABASE_URL"]
    with ingest.Server(1, os.environ["ADOBE_IO_KEY_BASE_URL"], log, str(ROOT), "reuseport") as server:
        path = source["endpoints"]["adobe_io"]
        if not load.wait_until_serving("127.0.0.1", server.port, path.replace("adobe-io", "marketo-push")):
            raise SystemExit(f"the server did not start; see {log}")
        target = load.Target("127.0.0.1", server.port, path, {"Content-Type": "application/json"}, 20)
        load.saturate(target, items[:200], senders, 30)  # warm up
        pids = server.daphne_pids()
        before, (pg_before, _) = sum(cpu._stat(pid)[0] for pid in pids), pgcost.backends_cpu(dsn)
        result = load.saturate(target, items[200:], senders, 300)
        after, (pg_after, _) = sum(cpu._stat(pid)[0] for pid in pids), pgcost.backends_cpu(dsn)
    if result.errors:
        raise SystemExit(f"errors over HTTP: {result.errors}")
    return (after - before) / result.requests * 1000, (pg_after - pg_before) / result.requests * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-json", required=True)
    parser.add_argument("--requests", type=int, default=200, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--apps", default="django,lean")
    parser.add_argument("--checks", choices=("roundtrip", "poll", "both"), default="both")
    parser.add_argument("--legacy", action="store_true", help="500-activity legacy pushes instead")
    parser.add_argument("--http", type=int, default=0, help="senders for the HTTP measurement (0: skip)")
    args = parser.parse_args()
    source = orjson.loads(Path(args.source_json).read_bytes())
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    import django

    django.setup()
    import ingest
    from django.conf import settings

    signer = payloads.Signer()
    settings.ADOBE_IO_KEY_BASE_URL = os.environ["ADOBE_IO_KEY_BASE_URL"] = ingest.start_key_server(signer.public_pems())
    load = os.getloadavg()[0]
    results = asyncio.run(main_async(args, source, signer))
    print(f"load average {load:.2f} → {os.getloadavg()[0]:.2f}; {args.rounds} rounds of {args.requests} requests")
    print(f"  {'variant':<20}{'python CPU ms':>15}{'pg CPU ms':>11}{'wall ms':>9}   (medians of the rounds)")
    for (app_name, check), rounds in results.items():
        python, pg, wall = (statistics.median(column) for column in zip(*rounds, strict=True))
        print(f"  {app_name + ' +' + check:<20}{python:>15.2f}{pg:>11.2f}{wall:>9.2f}")
    if args.http:
        served, pg = over_http(source, signer, args.requests * args.rounds, args.http)
        print(f"  over HTTP, 1 daphne process, {args.http} senders: daphne {served:.2f} ms, pg {pg:.2f} ms per request")


if __name__ == "__main__":
    main()
