"""Bench databases on the partitioned schema: created, migrated, laid out as a running installation
has them, and filled with SQL (events, batches and their de-duplication keys), fast.

The layout of a long-running installation: one partition per past day (not the empty table an
upgrade keeps as the first partition), today's and those ahead, the key partitions by occurred day.
A filled database holds ``big`` rows on one day older than the retention (what a drop removes) and
the rest spread over the seven days before today; today stays empty for the benchmarks' own rows.

Each past day is built outside the table first (a plain table, filled by ``INSERT … SELECT
generate_series`` over two connections, its indexes built afterwards side by side), then attached:
a partition's indexes matching the parent's are adopted, not rebuilt. Its keys likewise, one per
natural key (``md5('e'||event_uid)`` / ``md5('a'||activity_key)``, as streams.store writes them).

A database is kept between runs with ``keep=True`` (BENCH_KEEP=1): what it holds is noted in the table
bench_meta (with the source's credentials), a day already filled is not filled again.
"""

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("PGURL", "postgres://postgres@127.0.0.1:5432")
RETENTION_DAYS = 30  # the default FLUXO_RETENTION_DAYS: the big day lies one day past it
CHUNK = 1_000_000
BATCH_SIZE = 500
MUNCHKIN = "123-ABC-456"

_RAW = orjson.dumps(
    {
        "marketoGUID": "00000000-0000-4000-8000-000000000000",
        "leadId": 12345,
        "activityDate": "2026-01-01T00:00:00Z",
        "primaryAttributeValueId": 1234,
        "primaryAttributeValue": "Attribute Value",
        "activityTypeId": 3,
        "activityType": "Click Link",
        "activityLogItemId": 1234567890,
        "attributes": [
            {"name": "Link ID", "dataType": "object", "value": 1234},
            {"name": "Client IP Address", "dataType": "string", "value": "11.22.33.44"},
            {"name": "Query Parameters", "dataType": "string", "value": "utm_source=newsletter"},
        ],
    }
).decode()

# Event ids are global (id base + i): keys are md5 of them, spread like real random ids. Half the rows
# carry an event id (Adobe I/O), all an activity key (both protocols). Leads: 5M, a few events each.
_EVENTS = """
INSERT INTO {table} (id, batch_id, received_at, source_id, munchkin_id, stream, type, event_uid, activity_key,
    occurred_at, activity_type_id, activity_type_name, lead_id, primary_attribute, primary_attribute_id,
    campaign_id, campaign_name, program_id, program_name, component_type, component_id, action, user_numeric,
    user_email, kind, subtype, details, flags, raw)
SELECT g, %(batch)s::bigint + (g - %(base)s::bigint) / 500,
       %(start)s::timestamptz + (g - %(base)s::bigint) / 500 * 500 * %(step)s::interval, %(source)s,
       %(munchkin)s::text, 'activity',
       (ARRAY['com.adobe.platform.marketo.activity.standard.clicklink',
              'com.adobe.platform.marketo.activity.standard.openemail',
              'com.adobe.platform.marketo.activity.standard.visitwebpage',
              'com.adobe.platform.marketo.activity.standard.changedatavalue'])[1 + g %% 4],
       CASE WHEN g %% 2 = 0 THEN md5(g::text || 'e') END, %(munchkin)s::text || '|' || md5(g::text || 'a'),
       %(start)s::timestamptz + (g - %(base)s::bigint) * %(step)s::interval - interval '5 seconds',
       (ARRAY[3, 7, 1, 13])[1 + g %% 4],
       (ARRAY['Click Link', 'Open Email', 'Visit Webpage', 'Change Data Value'])[1 + g %% 4],
       ((g * 7919) %% 5000000)::text, 'Attribute Value', '1234', '', '', '', '', '', '', '', '', '', '', '', '',
       '[]'::jsonb, %(raw)s::jsonb
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
"""
_KEYS = """
INSERT INTO {keys} (source_id, hash, day, seen_at)
SELECT source_id, md5({prefix} || {column})::uuid, (occurred_at AT TIME ZONE 'UTC')::date, received_at
FROM {events} WHERE {column} IS NOT NULL
"""


# --- Databases -----------------------------------------------------------------------------------------


def dsn(database):
    return f"{SERVER}/{database}"


def admin(sql):
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql)


def exists(database):
    with psycopg.connect(dsn("postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is not None


def drop(database):
    admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def manage(database, *args, capture=False, tree=ROOT):
    """``manage.py`` of ``tree`` against ``database``."""
    env = {**os.environ, "DATABASE_URL": dsn(database)}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=tree, env=env, check=True, capture_output=capture, text=True
    )
    return done.stdout


def create(database, migrate_to=None):
    """A new migrated database with the bench's source; returns what ``add_source --json`` printed."""
    drop(database)
    admin(f"CREATE DATABASE {database}")
    if migrate_to:
        manage(database, "migrate", "--noinput", "-v", "0", *migrate_to)
    else:
        manage(database, "migrate", "--noinput", "-v", "0")
    out = manage(
        database, "add_source", "Bench", "--munchkin-id", MUNCHKIN, "--adobe-client-id", "bench_client", "--json",
        capture=True,
    )  # fmt: skip
    source = orjson.loads(out.strip().splitlines()[-1])
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, value jsonb NOT NULL)")
        conn.execute("INSERT INTO bench_meta VALUES ('source', %s)", [orjson.dumps(source).decode()])
    return source


def meta(database, key):
    with psycopg.connect(dsn(database)) as conn:
        found = conn.execute("SELECT value FROM bench_meta WHERE key = %s", [key]).fetchone()
    return found[0] if found else None


def set_meta(database, key, value):
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bench_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            [key, orjson.dumps(value).decode()],
        )


# --- The layout ------------------------------------------------------------------------------------------


def today():
    return datetime.now(UTC).date()


def midnight(day):
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def bounds(conn, table):
    """{partition name: bound expression} of ``table``."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
        "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        [table],
    ).fetchall()
    return dict(rows)


def steady_layout(database):
    """As a running installation: the upgrade's first partition (empty here) replaced by daily ones,
    today's partitions present. Idempotent."""
    day = today()
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        for table in ("streams_event", "streams_batch"):
            if f"{table}_legacy" in bounds(conn, table):
                if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table}_legacy)").fetchone()[0]:
                    raise SystemExit(f"{database}: {table}_legacy has rows; not a bench database")
                conn.execute(f"ALTER TABLE {table} DETACH PARTITION {table}_legacy")
                conn.execute(f"DROP TABLE {table}_legacy")
            for n in range(0, 4):
                _ensure(conn, table, day + timedelta(days=n))
        for n in range(-1, 8):
            _ensure(conn, "streams_eventkey", day + timedelta(days=n))


def _ensure(conn, table, day):
    name = f"{table}_p{day:%Y%m%d}"
    if name not in bounds(conn, table):
        low, high = (midnight(day), midnight(day + timedelta(days=1))) if table != "streams_eventkey" else (
            day, day + timedelta(days=1))  # fmt: skip
        conn.execute(f"CREATE TABLE {name} PARTITION OF {table} {_range(low, high)}")


def today_partitions():
    day = today()
    return [f"{table}_p{day:%Y%m%d}" for table in ("streams_event", "streams_batch", "streams_eventkey")]


def empty_today(database):
    """The bench's own rows gone: today's partitions (and the DEFAULT ones) truncated, then a checkpoint,
    so each run starts from the same state."""
    tables = today_partitions() + [f"{t}_default" for t in ("streams_event", "streams_batch", "streams_eventkey")]
    with psycopg.connect(dsn(database), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(tables)}")
        conn.execute("CHECKPOINT")


# --- Filling ---------------------------------------------------------------------------------------------


def plan(total, big):
    """[(day, rows)]: ``big`` rows one day past the retention, the rest over the seven days before today."""
    day = today()
    spread = total - big
    days = [(day - timedelta(days=RETENTION_DAYS + 1), big)] if big else []
    per_day = spread // 7
    days += [(day - timedelta(days=n), per_day + (spread % 7 if n == 1 else 0)) for n in range(1, 8)] if spread else []
    return days


def fill(database, days, source_id, parallel=2):
    """Each (day, rows) not filled yet: events, batches and keys. Returns seconds spent."""
    started = time.perf_counter()
    for day, rows in days:
        if (meta(database, "filled") or {}).get(day.isoformat()) == rows:
            continue
        t0 = time.perf_counter()
        fill_day(database, day, rows, source_id, parallel)
        filled = {**(meta(database, "filled") or {}), day.isoformat(): rows}
        set_meta(database, "filled", filled)
        print(f"  filled {day}: {rows:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
    return time.perf_counter() - started


def fill_day(database, day, rows, source_id, parallel):
    url = dsn(database)
    events, keys, batches = (f"{t}_p{day:%Y%m%d}" for t in ("streams_event", "streams_eventkey", "streams_batch"))
    with psycopg.connect(url, autocommit=True) as conn:
        for table, parent in ((events, "streams_event"), (keys, "streams_eventkey"), (batches, "streams_batch")):
            if table in bounds(conn, parent):
                conn.execute(f"ALTER TABLE {parent} DETACH PARTITION {table}")
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        base = _reserve(conn, "streams_event", rows)
        batch = _reserve(conn, "streams_batch", rows // BATCH_SIZE + 1)
        conn.execute(f"CREATE TABLE {events} (LIKE streams_event INCLUDING DEFAULTS)")
        conn.execute(f"CREATE TABLE {keys} (LIKE streams_eventkey)")
        low, high = midnight(day), midnight(day + timedelta(days=1))
        conn.execute(f"CREATE TABLE {batches} PARTITION OF streams_batch {_range(low, high)}")
    start, step = midnight(day) + timedelta(seconds=10), (timedelta(days=1) - timedelta(seconds=20)) / rows
    with psycopg.connect(url, autocommit=True) as conn:
        # A batch as the receivers write it: its events' received time, and the lowest of their ids.
        conn.execute(
            f"INSERT INTO {batches} "
            "(id, received_at, protocol, source_id, accepted, duplicates, counts, meta, first_event_id) "
            "SELECT %s + j, %s::timestamptz + j * %s * %s::interval, 'legacy', %s, 500, 0, '[]', '{}', %s + j * %s "
            "FROM generate_series(0, %s) AS j",
            [batch, start, BATCH_SIZE, step, source_id, base, BATCH_SIZE, rows // BATCH_SIZE],
        )
    params = {"batch": batch, "base": base, "start": start, "step": step, "source": source_id}
    params |= {"munchkin": MUNCHKIN, "raw": _RAW}
    chunks = [(a, min(base + rows - 1, a + CHUNK - 1)) for a in range(base, base + rows, CHUNK)]
    run_parallel(url, [(_EVENTS.format(table=events), {**params, "first": a, "last": b}) for a, b in chunks], parallel)
    # One scan per kind of key, side by side (no index yet: a range of ids would scan it all too).
    key_sql = [
        (_KEYS.format(keys=keys, events=events, prefix=p, column=c), None)
        for p, c in (("'e'", "event_uid"), ("'a'", "activity_key"))
    ]
    run_parallel(url, key_sql, parallel)
    run_parallel(url, [(sql, None) for sql in _index_ddl(url, events)], parallel)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(f"ALTER TABLE {keys} ADD PRIMARY KEY (source_id, hash, day)")
        conn.execute(f"ALTER TABLE streams_event ATTACH PARTITION {events} {_range(low, high)}")
        conn.execute(f"ALTER TABLE streams_eventkey ATTACH PARTITION {keys} {_range(day, day + timedelta(days=1))}")
        conn.execute(f"VACUUM ANALYZE {events}, {keys}, {batches}")


def _range(low, high):
    """A partition bound (DDL takes no parameters; these are dates and UTC times, not text)."""
    return f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"


def _reserve(conn, table, count):
    """The first of ``count`` ids drawn at once from ``table``'s sequence."""
    sequence = conn.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')").fetchone()[0]
    first = conn.execute(f"SELECT nextval('{sequence}')").fetchone()[0]
    conn.execute(f"SELECT setval('{sequence}', %s)", [first + count])
    return first


def _index_ddl(url, partition):
    """The parent's indexes as statements on ``partition`` (the primary key as a constraint)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisprimary FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'streams_event'::regclass"
        ).fetchall()
    ddl = []
    for n, (_name, definition, primary) in enumerate(rows):
        if primary:
            columns = definition.split("(", 1)[1].rsplit(")", 1)[0]
            ddl.append(f"ALTER TABLE {partition} ADD PRIMARY KEY ({columns})")
            continue
        using = definition.split(" ON ONLY public.streams_event ", 1)[1]
        unique = "UNIQUE " if definition.startswith("CREATE UNIQUE") else ""
        ddl.append(f"CREATE {unique}INDEX {partition}_bench{n} ON {partition} {using}")
    return ddl


def run_parallel(url, statements, parallel):
    """(sql, params) statements over ``parallel`` connections, each taking the next one."""
    pending, lock, failures = list(statements), threading.Lock(), []

    def work():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            while True:
                with lock:
                    if not pending or failures:
                        return
                    sql, params = pending.pop(0)
                try:
                    conn.execute(sql, params)
                except psycopg.Error as exc:
                    failures.append(exc)
                    return

    threads = [threading.Thread(target=work) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def sizes(database):
    with psycopg.connect(dsn(database)) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM streams_event), (SELECT count(*) FROM streams_eventkey), "
            "pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()


def prepare(database, total, big, keep, parallel=2):
    """The filled database (reused when kept and already there); returns its source."""
    if keep and exists(database) and _has_meta(database):
        source = meta(database, "source")
        print(f"{database}: kept from an earlier run", flush=True)
    else:
        source = create(database)
    steady_layout(database)
    took = fill(database, plan(total, big), source["id"], parallel)
    if took > 1:
        print(f"{database}: filled in {took:.0f} s", flush=True)
    empty_today(database)
    return source


def _has_meta(database):
    with psycopg.connect(dsn(database)) as conn:
        return conn.execute("SELECT to_regclass('bench_meta') IS NOT NULL").fetchone()[0]


def date_of(text):
    return date.fromisoformat(text)
