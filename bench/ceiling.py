"""The raw ceiling, and the tables it and the prefill need.

The ceiling is what PostgreSQL takes for the same rows with no HTTP and no Django in between, on the
same storage as the receivers: a partitioned copy of streams_event (the same partition bounds, DEFAULT
included, the same indexes) and a partitioned copy of its de-duplication keys streams_eventkey. Each
writer process COPYs a 500-row batch (already normalised by streams.wire, exactly as the receiver
would) into a temporary staging table, then one statement claims the batch's keys
(``INSERT … ON CONFLICT DO NOTHING RETURNING``) and inserts the events whose keys it claimed: the shape
of streams.store's statement, one transaction per batch (without the batch row and the counts).
"""

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

COPY_TABLE = "bench_event"
COPY_KEYS = "bench_eventkey"
# The columns a stored event fills (streams.store's, plus the two the batch gives).
COLUMNS = (
    "batch_id",
    "received_at",
    "source_id",
    "munchkin_id",
    "stream",
    "type",
    "event_uid",
    "activity_key",
    "occurred_at",
    "activity_type_id",
    "activity_type_name",
    "lead_id",
    "primary_attribute",
    "primary_attribute_id",
    "campaign_id",
    "campaign_name",
    "program_id",
    "program_name",
    "component_type",
    "component_id",
    "action",
    "user_numeric",
    "user_email",
    "kind",
    "subtype",
    "details",
    "flags",
    "raw",
)
_COLS = ", ".join(COLUMNS)


def rows_of(bodies, source_id):
    """The rows streams.wire makes of each legacy body, as tuples in COLUMNS order (one list per body)."""
    from streams import wire

    received_at = datetime.now(UTC)
    batches = []
    for body in bodies:
        payload = wire.parse_json(body)
        rows = [wire.normalise_legacy(activity, payload["munchkinId"]) for activity in payload["activities"]]
        batches.append([_tuple(row, source_id, received_at) for row in rows])
    return batches


def _tuple(row, source_id, received_at):
    row = {**row, "batch_id": 1, "received_at": received_at, "source_id": source_id}
    row["flags"] = orjson.dumps(row["flags"]).decode()
    return tuple(row[name] for name in COLUMNS)


def create_copy(dsn):
    """Empty partitioned copies of streams_event and streams_eventkey: the same bounds and indexes, no
    foreign keys, their own id sequence."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}, {COPY_KEYS}")
        conn.execute(f"DROP SEQUENCE IF EXISTS {COPY_TABLE}_id_seq")
        conn.execute(f"CREATE TABLE {COPY_TABLE} (LIKE streams_event) PARTITION BY RANGE (received_at)")
        conn.execute(f"CREATE SEQUENCE {COPY_TABLE}_id_seq OWNED BY {COPY_TABLE}.id")
        conn.execute(f"ALTER TABLE {COPY_TABLE} ALTER COLUMN id SET DEFAULT nextval('{COPY_TABLE}_id_seq')")
        conn.execute(f"CREATE TABLE {COPY_KEYS} (LIKE streams_eventkey) PARTITION BY RANGE (day)")
        for table, copy in (("streams_event", COPY_TABLE), ("streams_eventkey", COPY_KEYS)):
            for n, definition in enumerate(_index_definitions(conn, table)):
                unique = "UNIQUE " if definition.startswith("CREATE UNIQUE") else ""
                using = definition.split(f" ON ONLY public.{table} ", 1)[1]
                conn.execute(f"CREATE {unique}INDEX {copy}_i{n} ON {copy} {using}")
            for name, bound in _partition_bounds(conn, table):
                conn.execute(f"CREATE TABLE {copy}{name[len(table) :]} PARTITION OF {copy} {bound}")


def _index_definitions(conn, table):
    return [
        row[0]
        for row in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass", (table,)
        ).fetchall()
    ]


def _partition_bounds(conn, table):
    """(name, bound) of ``table``'s partitions; a plain table (SQLite-like layout) has none."""
    return conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
        "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        (table,),
    ).fetchall()


# --- The ceiling run -----------------------------------------------------------------------------------


def measure(dsn, batches, writers, duration):
    """Rows/s that ``writers`` processes insert; returns (rows, elapsed seconds, exhausted)."""
    context = multiprocessing.get_context("fork")
    next_batch = context.Value("l", 0)
    go, done = context.Event(), context.Queue()
    start_at = context.Value("d", 0.0)
    procs = [
        context.Process(target=_writer, args=(dsn, batches, next_batch, go, start_at, duration, done))
        for _ in range(writers)
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # let every writer connect and create its staging table
    start_at.value = time.time()
    go.set()
    results = [done.get() for _ in procs]
    for proc in procs:
        proc.join()
    rows = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - start_at.value
    return rows, elapsed, next_batch.value >= len(batches)


def _writer(dsn, batches, next_batch, go, start_at, duration, done):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TEMP TABLE staging ON COMMIT DELETE ROWS AS SELECT {_COLS} FROM {COPY_TABLE} WITH NO DATA"
        )
        go.wait()
        deadline = start_at.value + duration
        inserted = 0
        while time.time() < deadline:
            with next_batch.get_lock():
                index = next_batch.value
                next_batch.value += 1
            if index >= len(batches):
                break
            inserted += _insert_batch(conn, batches[index])
        done.put((inserted, time.time()))


# streams.store's statement without the batch row: the keys claimed first (in a stable order), then
# the events each of whose keys this transaction claimed.
_DAY = "COALESCE((occurred_at AT TIME ZONE 'UTC')::date, DATE '1970-01-01')"
_MINE = (
    "(u.{column} IS NULL OR (u.source_id, md5('{prefix}' || u.{column})::uuid) "
    "IN (SELECT source_id, hash FROM claimed))"
)
_CLAIM = (
    f"WITH claimed AS (INSERT INTO {COPY_KEYS} (source_id, hash, day, seen_at) "
    f"SELECT k.source_id, k.hash, k.day, now() FROM ("
    f"SELECT source_id, md5('e' || event_uid)::uuid AS hash, {_DAY} AS day FROM staging WHERE event_uid IS NOT NULL "
    f"UNION ALL SELECT source_id, md5('a' || activity_key)::uuid, {_DAY} FROM staging WHERE activity_key IS NOT NULL"
    ") AS k ORDER BY k.source_id, k.hash ON CONFLICT DO NOTHING RETURNING source_id, hash) "
    f"INSERT INTO {COPY_TABLE} ({_COLS}) SELECT {_COLS} FROM staging u "
    f"WHERE {_MINE.format(column='event_uid', prefix='e')} AND {_MINE.format(column='activity_key', prefix='a')}"
)


def _insert_batch(conn, rows):
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY staging ({_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(_CLAIM)
        return cur.rowcount


# --- Pre-filling a table with millions of older rows ---------------------------------------------------

_PREFILL_RAW = orjson.dumps(
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

# Keys are md5 hashes: spread over the unique indexes like real random ids, not appended at one end.
_PREFILL_SELECT = """
SELECT %(batch)s, %(since)s + i * %(step)s::interval, %(source)s, %(munchkin)s::text, 'activity',
       (ARRAY['com.adobe.platform.marketo.activity.standard.clicklink',
              'com.adobe.platform.marketo.activity.standard.openemail',
              'com.adobe.platform.marketo.activity.standard.visitwebpage',
              'com.adobe.platform.marketo.activity.standard.changedatavalue'])[1 + i %% 4],
       CASE WHEN i %% 2 = 0 THEN md5(i::text || 'e') END,
       %(munchkin)s::text || '|' || md5(i::text || 'a'),
       %(since)s + i * %(step)s::interval - interval '5 seconds',
       (ARRAY[3, 7, 1, 13])[1 + i %% 4],
       (ARRAY['Click Link', 'Open Email', 'Visit Webpage', 'Change Data Value'])[1 + i %% 4],
       ((i::bigint * 7919) %% 5000000)::text, 'Attribute Value', '1234', '', '', '', '', '', '', '', '', '', '', '', '',
       '[]'::jsonb, %(raw)s
FROM generate_series(%(first)s::integer, %(last)s::integer) AS i
"""


def prefill(dsn, count, source_id, parallel=2):
    """Fill streams_event, then its copy, with ``count`` rows of the past week (indexes built after)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        batch = conn.execute(
            "INSERT INTO streams_batch (received_at, protocol, source_id, accepted, duplicates, counts, meta) "
            "VALUES (now() - interval '7 days', 'prefill', %s, %s, 0, '[]', '{}') RETURNING id",
            (source_id, count),
        ).fetchone()[0]
    since, step = datetime.now(UTC) - timedelta(days=7), timedelta(days=7) / count
    params = {"batch": batch, "source": source_id, "since": since, "step": step, "munchkin": "123-ABC-456"}
    params["raw"] = _PREFILL_RAW
    chunks = _ranges(1, count, parallel)
    generate = [
        (f"INSERT INTO streams_event ({_COLS}) {_PREFILL_SELECT}", {**params, "first": a, "last": b}) for a, b in chunks
    ]
    _bulk_load(dsn, "streams_event", generate, parallel)
    copy = [
        (f"INSERT INTO {COPY_TABLE} SELECT * FROM streams_event WHERE id %% %s = %s", (parallel, n))
        for n in range(parallel)
    ]
    _bulk_load(dsn, COPY_TABLE, copy, parallel)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for keys, events in (("streams_eventkey", "streams_event"), (COPY_KEYS, COPY_TABLE)):
            conn.execute(_PREFILL_KEYS.format(keys=keys, events=events))
        # The copied rows keep their ids: move the copy's identity past them, or new rows would collide.
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{COPY_TABLE}', 'id'), (SELECT max(id) FROM {COPY_TABLE}))")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE streams_event, streams_batch, streams_eventkey, {COPY_TABLE}, {COPY_KEYS}")
        conn.execute("CHECKPOINT")


_PREFILL_KEYS = (
    "INSERT INTO {keys} (source_id, hash, day, seen_at) "
    f"SELECT source_id, md5('e' || event_uid)::uuid, {_DAY}, received_at FROM {{events}} WHERE event_uid IS NOT NULL "
    f"UNION ALL SELECT source_id, md5('a' || activity_key)::uuid, {_DAY}, received_at FROM {{events}} "
    "WHERE activity_key IS NOT NULL ON CONFLICT DO NOTHING"
)


def _ranges(first, last, parts):
    size = (last - first + 1 + parts - 1) // parts
    return [(a, min(last, a + size - 1)) for a in range(first, last + 1, size)]


def _bulk_load(dsn, table, statements, parallel):
    """Drop the table's secondary indexes and constraints, run ``statements`` at once, then rebuild them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        constraints, indexes = _secondary_structures(conn, table)
        for name, _definition in constraints:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    try:
        _in_parallel(dsn, statements, parallel)
    finally:
        _rebuild(dsn, table, constraints, indexes, parallel)


def _rebuild(dsn, table, constraints, indexes, parallel):
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Unique constraints first (each takes the table's exclusive lock), then plain indexes side by side.
        for name, definition in constraints:
            if definition.startswith("UNIQUE"):
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    _in_parallel(dsn, [(definition, None) for _name, definition in indexes], parallel)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, definition in constraints:
            if not definition.startswith("UNIQUE"):
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def _secondary_structures(conn, table):
    """(unique and foreign-key constraints, other non-primary indexes) as (name, definition) pairs."""
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY conname",
        (table,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) ORDER BY i.relname",
        (table,),
    ).fetchall()
    return constraints, indexes


def _in_parallel(dsn, statements, parallel):
    """Run (sql, params) statements over ``parallel`` connections, each taking the next one."""
    pending = list(statements)
    lock, failures = threading.Lock(), []

    def work():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            while True:
                with lock:
                    if not pending:
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


def sizes(dsn):
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM streams_event), pg_size_pretty(pg_total_relation_size('streams_event'))"
        ).fetchone()


def reset_copy(dsn):
    """Empty the ceiling's copies only (the receivers' tables stay)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {COPY_TABLE}, {COPY_KEYS}")


def reset(dsn):
    """Empty the event tables between configurations (the sources and tokens stay)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE streams_event, streams_batch, streams_eventkey, {COPY_TABLE}, {COPY_KEYS}")
        conn.execute("CHECKPOINT")
