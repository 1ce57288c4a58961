"""Retention: events older than FLUXO_RETENTION_DAYS (on received time) go.

On PostgreSQL whole partitions are dropped (streams.partitions): a day of events goes in a moment,
with no dead rows left for vacuum. An event is kept until its whole partition has expired, so up to
one partition interval longer than the retention. Rows that are not in a time partition of their own
(the table an upgrade kept as the first partition, until all of it has expired, and the DEFAULT
partitions) are deleted in bounded chunks, as on SQLite.

De-duplication keys outlive the events: they are kept for streams.partitions.dedup_horizon().
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from streams import partitions

log = logging.getLogger(__name__)

CHUNK = 5000


def prune(now=None, chunk=CHUNK, max_chunks=200):
    """Remove expired events and their batch rows; returns how many events were deleted row by row
    (dropped partitions are logged, not counted: counting them would cost a scan)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.FLUXO_RETENTION_DAYS)
    if partitions.enabled():
        dropped = partitions.drop_expired(now)
        if dropped:
            log.info("retention: dropped partitions %s", ", ".join(dropped))
        tables = [p.name for p in partitions.partitions("streams_event") if p.low is None]
        deleted = _delete_before([*tables, "streams_event_default"], cutoff, chunk, max_chunks)
        batch_tables = [p.name for p in partitions.partitions("streams_batch") if p.low is None]
        _delete_before([*batch_tables, "streams_batch_default"], cutoff, chunk, max_chunks, only_empty=True)
        _prune_default_keys(now - partitions.dedup_horizon(), chunk, max_chunks)
    else:
        deleted = _delete_before(["streams_event"], cutoff, chunk, max_chunks)
        _delete_before(["streams_batch"], cutoff, chunk, max_chunks, only_empty=True)
    if deleted:
        log.info("retention: deleted %d events received before %s", deleted, cutoff.isoformat())
    return deleted


def _delete_before(tables, cutoff, chunk, max_chunks, only_empty=False):
    value = connection.ops.adapt_datetimefield_value(cutoff)
    deleted = 0
    for table in tables:
        for _ in range(max_chunks):
            n = _delete_chunk(table, value, chunk, only_empty)
            deleted += n
            if n < chunk:
                break
    return deleted


def _delete_chunk(table, cutoff, chunk, only_empty=False):
    """One short transaction, so ingest is never blocked for long; what is left goes on the next run."""
    empty = " AND NOT EXISTS (SELECT 1 FROM streams_event e WHERE e.batch_id = t.id)" if only_empty else ""
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t "
        f"WHERE t.received_at < %s{empty} ORDER BY t.id LIMIT %s)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [cutoff, chunk])
        return cursor.rowcount


def _prune_default_keys(horizon, chunk, max_chunks):
    """Keys of events with no day partition (no readable time, or far from today) past the horizon."""
    sql = (
        "DELETE FROM streams_eventkey_default WHERE ctid IN "
        "(SELECT ctid FROM streams_eventkey_default WHERE seen_at < %s LIMIT %s)"
    )
    for _ in range(max_chunks):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [horizon, chunk])
            if cursor.rowcount < chunk:
                return
