"""PostgreSQL: events and batches become tables partitioned on received_at, de-duplication keys move
to streams_eventkey, partitioned on the day an event occurred (streams.partitions says why). SQLite:
nothing changes.

An existing installation keeps every row and stays up: the old tables become the first partitions
(MINVALUE up to the start of the next interval) of the new ones, so nothing is copied. The slow parts
run beside live ingest, each step its own short transaction:

1. a unique index (id, received_at) built CONCURRENTLY on each old table (the partitions' primary key);
2. the key table created and filled from the stored events in chunks of ids;
3. one short transaction under exclusive locks: the keys of events stored since step 2, the renames,
   the new parents, the old tables attached. Ingest waits for this step only (seconds at 10M rows,
   measured in BENCHMARKS.md); a request that waits past the server's patience is answered 503.

Self-contained on purpose (a migration must not change when streams.partitions does).
"""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import migrations, transaction

INTERVALS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
FILL_CHUNK = 200_000
KEY_DAYS_AHEAD = 7
AHEAD = 3


def _floor(moment, step):
    if step == INTERVALS["hour"]:
        return moment.replace(minute=0, second=0, microsecond=0)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if step == INTERVALS["week"]:
        start -= timedelta(days=start.weekday())
    return start


def _name(table, low, step):
    return f"{table}_p{low.strftime('%Y%m%d%H' if step == INTERVALS['hour'] else '%Y%m%d')}"


def _already_done(cursor):
    cursor.execute("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('streams_event')")
    return cursor.fetchone() is not None


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if _already_done(cursor):
            return
        for table in ("streams_event", "streams_batch"):
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {table}_id_received")
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {table}_id_received ON {table} (id, received_at)")
        _create_key_table(cursor)
        started = datetime.now(UTC)
        _fill_keys(cursor)
        cursor.execute("ALTER TABLE streams_eventkey ADD PRIMARY KEY (source_id, hash, day)")
        cursor.execute("CREATE INDEX streams_eventkey_seen ON streams_eventkey USING brin (seen_at)")
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '30s'")
        cursor.execute("LOCK TABLE streams_batch, streams_event IN ACCESS EXCLUSIVE MODE")
        # The keys of what was stored during the fill, or committed late with a lower id: ingest
        # transactions last milliseconds, so ten minutes before the fill began is ample.
        _fill_keys(cursor, received_since=started - timedelta(minutes=10))
        step = INTERVALS[settings.FLUXO_PARTITION_INTERVAL]
        first = _floor(datetime.now(UTC), step) + step
        for table in ("streams_batch", "streams_event"):
            _partition(cursor, table, first, step)


def _create_key_table(cursor):
    """Empty, partitioned by day, with a partition per day for the days stored events occurred on
    within the de-duplication horizon and the days ahead; keys of other days go to DEFAULT."""
    cursor.execute("DROP TABLE IF EXISTS streams_eventkey")
    cursor.execute(
        "CREATE TABLE streams_eventkey (source_id bigint NOT NULL, hash uuid NOT NULL, day date NOT NULL, "
        "seen_at timestamptz NOT NULL) PARTITION BY RANGE (day)"
    )
    cursor.execute("CREATE TABLE streams_eventkey_default PARTITION OF streams_eventkey DEFAULT")
    today = datetime.now(UTC).date()
    horizon = max(8, settings.FLUXO_RETENTION_DAYS)
    cursor.execute(
        "SELECT min((occurred_at AT TIME ZONE 'UTC')::date) FROM streams_event WHERE received_at >= %s",
        [datetime.now(UTC) - timedelta(days=horizon + 1)],
    )
    oldest = cursor.fetchone()[0] or today
    day = min(max(oldest, today - timedelta(days=horizon + 1)), today - timedelta(days=1))
    while day <= today + timedelta(days=KEY_DAYS_AHEAD):
        cursor.execute(
            f"CREATE TABLE streams_eventkey_p{day:%Y%m%d} PARTITION OF streams_eventkey FOR VALUES FROM (%s) TO (%s)",
            [day, day + timedelta(days=1)],
        )
        day += timedelta(days=1)


_KEYS_OF = (
    "INSERT INTO streams_eventkey (source_id, hash, day, seen_at) "
    "SELECT source_id, md5({prefix} || {column})::uuid, "
    "COALESCE((occurred_at AT TIME ZONE 'UTC')::date, DATE '1970-01-01'), received_at "
    "FROM streams_event WHERE {column} IS NOT NULL AND {where}"
)
_KEYS = (("'e'", "event_uid"), ("'a'", "activity_key"))


def _fill_keys(cursor, received_since=None):
    """The keys of every stored event, in chunks of ids; or, under the switch's locks, of those
    received since a moment (some may have keys already)."""
    if received_since is not None:
        for prefix, column in _KEYS:
            sql = _KEYS_OF.format(prefix=prefix, column=column, where="received_at >= %s")
            cursor.execute(sql + " ON CONFLICT DO NOTHING", [received_since])
        return
    cursor.execute("SELECT coalesce(max(id), 0) FROM streams_event")
    (last,) = cursor.fetchone()
    for low in range(0, last, FILL_CHUNK):
        for prefix, column in _KEYS:
            sql = _KEYS_OF.format(prefix=prefix, column=column, where="id > %s AND id <= %s")
            cursor.execute(sql, [low, low + FILL_CHUNK])


def _partition(cursor, table, first, step):
    """Turn ``table`` into a partitioned table whose first partition is the old one (up to ``first``)."""
    legacy = f"{table}_legacy"
    cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM {sequence}")
    (next_id,) = cursor.fetchone()
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid), x.indisprimary, x.indisunique FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass",
        [table],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        [table],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(f"ALTER TABLE {table} RENAME TO {legacy}")
    cursor.execute(f"ALTER TABLE {legacy} ALTER COLUMN id DROP IDENTITY")
    # The primary key becomes (id, received_at), on the index built concurrently before.
    cursor.execute(f"ALTER TABLE {legacy} DROP CONSTRAINT {table}_pkey")
    cursor.execute(f"ALTER INDEX {table}_id_received RENAME TO {legacy}_pkey")
    cursor.execute(f"ALTER TABLE {legacy} ADD CONSTRAINT {legacy}_pkey PRIMARY KEY USING INDEX {legacy}_pkey")
    cursor.execute(f"CREATE TABLE {table} (LIKE {legacy}) PARTITION BY RANGE (received_at)")
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq START WITH {int(next_id)} OWNED BY {table}.id")
    cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, received_at)")
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'", [legacy]
    )
    for (name,) in cursor.fetchall():  # de-duplication is streams_eventkey's now
        cursor.execute(f'ALTER TABLE {legacy} DROP CONSTRAINT "{name}"')
    for name, definition, primary, unique in indexes:
        if primary or unique:
            continue
        cursor.execute(f'ALTER INDEX "{name}" RENAME TO "{name[:55]}_l"')
        # The definition names the table by its old name, which is now the new parent's.
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f'ALTER TABLE {legacy} RENAME CONSTRAINT "{name}" TO "{name[:55]}_l"')
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO (%s)", [first])
    cursor.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for n in range(AHEAD + 1):
        low = first + n * step
        cursor.execute(
            f"CREATE TABLE {_name(table, low, step)} PARTITION OF {table} FOR VALUES FROM (%s) TO (%s)",
            [low, low + step],
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("streams", "0005_partition_ready"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
    ]
