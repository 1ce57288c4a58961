"""Does the read API need an index for its ``ORDER BY id``? Its queries timed on a realistic table,
without and with a candidate index, and what that index costs each ingest.

The API (streams/api.py) filters on source, stream, type, activity type, lead and received time,
always oldest first (``ORDER BY id``), 100 rows a page (1,000 a chunk for NDJSON, ``id > after``).
A viewer who is not a superuser always has ``source_id IN (their sources)`` added.

This script fills ``streams_event`` of its own database with ``--rows`` events of a week over three
sources (70 / 25 / 5 %), three streams (90 % activities, 5 % audit, 5 % notifications) and 24 types,
times each query's EXPLAIN (ANALYZE) (best of three, warm cache), then adds each candidate index in
turn and times them again, and measures the ingest cost of the index: backend CPU and wall time of
500-row and 20-row inserts through streams.store, with and without it.

Run (creates and drops the database fluxo_readapi):
    .venv/bin/python bench/readapi.py [--rows 2000000]
"""

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("PGURL", "postgres://postgres@127.0.0.1:5432")
DATABASE = "fluxo_readapi"
CANDIDATES = {
    "(source_id, id)": "CREATE INDEX bench_event_source_id_id ON streams_event (source_id, id)",
    "(source_id, stream, id)": "CREATE INDEX bench_event_source_stream_id ON streams_event (source_id, stream, id)",
}

_FILL = """
INSERT INTO streams_event (batch_id, received_at, source_id, munchkin_id, stream, type, event_uid, activity_key,
    occurred_at, activity_type_id, activity_type_name, lead_id, primary_attribute, primary_attribute_id,
    campaign_id, campaign_name, program_id, program_name, component_type, component_id, action, user_numeric,
    user_email, kind, subtype, details, flags, raw)
SELECT %(batch)s, %(since)s + i * %(step)s::interval,
       CASE WHEN h < 70 THEN %(s1)s WHEN h < 95 THEN %(s2)s ELSE %(s3)s END, '123-ABC-456',
       CASE WHEN i %% 20 = 0 THEN 'audit' WHEN i %% 20 = 1 THEN 'notification' ELSE 'activity' END,
       CASE WHEN i %% 20 = 0 THEN 'com.adobe.platform.marketo.audit.asset.' || (i / 20) %% 4
            WHEN i %% 20 = 1 THEN 'com.adobe.platform.marketo.notification.' || (i / 20) %% 4
            ELSE 'com.adobe.platform.marketo.activity.standard.t' || (i %% 97) %% 16 END,
       md5(i::text || 'e'), '123-ABC-456|' || md5(i::text || 'a'),
       %(since)s + i * %(step)s::interval - interval '5 seconds',
       CASE WHEN i %% 20 > 1 THEN (i %% 97) %% 16 + 1 END, 'Type', ((i::bigint * 7919) %% 200000)::text,
       'Attribute Value', '1234', '', '', '', '', '', '', '', '', '', '', '', '', '[]'::jsonb,
       '{"id": 1, "attributes": [{"name": "Webpage URL", "value": "https://www.example.com/pricing"}]}'
FROM (SELECT i, (hashint4(i) & 2147483647) %% 100 AS h FROM generate_series(%(first)s, %(last)s) AS i) AS g
"""


def admin(sql):
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def setup_django():
    os.environ["DATABASE_URL"] = f"{SERVER}/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxo.settings")
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _exists(name):
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _filled():
    """The sources of a database kept filled by an earlier --keep run, else None."""
    from streams.models import Event, Source

    sources = list(Source.objects.filter(name__in=["S1", "S2", "S3"]).order_by("name"))
    if len(sources) == 3 and Event.objects.exists():
        from django.contrib.auth.models import Group, User

        User.objects.filter(username="viewer").delete()
        Group.objects.filter(name="viewers").delete()
        return sources
    return None


def fill(rows):
    from streams.models import Batch, Source

    sources = [Source.objects.create(name=f"S{n}", munchkin_id=f"{n}{n}{n}-ABC-456") for n in (1, 2, 3)]
    batch = Batch.objects.create(
        received_at=datetime.now(UTC), protocol="fill", source=sources[0], accepted=rows, duplicates=0
    )
    since, step = datetime.now(UTC) - timedelta(days=7), timedelta(days=7) / rows
    params = {"batch": batch.id, "since": since, "step": step, **{f"s{n + 1}": s.id for n, s in enumerate(sources)}}
    started = time.perf_counter()
    with psycopg.connect(f"{SERVER}/{DATABASE}", autocommit=True) as conn:
        for first in range(1, rows + 1, 250_000):
            conn.execute(_FILL, {**params, "first": first, "last": min(rows, first + 249_999)})
        conn.execute("VACUUM ANALYZE streams_event")
        conn.execute("CHECKPOINT")
    print(f"filled {rows:,} rows in {time.perf_counter() - started:.0f} s")
    return sources


def queries(sources):
    """(label, SQL) of the API's own querysets (streams.api.filtered, as the views slice them)."""
    from django.contrib.auth.models import Group, User
    from django.http import QueryDict

    from streams import api
    from streams.models import Event

    viewer = User.objects.create(username="viewer")
    group = Group.objects.create(name="viewers")
    viewer.groups.add(group)
    sources[2].viewer_groups.add(group)
    small, large = sources[2].id, sources[0].id
    late = Event.objects.order_by("-id").values_list("id", flat=True)[50_000]
    cases = [
        ("no filter", Event.objects.all(), ""),
        ("source (70 %)", Event.objects.all(), f"source={large}"),
        ("source (5 %)", Event.objects.all(), f"source={small}"),
        ("source (5 %) & stream audit", Event.objects.all(), f"source={small}&stream=audit"),
        ("stream notification", Event.objects.all(), "stream=notification"),
        ("type (audit, 1.25 %)", Event.objects.all(), "type=com.adobe.platform.marketo.audit.asset.1"),
        ("activity_type_id", Event.objects.all(), "activity_type_id=5"),
        ("lead_id", Event.objects.all(), "lead_id=4242"),
        ("last hour", Event.objects.all(), f"since={(datetime.now(UTC) - timedelta(hours=1)).isoformat()}"),
        ("viewer of the 5 % source", api.visible_events(viewer), ""),
        ("viewer, stream audit", api.visible_events(viewer), "stream=audit"),
        ("NDJSON chunk after a late id, source 5 %", Event.objects.all(), f"source={small}&after={late}"),
    ]
    built = []
    for label, visible, query in cases:
        chunk = api.CHUNK if label.startswith("NDJSON") else api.DEFAULT_LIMIT + 1
        queryset = api.filtered(visible, QueryDict(query), allowed=("limit",)).values(*api.FIELDS)[:chunk]
        sql, params = queryset.query.sql_with_params()
        built.append((label, sql, params))
    return built


def since_cases():
    """(label, query string) of received-time windows, where the API adds an id floor (streams.api._since_floor)."""
    now = datetime.now(UTC)
    day3, day4 = now - timedelta(days=4), now - timedelta(days=3)
    return [
        ("since the last hour", f"since={(now - timedelta(hours=1)).isoformat()}"),
        ("since the last hour, after=1", f"since={(now - timedelta(hours=1)).isoformat()}&after=1"),
        ("since 6 days ago (most of the table)", f"since={(now - timedelta(days=6)).isoformat()}"),
        ("since 3.5 days ago (half)", f"since={(now - timedelta(days=3.5)).isoformat()}"),
        ("one day in the middle (since & until)", f"since={day3.isoformat()}&until={day4.isoformat()}"),
        ("since a week and a day ago (all)", f"since={(now - timedelta(days=8)).isoformat()}"),
        (
            "since the last hour, source 5 % & audit",
            f"since={(now - timedelta(hours=1)).isoformat()}&SMALL&stream=audit",
        ),
        (
            "since the last hour, stream notification",
            f"since={(now - timedelta(hours=1)).isoformat()}&stream=notification",
        ),
        ("since the last hour, lead_id", f"since={(now - timedelta(hours=1)).isoformat()}&lead_id=4242"),
    ]


def time_since_queries(sources):
    """Per since-window: the query as it was (no floor) against the API's now (probes + the floored query)."""
    from django.http import QueryDict

    from streams import api
    from streams.models import Event

    rows = []
    for label, query in since_cases():
        query = query.replace("SMALL", f"source={sources[2].id}")
        params = QueryDict(query)
        window = {"received_at__gte": api._time(params["since"])}
        if "until" in params:
            window["received_at__lt"] = api._time(params["until"])
        rest = QueryDict(query, mutable=True)
        rest.pop("since"), rest.pop("until", None)
        before = api.filtered(Event.objects.all(), rest).filter(**window).values(*api.FIELDS)[: api.DEFAULT_LIMIT + 1]
        probes = []
        for _ in range(3):
            started = time.perf_counter()
            after = api.filtered(Event.objects.all(), params).values(*api.FIELDS)[: api.DEFAULT_LIMIT + 1]
            str(after.query)  # the floor is computed by now
            probes.append((time.perf_counter() - started) * 1000)
        timed = time_queries([("before", *before.query.sql_with_params()), ("after", *after.query.sql_with_params())])
        same = list(before.values_list("id", flat=True)) == list(after.values_list("id", flat=True))
        rows.append((label, timed["before"], min(probes), timed["after"], same))
    return rows


def time_queries(built):
    from django.db import connection

    results = {}
    with connection.cursor() as cursor:
        for label, sql, params in built:
            best = None
            for _ in range(3):
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0]
                plan = plan[0] if isinstance(plan, list) else plan
                took = plan["Planning Time"] + plan["Execution Time"]
                best = took if best is None else min(best, took)
            results[label] = (round(best, 2), _scan(plan["Plan"]))
    return results


def _scan(node):
    """The plan's first index or table scan, e.g. 'Index Scan on streams_event_pkey'."""
    if "Scan" in node["Node Type"]:
        return f"{node['Node Type']} {node.get('Index Name', '')}".strip()
    for child in node.get("Plans", []):
        found = _scan(child)
        if found:
            return found
    return ""


def ingest_cost(sources):
    """(backend CPU ms, wall ms) per store() of 500 and of 20 fresh rows, medians."""
    import orjson
    from django.db import connection
    from django.utils import timezone

    sys.path.insert(0, str(ROOT / "bench"))
    import cpu
    import payloads

    from streams import store, wire

    results = {}
    for size in (500, 20):
        count = 40 if size == 500 else 200
        bodies = payloads.legacy_bodies(count, size=size, seed=int(time.time() * 1000) % 100_000)
        row_sets = [[wire.normalise_legacy(a, "111-ABC-456") for a in orjson.loads(b)["activities"]] for b in bodies]
        connection.ensure_connection()
        backend = connection.connection.info.backend_pid
        cpu_each, wall_each = [], []
        for rows in row_sets:
            before, started = cpu._stat(backend)[0], time.perf_counter()
            store.store(rows, sources[0], "legacy", timezone.now())
            wall_each.append((time.perf_counter() - started) * 1000)
            cpu_each.append((cpu._stat(backend)[0] - before) * 1000)
        results[size] = (round(statistics.mean(cpu_each), 2), round(statistics.median(wall_each), 2))
    return results


def main():
    global DATABASE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--database", default=DATABASE, help="the database to create and drop")
    parser.add_argument("--since-only", action="store_true", help="only the since-windows, before and after")
    parser.add_argument("--keep", action="store_true", help="keep the filled database, and reuse it next time")
    args = parser.parse_args()
    DATABASE = args.database
    if not args.keep:
        admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    if not _exists(DATABASE):
        admin(f"CREATE DATABASE {DATABASE}")
    try:
        setup_django()
        from django.db import connection

        sources = _filled() or fill(args.rows)
        print(f"\nsince-windows (load average {os.getloadavg()[0]:.2f}): before ms | after: probes ms + query ms")
        for label, before, probes, after, same in time_since_queries(sources):
            print(f"  {label:<44}{before[0]:>9} ms {before[1]:<32} | {probes:.2f} + {after[0]} ms {after[1]}", end="")
            print("" if same else "  RESULTS DIFFER")
        if args.since_only:
            return
        built = queries(sources)
        rounds = {"as migrated": (time_queries(built), ingest_cost(sources))}
        for name, ddl in CANDIDATES.items():
            with connection.cursor() as cursor:
                cursor.execute(ddl)
                cursor.execute("ANALYZE streams_event")
            rounds[f"+ {name}"] = (time_queries(built), ingest_cost(sources))
            with connection.cursor() as cursor:
                cursor.execute(f"DROP INDEX {ddl.split()[2]}")
        print(f"\nload average {os.getloadavg()[0]:.2f}")
        for name, (timed, cost) in rounds.items():
            print(f"\n== {name}: ingest backend CPU / wall ms per store(): ", end="")
            print(", ".join(f"{size} rows {c} / {w}" for size, (c, w) in cost.items()))
            for label, (took, scan) in timed.items():
                print(f"  {label:<44}{took:>9} ms  {scan}")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


if __name__ == "__main__":
    main()
