"""Per-minute rollups (dashboard.models.MinuteCount), maintained from the receivers' batch rows.

``roll_up()`` counts every committed batch exactly once:

- Commit-order safe. Batch rows are written in the ingest transaction, so a batch whose transaction
  commits late is simply found by a later run: a run takes the batches above the floor that are not
  yet recorded in RolledUpBatch, whatever their order of commit.
- Never twice. A batch's RolledUpBatch row and its increments are written in one transaction, and
  runs are serialised on the RollupFloor row, so the beat's task and any number of web processes can
  all call it.
- Crash safe. A run that dies rolls back whole; the next one does the same work again.

The floor moves over batches received more than GRACE ago once all of them are rolled up, and the
records below it are dropped: that assumes no ingest transaction stays open longer than GRACE (one
statement each; a batch held up that long would not be counted).
"""

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from dashboard.models import NO_TYPE_ID
from dashboard.ranges import MINUTE_HISTORY

LIMIT = 2000
GRACE = timedelta(minutes=10)

_PENDING = (
    "FROM streams_batch b WHERE b.id > %s "
    "AND NOT EXISTS (SELECT 1 FROM dashboard_rolledupbatch r WHERE r.batch_id = b.id)"
)
_CLAIM = (
    f"INSERT INTO dashboard_rolledupbatch (batch_id) SELECT b.id {_PENDING} "
    "ORDER BY b.id LIMIT %s ON CONFLICT DO NOTHING RETURNING batch_id"
)
# counts rows are [source_id, stream, type, activity_type_id, n]; one upsert adds a whole set of batches.
_INCREMENT = {
    "postgresql": (
        "INSERT INTO {table} (source_id, stream, type, activity_type_id, {column}, count) "
        "SELECT (c.value->>0)::bigint, c.value->>1, c.value->>2, COALESCE((c.value->>3)::bigint, %s), "
        "date_trunc('{column}', b.received_at), SUM((c.value->>4)::bigint) "
        "FROM streams_batch b CROSS JOIN LATERAL jsonb_array_elements(b.counts) AS c(value) "
        "JOIN streams_source s ON s.id = (c.value->>0)::bigint "
        "WHERE b.id = ANY(%s) GROUP BY 1, 2, 3, 4, 5 "
        "ON CONFLICT (source_id, stream, type, activity_type_id, {column}) "
        "DO UPDATE SET count = {table}.count + EXCLUDED.count"
    ),
    "sqlite": (
        "INSERT INTO {table} (source_id, stream, type, activity_type_id, {column}, count) "
        "SELECT json_extract(c.value, '$[0]'), json_extract(c.value, '$[1]'), json_extract(c.value, '$[2]'), "
        "COALESCE(json_extract(c.value, '$[3]'), %s), strftime('{sqlite_format}', b.received_at), "
        "SUM(json_extract(c.value, '$[4]')) "
        "FROM streams_batch b, json_each(b.counts) c "
        "JOIN streams_source s ON s.id = json_extract(c.value, '$[0]') "
        "WHERE b.id IN (SELECT value FROM json_each(%s)) GROUP BY 1, 2, 3, 4, 5 "
        "ON CONFLICT (source_id, stream, type, activity_type_id, {column}) "
        "DO UPDATE SET count = count + excluded.count"
    ),
}
# (table, time column, SQLite's truncation of a stored time to it)
_GRAINS = (
    ("dashboard_minutecount", "minute", "%%Y-%%m-%%d %%H:%%M:00"),
    ("dashboard_hourcount", "hour", "%%Y-%%m-%%d %%H:00:00"),
)


def roll_up(limit=LIMIT, now=None):
    """Count up to ``limit`` not yet counted batches into the minute rollups; return how many."""
    with transaction.atomic(), connection.cursor() as cursor:
        return _roll_up(cursor, limit, now or timezone.now())[1]


@dataclass(frozen=True)
class Included:
    """Which batches the rollups hold: all up to ``through`` except those in ``pending``."""

    through: int
    pending: list


@contextlib.contextmanager
def settled(limit=LIMIT):
    """Roll up what is pending, then keep rollups still while the block reads them; yields Included.

    The block runs in the rollup transaction, holding the floor lock: no other run can commit in
    between, so what the block reads is exactly the batches Included names (a snapshot's contract
    with the deltas that follow it).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        floor, _ = _roll_up(cursor, limit, timezone.now())
        yield _included(cursor, floor)


def _roll_up(cursor, limit, now):
    """(the floor after this run, batches counted)."""
    floor = _lock_floor(cursor)
    cursor.execute(_CLAIM, [floor, limit])
    claimed = [row[0] for row in cursor.fetchall()]
    if claimed:
        _increment(cursor, claimed)
    return _advance_floor(cursor, floor, now), len(claimed)


def _included(cursor, floor):
    cursor.execute("SELECT MAX(batch_id) FROM dashboard_rolledupbatch")
    through = max(floor, cursor.fetchone()[0] or 0)
    cursor.execute(f"SELECT b.id {_PENDING} AND b.id < %s ORDER BY b.id LIMIT 1000", [floor, through])
    return Included(through, [row[0] for row in cursor.fetchall()])


def catch_up(limit=LIMIT, max_runs=50):
    """Roll up everything pending, ``limit`` batches per transaction; return how many in all."""
    total = 0
    for _ in range(max_runs):
        n = roll_up(limit)
        total += n
        if n < limit:
            break
    return total


def prune(now=None, chunk=10_000, max_chunks=100):
    """Delete per-minute rollups older than ranges.MINUTE_HISTORY, in bounded chunks; hourly ones stay.

    Returns how many rows went.
    """
    cutoff = connection.ops.adapt_datetimefield_value((now or timezone.now()) - MINUTE_HISTORY)
    sql = (
        "DELETE FROM dashboard_minutecount WHERE id IN "
        "(SELECT id FROM dashboard_minutecount WHERE minute < %s ORDER BY id LIMIT %s)"
    )
    deleted = 0
    for _ in range(max_chunks):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [cutoff, chunk])
            deleted += cursor.rowcount
            if cursor.rowcount < chunk:
                break
    return deleted


def _lock_floor(cursor):
    # The row may be missing (a fresh or flushed database): create it, then lock it.
    cursor.execute("INSERT INTO dashboard_rollupfloor (id, batch_id) VALUES (1, 0) ON CONFLICT DO NOTHING")
    lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE locked already
    cursor.execute(f"SELECT batch_id FROM dashboard_rollupfloor WHERE id = 1{lock}")  # noqa: S608
    return cursor.fetchone()[0]


def _increment(cursor, batch_ids):
    ids = batch_ids if connection.vendor == "postgresql" else _json_list(batch_ids)
    for table, column, sqlite_format in _GRAINS:
        sql = _INCREMENT[connection.vendor].format(table=table, column=column, sqlite_format=sqlite_format)
        cursor.execute(sql, [NO_TYPE_ID, ids])


def _advance_floor(cursor, floor, now):
    cutoff = connection.ops.adapt_datetimefield_value(now - GRACE)
    cursor.execute("SELECT MAX(id) FROM streams_batch WHERE id > %s AND received_at < %s", [floor, cutoff])
    candidate = cursor.fetchone()[0]
    if candidate is None:
        return floor
    cursor.execute(f"SELECT MIN(b.id) {_PENDING}", [floor])
    first_pending = cursor.fetchone()[0]
    if first_pending is not None:
        candidate = min(candidate, first_pending - 1)
    if candidate > floor:
        cursor.execute("UPDATE dashboard_rollupfloor SET batch_id = %s WHERE id = 1", [candidate])
        cursor.execute("DELETE FROM dashboard_rolledupbatch WHERE batch_id <= %s", [candidate])
        return candidate
    return floor


def _json_list(values):
    return "[" + ",".join(str(int(v)) for v in values) + "]"


# --- Reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeCount:
    bucket: int  # epoch seconds of the bucket's start
    stream: str
    type: str
    activity_type_id: int | None
    count: int


# date_part, not extract: extract gives numeric, several times slower to divide over many rows.
_BUCKET = {
    "postgresql": "(floor(date_part('epoch', {column}) / %s) * %s)::bigint",
    "sqlite": "(CAST(strftime('%%s', {column}) AS INTEGER) / %s) * %s",
}


def counts(source_ids, since, until, bucket_seconds):
    """TypeCounts per bucket of ``bucket_seconds`` (aligned on the epoch) for minutes in [since, until).

    Whole-hour buckets over a range that starts and ends on the hour read the hourly table.
    ``source_ids`` None means every source; an empty list, none.
    """
    if source_ids is not None and not source_ids:
        return []
    hourly = bucket_seconds % 3600 == 0 and since.timestamp() % 3600 == 0 and until.timestamp() % 3600 == 0
    table, column = ("dashboard_hourcount", "hour") if hourly else ("dashboard_minutecount", "minute")
    where, params = _where(source_ids, since, until, column)
    bucket = _BUCKET[connection.vendor].format(column=column)
    sql = (
        f"SELECT {bucket}, stream, type, activity_type_id, SUM(count) FROM {table} "  # noqa: S608
        f"WHERE {where} GROUP BY 1, 2, 3, 4 ORDER BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [bucket_seconds, bucket_seconds, *params])
        return [
            TypeCount(int(b), stream, type_, None if type_id == NO_TYPE_ID else type_id, int(n))
            for b, stream, type_, type_id, n in cursor.fetchall()
        ]


def per_source(source_ids, since, until):
    """{source_id: events counted in minutes [since, until)}."""
    if source_ids is not None and not source_ids:
        return {}
    where, params = _where(source_ids, since, until)
    sql = f"SELECT source_id, SUM(count) FROM dashboard_minutecount WHERE {where} GROUP BY 1"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {source_id: int(n) for source_id, n in cursor.fetchall()}


def _where(source_ids, since, until, column="minute"):
    adapt = connection.ops.adapt_datetimefield_value
    where, params = f"{column} >= %s AND {column} < %s", [adapt(since), adapt(until)]
    if source_ids is not None:
        where += f" AND source_id IN ({', '.join(['%s'] * len(source_ids))})"
        params += [int(i) for i in source_ids]
    return where, params
