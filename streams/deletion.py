"""Deleting a source: marked at once, its rows removed in the background in bounded steps.

Deleting (the admin's delete and its bulk action, ``Source.delete()``, a queryset's ``delete()``) only
marks the source: ``deleting_since`` is set, its links to other sources are dropped (so no other
source's credentials file events under it any more) and a task is queued after commit. From then on
the source is gone for senders (the receivers answer 404 once their few seconds of cache have passed),
for pages, the API and sockets (``Source.objects.live()``). The mark is the outbox: the beat's
periodic pass finds every marked source again, so a lost task or a killed worker only delays it.

``purge()`` removes the rows in steps of at most CHUNK rows, each its own short transaction, so no lock
is held for long and other sources' ingest never waits on it: events (one partition at a time on
PostgreSQL, by ctid), batch rows, de-duplication keys, then the rows other apps keep about the source
(streams.signals.source_erasing), and last, in one transaction, whatever arrived meanwhile and the
source row itself with its few small dependants (tokens, validation requests, foreign Munchkin IDs).
Every step deletes what is still there, so running it again resumes where a killed worker stopped.
"""

import contextlib
import json
import logging
import time

from django.db import IntegrityError, connection, transaction
from django.db.models.deletion import Collector
from django.utils import timezone

from streams import partitions
from streams.models import Source
from streams.signals import source_erasing

log = logging.getLogger(__name__)

CHUNK = 5000
BUDGET_SECONDS = 200  # one task's share (its soft time limit is 240 s); the next task resumes
ESTIMATE_CAP = 100_000  # SQLite: counted up to here, then "more than"
_LOCK_CLASS = 0x5DE1  # pg advisory lock namespace: one purge per source at a time
# Tables of this app holding a source's rows, in the order they go (events before the batch rows
# they name; the keys last, so a redelivery during the deletion is still recognised as one).
TABLES = ("streams_event", "streams_batch", "streams_eventkey")
SQLITE_ERASED_KEYS = "streams_erasedkey"  # streams.erasure, SQLite only (migration 0008)


# --- Marking ------------------------------------------------------------------------------------------


def schedule(queryset):
    """Mark the sources of ``queryset`` for deletion and queue their purge after commit; returns how many
    were newly marked (a source already marked keeps its mark)."""
    ids = list(queryset.values_list("pk", flat=True))
    now = timezone.now()
    marked = []
    with transaction.atomic():
        # NO KEY: the ingest transactions of the source (their foreign keys take KEY SHARE) never wait.
        locked = Source.objects.select_for_update(no_key=True)
        for source in locked.filter(pk__in=ids, deleting_since__isnull=True):
            source.deleting_since = now
            # save(), not update(): post_save drops the receivers' cached row and tells sockets to recheck.
            source.save(update_fields=["deleting_since"])
            source.delivers_for.clear()
            source.delivered_by.clear()
            marked.append(source.pk)
            transaction.on_commit(lambda pk=source.pk: enqueue(pk))
    if marked:
        log.info("sources %s marked for deletion", marked)
    return len(marked)


def enqueue(source_id, countdown=0):
    from streams import tasks  # late: tasks imports this module

    try:
        tasks.delete_source.apply_async((source_id,), countdown=countdown, retry=False)
    except Exception as exc:  # the broker is down: the beat's pass finds the mark
        log.warning("could not queue the deletion of source %s (%s)", source_id, exc.__class__.__name__)


def pending():
    """The ids of the sources marked for deletion, oldest mark first."""
    marked = Source.objects.filter(deleting_since__isnull=False).order_by("deleting_since")
    return list(marked.values_list("pk", flat=True))


# --- Purging ------------------------------------------------------------------------------------------


def purge(source_id, chunk=CHUNK, budget=BUDGET_SECONDS):
    """Remove a marked source's rows for at most about ``budget`` seconds.

    Returns "done" (the source row is gone, or was never marked: nothing to do), "more" (time ran out:
    call again), "busy" (another worker is purging it) or "retry" (rows arrived while finishing, from a
    web process that still had the source cached: the next pass takes them).
    """
    if not Source.objects.filter(pk=source_id, deleting_since__isnull=False).exists():
        return "done"
    deadline = time.monotonic() + budget
    with _exclusive(source_id) as mine:
        if not mine:
            return "busy"
        for table in TABLES:
            if not _delete_rows(table, source_id, chunk, deadline):
                return "more"
        if not _delete_others(source_id, chunk, deadline):
            return "more"
        return _finish(source_id)


def purge_pending(budget=BUDGET_SECONDS):
    """The beat's pass: purge every marked source within one budget; returns {source id: outcome}."""
    deadline = time.monotonic() + budget
    outcomes = {}
    for source_id in pending():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        outcomes[source_id] = purge(source_id, budget=left)
    return outcomes


def _delete_rows(table, source_id, chunk, deadline):
    """True when ``table`` holds no row of the source any more, False when time ran out first."""
    for name in _physical_tables(table):
        while True:
            deleted = _delete_chunk(name, source_id, chunk)
            if deleted < chunk:
                break
            if time.monotonic() > deadline:
                return False
    return True


def _physical_tables(table):
    """On PostgreSQL each partition of a partitioned table in turn (the DEFAULT one last), so every
    statement touches one partition's index; elsewhere the table itself."""
    if connection.vendor == "postgresql" and partitions.is_partitioned(table):
        return [p.name for p in partitions.partitions(table)] + [f"{table}_default"]
    return [table]


def _delete_chunk(table, source_id, chunk):
    """Delete at most ``chunk`` rows of the source from one table, in one short transaction."""
    # Table names come from TABLES and the catalogue, never from input. PostgreSQL: "= ANY(ARRAY(…))"
    # is a TID scan; "ctid IN (…)" may become a semi-join over the whole partition.
    if connection.vendor == "postgresql":
        chosen = f"ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE source_id = %s LIMIT %s))"  # noqa: S608
    else:
        chosen = f"rowid IN (SELECT rowid FROM {table} WHERE source_id = %s LIMIT %s)"  # noqa: S608
    sql = f"DELETE FROM {table} WHERE {chosen}"  # noqa: S608
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [source_id, chunk])
        return cursor.rowcount


def _delete_others(source_id, chunk, deadline):
    """The rows other apps keep about the source (streams.signals.source_erasing), chunk by chunk."""
    while True:
        answers = source_erasing.send(sender=Source, source_id=source_id, chunk=chunk)
        if not sum(n or 0 for _, n in answers):
            return True
        if time.monotonic() > deadline:
            return False


def _finish(source_id):
    """One transaction: rows stored meanwhile (a web process's cached source row lives a few seconds),
    then the source row and its small dependants through Django's collector (no event among them)."""
    try:
        with transaction.atomic():
            source = Source.objects.select_for_update().filter(pk=source_id, deleting_since__isnull=False).first()
            if source is None:
                return "done"
            with connection.cursor() as cursor:
                for table in (*TABLES, *_sqlite_only()):
                    cursor.execute(f"DELETE FROM {table} WHERE source_id = %s", [source_id])  # noqa: S608
            collector = Collector(using=connection.alias, origin=source)
            collector.collect([source])
            collector.delete()
    except IntegrityError:
        # An ingest request that had the source cached committed rows after the statements above.
        log.info("source %s: rows arrived while it was being deleted; the next pass takes them", source_id)
        return "retry"
    log.info("source %s deleted", source_id)
    return "done"


def _sqlite_only():
    return (SQLITE_ERASED_KEYS,) if connection.vendor == "sqlite" else ()


@contextlib.contextmanager
def _exclusive(source_id):
    """Whether this process may purge the source now (PostgreSQL: a session advisory lock; SQLite has
    a single writer anyway). Two purges would do no harm, only work twice."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_CLASS, source_id])
        mine = cursor.fetchone()[0]
    try:
        yield mine
    finally:
        if mine:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, source_id])


# --- What the admin shows -----------------------------------------------------------------------------


def estimated_events(source_id):
    """(n, exact): about how many events a source has, without counting millions of rows. PostgreSQL:
    the planner's estimate (from the statistics ANALYZE keeps); SQLite: a count up to ESTIMATE_CAP."""
    from streams.models import Event

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # An int, inlined: EXPLAIN takes no bound parameters.
            sql = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM streams_event WHERE source_id = {int(source_id)}"  # noqa: S608
            cursor.execute(sql)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return int(plan[0]["Plan"]["Plan Rows"]), False
    found = Event.objects.filter(source_id=source_id)[: ESTIMATE_CAP + 1].count()
    return min(found, ESTIMATE_CAP), found <= ESTIMATE_CAP
