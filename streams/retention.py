"""Retention: events older than FLUXO_RETENTION_DAYS (on received time) go.

On PostgreSQL whole partitions are dropped (streams.partitions): a day of events goes in a moment,
with no dead rows left for vacuum. An event is kept until its whole partition has expired, so up to
one partition interval longer than the retention. Rows that are not in a time partition of their own
(the table an upgrade kept as the first partition, until all of it has expired, and the DEFAULT
partitions) are deleted in bounded chunks, as on SQLite.

With FLUXO_ARCHIVE_DEST set, a day is removed only once streams.archive has written and checked it:
a partition is dropped only when every source's events in it are archived.

De-duplication keys outlive the events: they are kept for streams.partitions.dedup_horizon().
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from streams import archive, partitions
from streams.models import Source

log = logging.getLogger(__name__)

CHUNK = 5000


def prune(now=None, chunk=CHUNK, max_chunks=200):
    """Remove expired events and their batch rows; returns how many events were deleted row by row
    (dropped partitions are logged, not counted: counting them would cost a scan)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.FLUXO_RETENTION_DAYS)
    cutoffs = _cutoffs(cutoff, now)
    if partitions.enabled():
        dropped = partitions.drop_expired(now, cutoff=min(held for _source, held in cutoffs))
        if dropped:
            log.info("retention: dropped partitions %s", ", ".join(dropped))
        tables = [p.name for p in partitions.partitions("streams_event") if p.low is None]
        batch_tables = [p.name for p in partitions.partitions("streams_batch") if p.low is None]
        tables, batch_tables = [*tables, "streams_event_default"], [*batch_tables, "streams_batch_default"]
        _prune_default_keys(now - partitions.dedup_horizon(), chunk, max_chunks)
    else:
        tables, batch_tables = ["streams_event"], ["streams_batch"]
    deleted = sum(_delete_before(tables, held, chunk, max_chunks, source_id) for source_id, held in cutoffs)
    _delete_before(batch_tables, cutoff, chunk, max_chunks, only_empty=True)
    if deleted:
        log.info("retention: deleted %d events received before %s", deleted, cutoff.isoformat())
    return deleted


def _cutoffs(cutoff, now):
    """(source id or None for all, cutoff) pairs: one for all sources, or one per source when archiving.

    With archiving on, a day is removed only once it is archived and checked (streams.archive), so
    a source whose archive fails keeps its events from that day on.
    """
    if not archive.enabled():
        return [(None, cutoff)]
    ids = Source.objects.order_by("id").values_list("id", flat=True)
    pairs = [(source_id, archive.safe_cutoff(source_id, cutoff, now)) for source_id in ids]
    for source_id, held in pairs:
        if held < cutoff:
            log.warning("retention: source %s keeps events from %s on, not archived yet", source_id, held.date())
    return pairs or [(None, cutoff)]


def _delete_before(tables, cutoff, chunk, max_chunks, source_id=None, only_empty=False):
    value = connection.ops.adapt_datetimefield_value(cutoff)
    deleted = 0
    for table in tables:
        for _ in range(max_chunks):
            n = _delete_chunk(table, value, chunk, only_empty, source_id)
            deleted += n
            if n < chunk:
                break
    return deleted


def _delete_chunk(table, cutoff, chunk, only_empty=False, source_id=None):
    """One short transaction, so ingest is never blocked for long; what is left goes on the next run."""
    # A batch's events have its received time: said twice (equal, and before the cutoff, which the
    # planner does not infer), PostgreSQL looks only into the partitions older than the cutoff.
    empty = (
        " AND NOT EXISTS (SELECT 1 FROM streams_event e WHERE e.batch_id = t.id "
        "AND e.received_at = t.received_at AND e.received_at < %s)"
    )
    of_source = " AND t.source_id = %s" if source_id is not None else ""
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t "
        f"WHERE t.received_at < %s{of_source}{empty if only_empty else ''} ORDER BY t.id LIMIT %s)"
    )
    params = [cutoff, *([source_id] if source_id is not None else []), *([cutoff] if only_empty else []), chunk]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
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
