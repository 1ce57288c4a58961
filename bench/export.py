"""Export throughput per format, and the archive of one day: time and peak memory, from PostgreSQL.

Fills ``streams_event`` of its own database with ``--rows`` events over ``--days`` days (three
sources, 70 / 25 / 5 %; payloads of about 450 bytes, each distinct), then runs, each in a process of
its own so its peak RSS is its own:

- ``manage.py export_events`` of the whole range in each format (rows/s, MB/s of the file written);
- ``manage.py archive_events`` of the busiest source's busiest day (seconds, peak RSS, file size).

Run (creates the database fluxo_bench_export, dropped at the end unless --keep; --keep reuses it):
    .venv/bin/python bench/export.py [--rows 2000000] [--days 7] [--keep] [--archive-only]

One big day (the archive alone): --rows 5000000 --days 1 --archive-only (3.5M events of one source).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("PGURL", "postgres://postgres@127.0.0.1:5432")
DATABASE = "fluxo_bench_export"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)

_FILL = """
INSERT INTO streams_event (batch_id, received_at, source_id, munchkin_id, stream, type, event_uid, activity_key,
    occurred_at, activity_type_id, activity_type_name, lead_id, primary_attribute, primary_attribute_id,
    campaign_id, campaign_name, program_id, program_name, component_type, component_id, action, user_numeric,
    user_email, kind, subtype, details, flags, raw)
SELECT %(batch)s, %(since)s + i * %(step)s::interval,
       CASE WHEN h < 70 THEN %(s1)s WHEN h < 95 THEN %(s2)s ELSE %(s3)s END, '123-ABC-456', 'activity',
       'com.adobe.platform.marketo.activity.standard.t' || i %% 16, NULL, '123-ABC-456|' || md5(i::text),
       %(since)s + i * %(step)s::interval - interval '5 seconds', i %% 16 + 1, 'Visit Webpage',
       ((i::bigint * 7919) %% 200000)::text, 'https://www.example.com/p/' || i %% 5000, (i %% 5000)::text,
       '1234', 'Nurture', '77', 'Q4 Webinar', '', '', '', '', '', '', '', '', '[]'::jsonb,
       '{"marketoGUID":"' || md5(i::text) || '","leadId":' || ((i::bigint * 7919) %% 200000)
       || ',"activityDate":"2026-11-01T10:00:00Z","activityTypeId":' || (i %% 16 + 1)
       || ',"primaryAttributeValue":"https://www.example.com/p/' || i %% 5000
       || '","attributes":[{"name":"Client IP Address","value":"203.0.113.' || i %% 250 || '"},'
       || '{"name":"User Agent","value":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"},'
       || '{"name":"Query Parameters","value":"utm_source=newsletter&utm_campaign=' || i %% 97 || '"},'
       || '{"name":"Referrer URL","value":"https://www.example.org/' || md5((i %% 1000)::text) || '"}]}'
FROM (SELECT i, (hashint4(i) & 2147483647) %% 100 AS h FROM generate_series(%(first)s, %(last)s) AS i) AS g
"""


def admin(sql):
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def exists():
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone() is not None


def env():
    return {
        **os.environ,
        "DATABASE_URL": f"{SERVER}/{DATABASE}",
        "FLUXO_VAR_DIR": str(ROOT / "var" / "bench-export"),
        "DJANGO_SETTINGS_MODULE": "fluxo.settings",
        # PostgreSQL needs a Redis named (fluxo.settings): the local one unless told otherwise.
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    }


def manage(*args):
    """(stdout, seconds) of one manage.py command."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed: {err.decode()[-2000:]}")
    return out.decode(), seconds


def peak_rss(*args):
    """(stdout, seconds, peak RSS MiB) of one manage.py command, measured with os.wait4 on its pid."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=env(), stdout=out, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed: {err.read().decode()[-2000:]}")
        return out.read().decode(), seconds, usage.ru_maxrss / 1024  # KiB on Linux


def fill(rows, days):
    manage("migrate", "--noinput")
    step = timedelta(days=days) / rows
    make = (
        "from streams.models import Batch, Source; from django.utils import timezone; "
        "s = [Source.objects.create(name=f'S{n}', munchkin_id=f'{n}{n}{n}-ABC-456') for n in (1, 2, 3)]; "
        "b = Batch.objects.create(received_at=timezone.now(), protocol='fill', source=s[0], accepted=0, duplicates=0); "
        "print(*[x.id for x in s], b.id)"
    )
    *sources, batch = [int(word) for word in manage("shell", "-v", "0", "-c", make)[0].split()]
    with psycopg.connect(f"{SERVER}/{DATABASE}", autocommit=True) as conn:
        params = {"batch": batch, "since": SINCE, "step": step, **{f"s{n + 1}": s for n, s in enumerate(sources)}}
        started = time.perf_counter()
        for first in range(1, rows + 1, 250_000):
            conn.execute(_FILL, {**params, "first": first, "last": min(rows, first + 249_999)})
        conn.execute("VACUUM ANALYZE streams_event")
        conn.execute("CHECKPOINT")
    print(f"filled {rows:,} rows over {days} days in {time.perf_counter() - started:.0f} s")


def table_facts():
    with psycopg.connect(f"{SERVER}/{DATABASE}") as conn:
        rows = conn.execute("SELECT count(*) FROM streams_event").fetchone()[0]
        # A partitioned table's own size is 0: its partitions hold the rows and indexes.
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('streams_event')"
        ).fetchone()[0]
        source, day, busiest = conn.execute(
            "SELECT source_id, (received_at AT TIME ZONE 'UTC')::date AS day, count(*) FROM streams_event "
            "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1"
        ).fetchone()
        last = conn.execute("SELECT max(received_at) FROM streams_event").fetchone()[0]
    return rows, size, source, busiest, day, last


def export_runs(until, folder):
    results = []
    for fmt in ("parquet", "ndjson", "csv"):
        path = folder / f"events.{fmt}"
        out, seconds, rss = peak_rss(
            *("export_events", "--since", SINCE.isoformat(), "--until", until.isoformat()),
            *("--format", fmt, "--output", str(path), "--json"),
        )
        summary = json.loads(out)
        results.append((fmt, summary["rows"], summary["bytes"], summary["seconds"], seconds, rss))
        path.unlink()
    return results


def archive_run(source, folder, day):
    out, seconds, rss = peak_rss(
        "archive_events", "--day", day, "--source", str(source), "--dest", str(folder), "--force", "--json"
    )
    return json.loads(out), seconds, rss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--archive-only", action="store_true", help="skip the exports")
    options = parser.parse_args()
    reuse = options.keep and exists()
    if not reuse:
        admin(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin(f"CREATE DATABASE {DATABASE}")
        fill(options.rows, options.days)
    rows, size, source, busiest, busiest_day, last = table_facts()
    print(f"table: {rows:,} rows, {size / 2**20:,.0f} MiB with indexes; source {source} on {busiest_day}: {busiest:,}")
    try:
        with tempfile.TemporaryDirectory(prefix="fluxo-bench-export-") as tmp:
            folder = Path(tmp)
            print("| format | rows | file MB | export s (in command) | rows/s | MB/s | process s | peak RSS MiB |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            runs = [] if options.archive_only else export_runs(last + timedelta(seconds=1), folder)
            for fmt, n, nbytes, seconds, wall, rss in runs:
                print(
                    f"| {fmt} | {n:,} | {nbytes / 1e6:,.0f} | {seconds:.1f} | {n / seconds:,.0f} | "
                    f"{nbytes / 1e6 / seconds:,.1f} | {wall:.1f} | {rss:,.0f} |"
                )
            summary, wall, rss = archive_run(source, folder, busiest_day.isoformat())
            print(
                f"archive of one day of source {source}: {summary['rows']:,} events, {summary['bytes'] / 1e6:,.1f} MB, "
                f"{wall:.1f} s (process, start-up and check included), {summary['rows'] / wall:,.0f} events/s, "
                f"peak RSS {rss:,.0f} MiB"
            )
    finally:
        if not options.keep:
            admin(f"DROP DATABASE IF EXISTS {DATABASE}")


if __name__ == "__main__":
    main()
