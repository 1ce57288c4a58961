"""Retention: events older than FLUXO_RETENTION_DAYS (on received time) are deleted in bounded chunks."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

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
    for _ in range(max_chunks):
        n = _delete_chunk("streams_event", cutoff_value, chunk)
        deleted += n
        if n < chunk:
            break
    while _delete_chunk("streams_batch", cutoff_value, chunk, only_empty=True) == chunk:
        pass
    if deleted:
        log.info("retention: deleted %d events received before %s", deleted, cutoff.isoformat())
    return deleted


def _delete_chunk(table, cutoff, chunk, only_empty=False):
    empty = " AND NOT EXISTS (SELECT 1 FROM streams_event e WHERE e.batch_id = t.id)" if only_empty else ""
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT t.id FROM {table} t "
        f"WHERE t.received_at < %s{empty} ORDER BY t.id LIMIT %s)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [cutoff, chunk])
        return cursor.rowcount
