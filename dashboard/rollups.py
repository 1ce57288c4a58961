"""Per-minute rollups (dashboard.models.MinuteCount), maintained from the receivers' batch rows.

``roll_up()`` counts every committed batch exactly once:

- Commit-order safe. Batch rows are written in the ingest transaction, so a batch whose transaction
  commits late is simply found by a later run: a run takes the batches above the floor that are not
  yet recorded in RolledUpBatch, whatever their order of commit.
- Never twice. A batch's RolledUpBatch row and its increments are written in one transaction, and
  runs are serialised on the RollupFloor row, so the beat's task and any number of web processes can
  all call it.
- Crash safe. A run that dies rolls back whole; the next one does the same work again.

The floor, and why a slow ingest transaction is never skipped
-------------------------------------------------------------
Below the floor no record is kept, so the floor may only pass ids that are counted or can never
commit. An id missing from streams_batch may belong to a transaction still open (the sequence hands
ids out at insert, rows appear at commit), or to one rolled back, or be a sequence skip. The floor
therefore moves up to a *watermark* only once it is proven settled:

1. A run records the watermark: the highest batch id committed (M) and the database's clock just
   after reading it (T). Sequence ids grow with time, so every id up to M, committed or not, was
   handed out before T, by a transaction that started before T.
2. A later run proves it: if no transaction of this database that started before T is still open
   (pg_stat_activity's ``xact_start`` of every other client backend, and prepared transactions, are
   after T), every id up to M is committed (so visible now, and claimed like any other) or never
   will be. The floor may then move up to M, stopping below the first batch not yet counted, and a
   new watermark is taken. Until proven, the watermark is kept (not renewed), so a stream of short
   transactions never postpones it: only one that stays open does, for as long as it stays open.
   On SQLite a run holds the write lock, so no ingest transaction is ever open beside it: the
   previous run's watermark is always proven.

This relies on a batch id being drawn (nextval) inside the transaction that writes its row, as
streams.store does; an id drawn in one transaction and written in a later one would defeat it.

The trade-off: a transaction that stays open (any, not only ingest: a long report, a session left
"idle in transaction") stops the floor, and RolledUpBatch grows by a row per batch meanwhile, which
makes each run's search for pending batches slower. So past MAX_OPEN the floor falls back to passing
batches received longer ago than that, as long as they are counted: only an ingest transaction open
longer than MAX_OPEN (one statement each; never seen) would then be missed. Without the privilege to
see other roles' sessions (pg_read_all_stats), nothing can be proven and only that fallback moves
the floor.

Snapshots (``settled()``) read the rollups with the batches they hold named exactly (Included); on
PostgreSQL they take the floor lock only to roll up, then read in one REPEATABLE READ transaction,
so concurrent snapshots do not wait for each other's reads.
"""

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from dashboard.models import NO_TYPE_ID
from dashboard.ranges import MINUTE_HISTORY
from streams.models import received_window

log = logging.getLogger(__name__)

LIMIT = 2000
MAX_OPEN = timedelta(hours=1)
WARN_EVERY = 600.0  # seconds between warnings that the floor is held

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
# Audit events that name a user both by number and by e-mail, in the batches just counted: who each
# number is (dashboard.models.AuditPerson). Only batches that hold audit events are looked into.
_AUDIT_BATCHES = {
    "postgresql": (
        "SELECT b.id FROM streams_batch b WHERE b.id = ANY(%s) "
        "AND EXISTS (SELECT 1 FROM jsonb_array_elements(b.counts) c WHERE c->>1 = 'audit')"
    ),
    "sqlite": (
        "SELECT b.id FROM streams_batch b WHERE b.id IN (SELECT value FROM json_each(%s)) "
        "AND EXISTS (SELECT 1 FROM json_each(b.counts) c WHERE json_extract(c.value, '$[1]') = 'audit')"
    ),
}
_LEARN_PEOPLE = {
    # DISTINCT ON: one upsert may not touch a row twice; the newest event's e-mail wins.
    "postgresql": (
        "INSERT INTO dashboard_auditperson (source_id, user_numeric, user_email) "
        "SELECT DISTINCT ON (source_id, user_numeric) source_id, user_numeric, user_email FROM streams_event "
        "WHERE batch_id = ANY(%s) AND received_at >= %s AND received_at <= %s "
        "AND stream = 'audit' AND user_numeric <> '' AND user_email <> '' "
        "ORDER BY source_id, user_numeric, id DESC "
        "ON CONFLICT (source_id, user_numeric) DO UPDATE SET user_email = EXCLUDED.user_email"
    ),
    "sqlite": (
        "INSERT INTO dashboard_auditperson (source_id, user_numeric, user_email) "
        "SELECT source_id, user_numeric, user_email FROM streams_event "
        "WHERE batch_id IN (SELECT value FROM json_each(%s)) AND received_at >= %s AND received_at <= %s "
        "AND stream = 'audit' "
        "AND user_numeric <> '' AND user_email <> '' ORDER BY id "
        "ON CONFLICT (source_id, user_numeric) DO UPDATE SET user_email = excluded.user_email"
    ),
}
# The oldest start of a transaction that other sessions of this database have open (prepared ones
# too), and how many sessions hide theirs from this role (then nothing can be proven).
_OLDEST_OPEN = (
    "SELECT MIN(xact_start), COUNT(*) FILTER (WHERE query = '<insufficient privilege>') FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
    "UNION ALL SELECT MIN(prepared), 0 FROM pg_prepared_xacts WHERE database = current_database()"
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
    """Roll up what is pending, then let the block read the rollups as they stand; yields Included.

    What the block reads is exactly the batches Included names (a snapshot's contract with the deltas
    that follow it), and everything committed before the call is among them (or pending). On
    PostgreSQL the block runs in a REPEATABLE READ, READ ONLY transaction of its own, after the
    rollup committed: rollup rows and their RolledUpBatch records commit together, so one snapshot
    sees both or neither, and other snapshots and runs go on meanwhile. Elsewhere (SQLite, or inside
    a caller's transaction) the block runs in the rollup transaction, holding the floor lock.
    """
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            floor, _ = _roll_up(cursor, limit, timezone.now())
            yield _included(cursor, floor)
        return
    roll_up(limit)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT batch_id FROM dashboard_rollupfloor WHERE id = 1")
        row = cursor.fetchone()
        yield _included(cursor, row[0] if row else 0)


def _roll_up(cursor, limit, now):
    """(the floor after this run, batches counted)."""
    floor, seen_through, seen_at = _lock_floor(cursor)
    cursor.execute(_CLAIM, [floor, limit])
    claimed = [row[0] for row in cursor.fetchall()]
    if claimed:
        _increment(cursor, claimed)
        _learn_people(cursor, claimed)
    settled_through = _settled_through(cursor, floor, seen_through, seen_at, now)
    return _advance_floor(cursor, floor, settled_through), len(claimed)


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
    """(floor, watermark id, watermark time) of the locked floor row."""
    # The row may be missing (a fresh or flushed database): create it, then lock it.
    cursor.execute(
        "INSERT INTO dashboard_rollupfloor (id, batch_id, seen_through, seen_at) VALUES (1, 0, 0, NULL) "
        "ON CONFLICT DO NOTHING"
    )
    lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE locked already
    cursor.execute(f"SELECT batch_id, seen_through, seen_at FROM dashboard_rollupfloor WHERE id = 1{lock}")  # noqa: S608
    floor, seen_through, seen_at = cursor.fetchone()
    if seen_at is not None and connection.vendor == "sqlite":
        seen_at = connection.ops.convert_datetimefield_value(seen_at, None, connection)
    return floor, seen_through, seen_at


def _settled_through(cursor, floor, seen_through, seen_at, now):
    """The highest id up to which every batch is committed or never will be (see the module's docstring).

    Takes a new watermark when the last one is proven (or there is none yet).
    """
    proven = seen_at is not None and (seen_through <= floor or _none_open_since(cursor, seen_at))
    if seen_at is None or proven:
        _take_watermark(cursor)
    if proven:
        return seen_through
    fallback = _received_before(cursor, floor, now - MAX_OPEN)
    if fallback > floor and seen_at is not None:
        _warn_held(seen_at)
    return fallback


_last_warning = [float("-inf")]


def _warn_held(seen_at):
    if time.monotonic() - _last_warning[0] >= WARN_EVERY:
        _last_warning[0] = time.monotonic()
        log.warning(
            "rollups: a transaction open since before %s holds the floor; passing batches received over %s ago",
            seen_at.isoformat(),
            MAX_OPEN,
        )


def _none_open_since(cursor, moment):
    """True if no other transaction of this database that started at or before ``moment`` is still open."""
    if connection.vendor != "postgresql":
        return True  # SQLite: this run holds the write lock, so no writer is open beside it
    cursor.execute(_OLDEST_OPEN)
    rows = cursor.fetchall()
    if any(hidden for _, hidden in rows):
        return False
    starts = [start for start, _ in rows if start is not None]
    return not starts or min(starts) > moment


def _take_watermark(cursor):
    if connection.vendor == "postgresql":
        # clock_timestamp() is read after the statement's snapshot: every id it shows was handed out before.
        cursor.execute(
            "UPDATE dashboard_rollupfloor SET (seen_through, seen_at) = "
            "(SELECT COALESCE(MAX(id), 0), clock_timestamp() FROM streams_batch) WHERE id = 1"
        )
        return
    cursor.execute(
        "UPDATE dashboard_rollupfloor SET seen_through = (SELECT COALESCE(MAX(id), 0) FROM streams_batch), "
        "seen_at = %s WHERE id = 1",
        [connection.ops.adapt_datetimefield_value(timezone.now())],
    )


def _received_before(cursor, floor, cutoff):
    cutoff = connection.ops.adapt_datetimefield_value(cutoff)
    cursor.execute("SELECT MAX(id) FROM streams_batch WHERE id > %s AND received_at < %s", [floor, cutoff])
    return cursor.fetchone()[0] or 0


def _increment(cursor, batch_ids):
    ids = batch_ids if connection.vendor == "postgresql" else _json_list(batch_ids)
    for table, column, sqlite_format in _GRAINS:
        sql = _INCREMENT[connection.vendor].format(table=table, column=column, sqlite_format=sqlite_format)
        cursor.execute(sql, [NO_TYPE_ID, ids])


def _learn_people(cursor, batch_ids):
    ids = batch_ids if connection.vendor == "postgresql" else _json_list(batch_ids)
    cursor.execute(_AUDIT_BATCHES[connection.vendor], [ids])
    audit_batches = [row[0] for row in cursor.fetchall()]
    if audit_batches:
        ids = audit_batches if connection.vendor == "postgresql" else _json_list(audit_batches)
        # Their received times bound the read to their partitions (else every partition's index is probed).
        window = [connection.ops.adapt_datetimefield_value(t) for t in received_window(audit_batches)]
        cursor.execute(_LEARN_PEOPLE[connection.vendor], [ids, *window])


def _advance_floor(cursor, floor, settled_through):
    """Move the floor up to ``settled_through``, stopping below the first batch not yet counted."""
    if settled_through <= floor:
        return floor
    cursor.execute(f"SELECT MIN(b.id) {_PENDING}", [floor])
    first_pending = cursor.fetchone()[0]
    candidate = settled_through if first_pending is None else min(settled_through, first_pending - 1)
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


def per_source_minutes(source_ids, since, until):
    """{source_id: {minute start (epoch seconds): events}} for minutes in [since, until)."""
    if source_ids is not None and not source_ids:
        return {}
    where, params = _where(source_ids, since, until)
    bucket = _BUCKET[connection.vendor].format(column="minute")
    sql = f"SELECT source_id, {bucket}, SUM(count) FROM dashboard_minutecount WHERE {where} GROUP BY 1, 2"  # noqa: S608
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [60, 60, *params])
        for source_id, minute, n in cursor.fetchall():
            found.setdefault(source_id, {})[int(minute)] = int(n)
    return found


def _where(source_ids, since, until, column="minute"):
    adapt = connection.ops.adapt_datetimefield_value
    where, params = f"{column} >= %s AND {column} < %s", [adapt(since), adapt(until)]
    if source_ids is not None:
        where += f" AND source_id IN ({', '.join(['%s'] * len(source_ids))})"
        params += [int(i) for i in source_ids]
    return where, params
