"""The store's statement checks the sources it files events under, once per statement (issue 15: the
foreign key it replaces ran a trigger and a locking query per event): a source that is gone stores
nothing, and a source's deletion waits for the statements storing under it."""

import orjson
import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from streams import store, wire
from streams.models import Batch, Event, EventKey, Source
from tests import ingest
from tests.test_partitions import io_rows, legacy_rows

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the PostgreSQL statement's check"),
]


def dsn():
    connection.ensure_connection()
    return connection.connection.info.dsn  # the test database, as Django connected to it


def test_the_events_table_has_no_per_row_foreign_key_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'streams_event'::regclass AND contype = 'f'"
        )
        assert cursor.fetchone()[0] == 0


def test_events_filed_under_a_source_that_is_gone_store_nothing():
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    linked = Source.objects.create(name="Acme EU", munchkin_id="987-XYZ-654")
    rows = legacy_rows("gone-1", "gone-2", munchkin="987-XYZ-654")
    for row in rows:
        row["source_id"] = linked.id  # as resolve_sources files them for a source that delivers for it
    Source.objects.filter(id=linked.id)._raw_delete(connection.alias)  # gone meanwhile (its row only)

    with pytest.raises(IntegrityError):
        store._store_jobs([store._Job(rows, source.id, "legacy", timezone.now(), {})])
    assert (Event.objects.count(), Batch.objects.count(), EventKey.objects.count()) == (0, 0, 0)
    # The same rows under a source that exists are stored: the check refuses only what is missing.
    for row in rows:
        row["source_id"] = source.id
    assert store._store_jobs([store._Job(rows, source.id, "legacy", timezone.now(), {})])[0][0] is not None
    assert Event.objects.filter(source=source).count() == 2


def test_a_source_cannot_be_locked_for_deletion_while_a_statement_stores_under_it():
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    other = Source.objects.create(name="Other", munchkin_id="555-OTH-555")
    with transaction.atomic():
        store.store(legacy_rows("held-1"), source, "legacy", timezone.now())
        with psycopg.connect(dsn(), autocommit=True) as deleter:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                deleter.execute("SELECT id FROM streams_source WHERE id = %s FOR UPDATE NOWAIT", [source.id])
            # Another source is not held, and marking this one for deletion (no key changed) does not wait.
            deleter.execute("SELECT id FROM streams_source WHERE id = %s FOR UPDATE NOWAIT", [other.id])
            deleter.execute("SET lock_timeout = '1s'")
            deleter.execute("UPDATE streams_source SET deleting_since = now() WHERE id = %s", [source.id])


def test_each_stored_event_claims_one_key_its_activity_key_else_its_eventid():
    source = Source.objects.create(name="Acme", munchkin_id="123-ABC-456")
    now = timezone.now()
    assert store.store(io_rows("k-1", "k-2"), source, "io", now).accepted == 2
    audit = wire.normalise_io(ingest.audit("Email", "Approve"))
    assert store.store([audit], source, "io", now).accepted == 1
    assert EventKey.objects.count() == 3  # two activity keys and the audit event's eventid
    # Either protocol's copy of an activity, and a retry of the audit event, meet those keys.
    assert store.store(legacy_rows("k-1"), source, "legacy", now).duplicates == 1
    assert store.store(io_rows("k-2"), source, "io", now).duplicates == 1
    assert store.store([wire.normalise_io(orjson.loads(audit["raw"]))], source, "io", now).duplicates == 1
    assert (Event.objects.count(), EventKey.objects.count()) == (3, 3)
