"""Retention: events older than FLUXO_RETENTION_DAYS (on received time) are deleted in bounded chunks.

With FLUXO_ARCHIVE_DEST set, a day is deleted only once streams.archive has written and checked it.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from streams import archive
from streams.models import Source

log = logging.getLogger(__name__)

CHUNK = 5000


def prune(now=None, chunk=CHUNK, max_chunks=200):
    """Delete expired events, then the batch rows left without events. Returns how many events went.

    Each chunk is its own short transaction, so ingest is never blocked for long; what is left
    over after ``max_chunks`` goes on the next run.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.FLUXO_RETENTION_DAYS)
    cutoff_value = connection.ops.adapt_datetimefield_value(cutoff)
    deleted = 0
    for source_id, source_cutoff in _cutoffs(cutoff, now):
        deleted += _delete_events(connection.ops.adapt_datetimefield_value(source_cutoff), chunk, max_chunks, source_id)
    while _delete_chunk("streams_batch", cutoff_value, chunk, only_empty=True) == chunk:
        pass
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
    return pairs


def _delete_events(cutoff, chunk, max_chunks, source_id=None):
    deleted = 0
    for _ in range(max_chunks):
        n = _delete_chunk("streams_event", cutoff, chunk, source_id=source_id)
        deleted += n
        if n < chunk:
            break
    return deleted


def _delete_chunk(table, cutoff, chunk, only_empty=False, source_id=None):
    empty = " AND NOT EXISTS (SELECT 1 FROM streams_event e WHERE e.batch_id = t.id)" if only_empty else ""
    of_source = " AND t.source_id = %s" if source_id is not None else ""
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t "
        f"WHERE t.received_at < %s{of_source}{empty} ORDER BY t.id LIMIT %s)"
    )
    params = [cutoff, *([source_id] if source_id is not None else []), chunk]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
