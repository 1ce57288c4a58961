"""Partitions for tests on PostgreSQL: days of the past with a partition each, and what a statement reads."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from streams import partitions


def day(offset, base=None):
    """The start of the interval ``offset`` days from ``base`` (now)."""
    base = partitions.floor(base or timezone.now())
    return base + timedelta(days=offset)


def past_partitions(days):
    """As a long-running installation has them: a partition per past day (the test database's first
    partition, the empty table the migration kept, covers all of the past until now)."""
    legacy = [p for p in partitions.partitions("streams_event") if p.low is None]
    for table in partitions.EVENT_TABLES:
        with connection.cursor() as cursor:
            if legacy:
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table}_legacy)")
                assert cursor.fetchone()[0] is False
                cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {table}_legacy")
                cursor.execute(f"DROP TABLE {table}_legacy")
        for n in range(-days, 1):
            partitions._ensure(table, day(n), day(n + 1))


def event_partitions_read(action):
    """The partitions of streams_event that the statements ``action`` runs read, by their plans
    (EXPLAIN, so nothing is run twice): what PostgreSQL's partition pruning left of the table."""
    with CaptureQueriesContext(connection) as captured:
        action()
    read = set()
    for query in captured.captured_queries:
        if _names_events(query["sql"]):
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (FORMAT JSON) {query['sql']}")
                read |= {name for name in _relations(cursor.fetchone()[0]) if _names_events(name)}
    return read


def _names_events(text):
    return "streams_event" in text.replace("streams_eventkey", "")


def _relations(plan):
    if isinstance(plan, list):
        for item in plan:
            yield from _relations(item)
    elif isinstance(plan, dict):
        if "Relation Name" in plan:
            yield plan["Relation Name"]
        for value in plan.values():
            yield from _relations(value)
