"""Time partitions of the event tables on PostgreSQL (SQLite keeps plain tables: none of this runs there).

Three partitioned tables:

- ``streams_event`` and ``streams_batch``, by range on ``received_at`` (the time Fluxo stamps, which
  retention counts), one partition per ``FLUXO_PARTITION_INTERVAL`` (an hour, a day or a week; a day by
  default). Retention drops whole partitions: no row-by-row DELETE, no bloat.
- ``streams_eventkey``, the de-duplication keys, by range on ``day``: the UTC day the event *occurred*,
  which every redelivery of an event carries too. So a key and its redeliveries always meet in one
  partition, wherever the events themselves were filed, and the partition being written (today's) stays
  small and in memory however large the tables grow.

Each table has a DEFAULT partition, so that a missing partition never costs an event: a row for a range
without a partition lands there, and ``maintain()`` (the beat, every few minutes) creates that range's
partition and moves the rows into it, logging a warning. ``state()`` reports it for stream health.
The beat also analyses the partitions being filled (``analyze_filling``): a new one has no statistics.

Creating a partition takes a SHARE UPDATE EXCLUSIVE lock on the parent (CREATE TABLE … LIKE, then
ATTACH), which concurrent inserts do not wait for; only the DEFAULT partition is locked exclusively
while rows are moved out of it. Dropping one (DETACH) needs an ACCESS EXCLUSIVE lock on the parent for
a moment: it is asked for with a short ``lock_timeout`` and retried later, so a long reader can delay a
drop but never holds ingest up for longer than that timeout. The detached table is dropped after
that transaction, so the parent is not locked while its files are removed.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction

log = logging.getLogger(__name__)

EVENT_TABLES = ("streams_event", "streams_batch")  # partitioned on received_at
KEY_TABLE = "streams_eventkey"  # partitioned on day (the UTC day an event occurred)
INTERVALS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
AHEAD = 3  # intervals created ahead of now (the floor; a day of beat downtime is then harmless)
KEY_DAYS_AHEAD = 7  # occurred days ahead with a key partition: clocks run a little fast
NO_DAY = date(1970, 1, 1)  # the key day of an event with no readable time (lands in the DEFAULT partition)
LOCK_TIMEOUT = "1s"
RETRIES = 3


@dataclass(frozen=True)
class Partition:
    name: str
    low: datetime | date | None  # None: MINVALUE (the table an upgrade kept as the first partition)
    high: datetime | date | None


def enabled():
    return connection.vendor == "postgresql" and is_partitioned("streams_event")


def is_partitioned(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", [table])
        return cursor.fetchone() is not None


def interval():
    return INTERVALS[settings.FLUXO_PARTITION_INTERVAL]


def dedup_horizon():
    """How long de-duplication keys are kept: Adobe retries 24 h and keeps its journal 7 days; the
    legacy push resumes after a pause. Never shorter than the events themselves are kept."""
    return timedelta(days=max(8, settings.FLUXO_RETENTION_DAYS))


def floor(moment, step=None):
    """The start of the interval holding ``moment`` (UTC; weeks start on Monday)."""
    step = step or interval()
    moment = moment.astimezone(UTC)
    if step == INTERVALS["hour"]:
        return moment.replace(minute=0, second=0, microsecond=0)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if step == INTERVALS["week"]:
        start -= timedelta(days=start.weekday())
    return start


def key_day(occurred_at):
    """The key partition's day of an event: the UTC day it occurred (NO_DAY when unknown)."""
    return occurred_at.astimezone(UTC).date() if occurred_at is not None else NO_DAY


def partition_name(table, low):
    """streams_event_p20261202 (or …_p2026120213 for hourly partitions); key partitions by their day."""
    hourly = isinstance(low, datetime) and interval() == INTERVALS["hour"]
    return f"{table}_p{low.strftime('%Y%m%d%H' if hourly else '%Y%m%d')}"


def partitions(table):
    """The range partitions of ``table`` (not its DEFAULT), oldest first."""
    sql = (
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [table])
        found = [_parse_bound(name, bound, table) for name, bound in cursor.fetchall()]
    return sorted((p for p in found if p is not None), key=lambda p: (p.low is not None, p.low or 0))


def _parse_bound(name, bound, table):
    """FOR VALUES FROM ('2026-12-02 00:00:00+00') TO ('2026-12-03 00:00:00+00'); None for DEFAULT."""
    if bound == "DEFAULT":
        return None
    low, high = (part.split("(", 1)[1].rsplit(")", 1)[0] for part in bound.split(" TO "))
    return Partition(name, _bound_value(low, table), _bound_value(high, table))


def _bound_value(text, table):
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    value = text.strip("'")
    if table == KEY_TABLE:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value).astimezone(UTC)


# --- Creating -----------------------------------------------------------------------------------------


def ensure_ahead(now=None):
    """Create the partitions from the current interval to AHEAD intervals ahead (and the key partitions
    from yesterday to KEY_DAYS_AHEAD days ahead). Returns the names created."""
    now = now or datetime.now(UTC)
    step = interval()
    created = []
    start = floor(now)
    for table in EVENT_TABLES:
        for n in range(AHEAD + 1):
            created += _ensure(table, start + n * step, start + (n + 1) * step)
    today = now.astimezone(UTC).date()
    for n in range(-1, KEY_DAYS_AHEAD + 1):
        day = today + timedelta(days=n)
        created += _ensure(KEY_TABLE, day, day + timedelta(days=1))
    return created


def _ensure(table, low, high):
    existing = partitions(table)
    if any(_overlaps(p, low, high) for p in existing):
        return []
    name = partition_name(table, low)
    _with_retries(lambda: _create(table, name, low, high), f"create {name}")
    return [name]


def _overlaps(partition, low, high):
    return (partition.low is None or partition.low < high) and (partition.high is None or partition.high > low)


def _create(table, name, low, high):
    """One transaction: a new table, the DEFAULT partition's rows of its range moved in, then ATTACH."""
    column = "day" if table == KEY_TABLE else "received_at"
    default = f"{table}_default"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        # Rows that arrived while the range had no partition: moved, under the DEFAULT partition's lock
        # (ATTACH takes it anyway), so none can slip in between the move and the attach.
        cursor.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {default} WHERE {column} >= %s AND {column} < %s RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            [low, high],
        )
        moved = cursor.rowcount
        cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)", [low, high])
    if moved:
        log.warning("partition %s created late: %d rows moved into it from %s", name, moved, default)
    else:
        log.info("partition %s created", name)


def _with_retries(action, what):
    for attempt in range(1, RETRIES + 1):
        try:
            return action()
        except DatabaseError as exc:
            if attempt == RETRIES:
                raise
            log.warning("could not %s (%s); retrying", what, exc.__class__.__name__)
            time.sleep(0.2 * attempt)
    return None


def adopt_defaults(now=None):
    """Give the rows in the DEFAULT partitions a partition of their own (a beat or clock that fell
    behind); returns the partitions created. Ranges older than the retention are left to it."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.FLUXO_RETENTION_DAYS)
    created = []
    for table in EVENT_TABLES:
        for moment in _default_ranges(table, "received_at", cutoff):
            start = floor(moment)
            created += _ensure(table, start, start + interval())
    horizon_day = (now - dedup_horizon()).date()
    for day in _default_ranges(KEY_TABLE, "day", horizon_day):
        if day != NO_DAY:
            created += _ensure(KEY_TABLE, day, day + timedelta(days=1))
    return created


def _default_ranges(table, column, since, limit=20):
    """Distinct interval starts (or days) of the rows in ``table``'s DEFAULT partition, at most ``limit``."""
    bucket = "day" if column == "day" else f"date_trunc('{_trunc_unit()}', received_at AT TIME ZONE 'UTC')"
    sql = f"SELECT DISTINCT {bucket} FROM {table}_default WHERE {column} >= %s LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [since, limit])
        values = [row[0] for row in cursor.fetchall()]
    if column == "day":
        return values
    return [value.replace(tzinfo=UTC) for value in values]


def _trunc_unit():
    return {"hour": "hour", "day": "day", "week": "week"}[settings.FLUXO_PARTITION_INTERVAL]


# --- Dropping -----------------------------------------------------------------------------------------


def drop_expired(now=None, cutoff=None):
    """Drop the event and batch partitions wholly older than ``cutoff`` (the retention's, or earlier
    when days wait for their archive), and the key partitions past the de-duplication horizon that no
    key was seen in since. Returns the names dropped."""
    now = now or datetime.now(UTC)
    cutoff = min(cutoff or now, now - timedelta(days=settings.FLUXO_RETENTION_DAYS))
    dropped = []
    for table in EVENT_TABLES:
        for partition in partitions(table):
            if partition.high is not None and partition.high <= cutoff:
                dropped += _drop(table, partition)
    horizon = now - dedup_horizon()
    for partition in partitions(KEY_TABLE):
        if partition.high is not None and partition.high <= horizon.date() and not _seen_since(partition, horizon):
            dropped += _drop(KEY_TABLE, partition)
    return dropped + _drop_orphans()


# A partition's name (partition_name) that is a plain table: detached, its DROP never ran.
_ORPHAN_NAMES = r"^(streams_event|streams_batch|streams_eventkey)_p[0-9]{8}([0-9]{2})?$"


def _drop_orphans():
    """Drop the tables a drop detached but did not remove (a worker killed between the two steps, or
    a DROP that failed): no longer read by anything, they would hold their disk space for good."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ %s ORDER BY c.relname",
            [_ORPHAN_NAMES],
        )
        names = [name for (name,) in cursor.fetchall()]
        for name in names:
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
            log.warning("detached partition %s left by an earlier drop: dropped now", name)
    return names


def _seen_since(partition, moment):
    """Whether a key of the partition was seen since ``moment`` (a late event keeps its day's keys)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {partition.name} WHERE seen_at >= %s LIMIT 1", [moment])
        return cursor.fetchone() is not None


def _drop(table, partition):
    """DETACH under the parent's exclusive lock, committed at once; then DROP on its own. Removing a
    table's files happens at commit (half a second a GB measured, BENCHMARKS.md): in the DETACH's
    transaction, the parent's lock, which every insert waits for, would be held that long too."""

    def detach():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {partition.name}")

    try:
        _with_retries(detach, f"detach {partition.name}")
    except DatabaseError as exc:
        log.warning("partition %s not dropped this time (%s): next run", partition.name, exc.__class__.__name__)
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {partition.name}")  # another run may have found it first
    except DatabaseError as exc:
        # Detached already: no longer read or written, only its disk space is still taken.
        log.error("partition %s detached but not dropped (%s): the next run drops it", partition.name, exc)
        return [partition.name]
    log.info("partition %s dropped", partition.name)
    return [partition.name]


# --- What stream health shows -------------------------------------------------------------------------


def state(now=None):
    """{"partitioned": bool, "interval", "ahead": intervals covered past the current one, "oldest",
    "newest", "in_default": {table: True when rows wait in its DEFAULT partition}}."""
    if not enabled():
        return {"partitioned": False}
    now = now or datetime.now(UTC)
    found = partitions("streams_event")
    newest = max((p.high for p in found if p.high is not None), default=None)
    current = floor(now)
    ahead = int((newest - current) / interval()) - 1 if newest and newest > current else -1
    oldest = min((p.low for p in found if p.low is not None), default=None)
    return {
        "partitioned": True,
        "interval": settings.FLUXO_PARTITION_INTERVAL,
        "partitions": len(found),
        "ahead": ahead,
        "oldest": oldest.isoformat() if oldest else None,
        "newest": newest.isoformat() if newest else None,
        "in_default": {table: _default_has_rows(table) for table in (*EVENT_TABLES, KEY_TABLE)},
    }


def _default_has_rows(table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table}_default)")
        return cursor.fetchone()[0]


# --- Statistics of the partitions being filled -----------------------------------------------------------

# A partition is created empty and fills within minutes; until its first ANALYZE the planner has no
# statistics for it and picks bad plans (the lead timeline 213 ms instead of 9 ms, BENCHMARKS.md), and
# autovacuum may come to it late. So the beat analyses the current partition once it has rows and is
# not analysed yet, again each time it has doubled since (a few times a day), and the previous one
# once more after its interval ended. ANALYZE reads a fixed sample (300 x default_statistics_target
# rows), so each costs about the same however large the partition.
_ANALYZED = (
    "SELECT c.reltuples, s.n_mod_since_analyze, GREATEST(s.last_analyze, s.last_autoanalyze) "
    "FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = to_regclass(%s)"
)
GROWN_MIN = 1000  # rows changed since the last ANALYZE below which a partition is never re-analysed


def analyze_filling(now=None):
    """ANALYZE the current and previous partitions of the event tables where they need it
    (``_needs_analyze``); returns the names analysed. One that is locked (a DETACH, a move) is left
    for the next run.

    The beat runs this every minute, not only with ``maintain``'s ten: until a new interval's
    partition has statistics, the planner may sort a whole window for a read API page filtered by
    source (hundreds of ms instead of 15, BENCHMARKS.md, issue 10). When nothing needs it, it costs a
    few catalog reads."""
    if not enabled():
        return []
    now = now or datetime.now(UTC)
    current = floor(now)
    analysed = []
    for table in EVENT_TABLES:
        for partition in partitions(table):
            if partition.low in (current, current - interval()) and _needs_analyze(partition, now):
                analysed += _analyze(partition.name)
    return analysed


def _needs_analyze(partition, now):
    """Never analysed and holding a row; analysed, but changed since by at least as many rows as it
    held then; or, once its interval has ended, changed since its last ANALYZE before that end."""
    with connection.cursor() as cursor:
        cursor.execute(_ANALYZED, [partition.name])
        found = cursor.fetchone()
        if found is None:
            return False
        reltuples, changed, analysed_at = found
        if analysed_at is None:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {partition.name})")
            return cursor.fetchone()[0]
    if changed >= max(reltuples, GROWN_MIN):
        return True
    return partition.high <= now and analysed_at < partition.high and changed > 0


def _analyze(name):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(f"ANALYZE {name}")
    except DatabaseError as exc:
        log.warning("partition %s not analysed this time (%s): next run", name, exc.__class__.__name__)
        return []
    log.info("partition %s analysed", name)
    return [name]


def maintain(now=None):
    """The beat's job: partitions ahead, rows in DEFAULT partitions adopted (with a warning), and
    the statistics of the partitions being filled kept (analyze_filling)."""
    if not enabled():
        return {"partitioned": False}
    created = ensure_ahead(now) + adopt_defaults(now)
    analysed = analyze_filling(now)
    report = state(now)
    if any(report["in_default"].values()):
        log.warning("rows wait in a DEFAULT partition: %s", report["in_default"])
    return {**report, "created": created, "analysed": analysed}
