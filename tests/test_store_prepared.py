"""The ingest store's statement is prepared once per PostgreSQL connection, and stays right as the
partitions under it change (issue 15: parsing and planning it was a third of a 20-event request's
backend CPU)."""

from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from streams import partitions
from streams.models import Event
from streams.store import _STORE_SQL, store
from tests.test_partitions import io_rows, legacy_rows, partition_of

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="prepared statements are PostgreSQL's"),
]


def prepared_store_statements():
    """(executions, generic plans) of the store's statement prepared on this connection, or None."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans, generic_plans FROM pg_prepared_statements "
            "WHERE starts_with(statement, %s)",
            [_STORE_SQL[:60]],
        )
        found = cursor.fetchall()
    assert len(found) <= 1, "one prepared statement per connection, not one per request"
    return found[0] if found else None


def test_the_store_statement_is_prepared_once_and_reused(source):
    now = timezone.now()
    for n in range(8):
        assert store(legacy_rows(f"p-{n}"), source, "legacy", now).accepted == 1
    assert store(io_rows("p-io"), source, "io", now).accepted == 1
    executions, generic = prepared_store_statements()
    assert executions == 9
    # After five custom plans PostgreSQL keeps a generic one: no planning per request.
    assert generic >= 3


def test_a_prepared_store_files_rows_into_partitions_made_after_it_was_prepared(source):
    now = timezone.now()
    assert store(legacy_rows("before"), source, "legacy", now).accepted == 1
    assert prepared_store_statements() is not None
    far = now + timedelta(days=30)  # no partition yet: the DEFAULT one, then one of its own
    store(legacy_rows("far-1", occurred=far.isoformat()), source, "legacy", far)
    # The partitions' DDL (ALTER … ATTACH) makes psycopg deallocate what it prepared on this connection
    # (as on any ROLLBACK or DROP): the store prepares its statement again, never runs a stale one.
    partitions.maintain(far)
    stored = store(legacy_rows("far-2", occurred=far.isoformat()), source, "legacy", far)
    assert stored.accepted == 1
    assert partition_of(Event.objects.get(activity_key__endswith="far-2").id) == (
        partitions.partition_name("streams_event", partitions.floor(far))
    )
    # Exactly once still holds across the new key partition.
    assert store(legacy_rows("far-1", occurred=far.isoformat()), source, "legacy", far).duplicates == 1
    assert prepared_store_statements()[0] == 2
