"""Time-partitioned storage on PostgreSQL (issue 10): partitions ahead and on demand, exactly once across
partitions and protocols, retention by dropping partitions, and the upgrade of a populated database."""

import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from dashboard import rollups
from dashboard.models import MinuteCount
from streams import partitions, retention, wire
from streams.models import Batch, Event, EventKey
from streams.store import store
from tests.partitioned import day, past_partitions

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="partitions exist on PostgreSQL only"),
]

ROOT = Path(__file__).resolve().parent.parent


def legacy_rows(*guids, munchkin="123-ABC-456", occurred=None):
    occurred = occurred or timezone.now().isoformat()
    return [
        wire.normalise_legacy({"marketoGUID": g, "leadId": 7, "activityTypeId": 1, "activityDate": occurred}, munchkin)
        for g in guids
    ]


def io_rows(*guids, munchkin="123-ABC-456", occurred=None):
    occurred = occurred or timezone.now().isoformat()
    return [
        wire.normalise_io(
            {
                "eventid": f"ev-{g}",
                "type": "com.adobe.platform.marketo.activity.standard.visitwebpage",
                "id": g,
                "time": occurred,
                "data": {"munchkinId": munchkin, "leadId": "7", "activityTypeId": 1, "activityDate": occurred},
            }
        )
        for g in guids
    ]


def partition_of(event_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM streams_event WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


# --- Partitions ahead, and on demand -------------------------------------------------------------------


def test_the_migration_left_partitions_for_now_and_three_intervals_ahead():
    report = partitions.state()
    assert report["partitioned"] is True
    assert report["ahead"] >= partitions.AHEAD
    names = {p.name for p in partitions.partitions("streams_event")}
    for n in range(1, partitions.AHEAD + 1):
        assert partitions.partition_name("streams_event", day(n)) in names
    assert partitions.partition_name("streams_batch", day(1)) in {
        p.name for p in partitions.partitions("streams_batch")
    }


def test_the_beat_creates_partitions_ahead_once(settings):
    later = timezone.now() + timedelta(days=10)
    created = partitions.maintain(later)["created"]
    assert partitions.partition_name("streams_event", day(3, later)) in created
    assert partitions.partition_name("streams_eventkey", (later + timedelta(days=7)).date()) in created
    assert partitions.maintain(later)["created"] == []  # idempotent
    assert partitions.state(later)["ahead"] >= partitions.AHEAD


def analysed_at(name):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT GREATEST(last_analyze, last_autoanalyze) FROM pg_stat_user_tables WHERE relname = %s", [name]
        )
        return cursor.fetchone()[0]


def test_the_beat_analyses_the_partitions_being_filled_once_they_have_rows(source):
    past_partitions(1)
    store(legacy_rows("g-yesterday"), source, "legacy", day(0) - timedelta(hours=1))
    store(legacy_rows("g-today"), source, "legacy", timezone.now())
    filled = {partitions.partition_name(t, d) for t in partitions.EVENT_TABLES for d in (day(-1), day(0))}
    assert {name: analysed_at(name) for name in filled} == dict.fromkeys(filled)
    assert set(partitions.maintain()["analysed"]) == filled
    assert all(analysed_at(name) is not None for name in filled)
    empty = partitions.partition_name("streams_event", day(1))
    assert analysed_at(empty) is None  # created ahead, nothing to sample yet
    # Analysed now, after yesterday ended: neither is again until it has changed enough.
    assert partitions.maintain()["analysed"] == []


def test_the_minute_task_analyses_a_new_partition_once_it_has_rows(source, settings):
    from streams import tasks

    assert settings.CELERY_BEAT_SCHEDULE["analyze-partitions"]["schedule"] <= 60
    # A partition of its own (statistics are not rolled back between tests: the migration's are shared).
    later = day(40)
    for table in partitions.EVENT_TABLES:
        partitions._ensure(table, later, later + timedelta(days=1))
    fresh = partitions.partition_name("streams_event", later)
    assert partitions.analyze_filling(later) == []  # empty: nothing to sample yet
    store(legacy_rows("g-later", occurred=later.isoformat()), source, "legacy", later)
    assert analysed_at(fresh) is None
    assert fresh in partitions.analyze_filling(later)
    assert analysed_at(fresh) is not None
    assert partitions.analyze_filling(later) == []  # nothing changed enough since: a few catalog reads
    assert isinstance(tasks.analyze_partitions(), list)  # the task is that, for now


def test_an_event_for_a_range_without_a_partition_is_kept_and_moved_into_one_later(source, caplog):
    far = timezone.now() + timedelta(days=30)  # the beat has not run for weeks (and no test made these)
    stored = store(legacy_rows("g-far", occurred=far.isoformat()), source, "legacy", far)
    assert stored.accepted == 1
    event = Event.objects.get()
    assert partition_of(event.id) == "streams_event_default"
    assert partitions.state(far)["in_default"]["streams_event"] is True
    with caplog.at_level(logging.WARNING, logger="streams.partitions"):
        partitions.maintain(far)
    assert partition_of(event.id) == partitions.partition_name("streams_event", partitions.floor(far))
    assert partitions.state(far)["in_default"] == {
        t: False for t in ("streams_event", "streams_batch", "streams_eventkey")
    }
    assert Batch.objects.get().id == stored.batch_id
    assert any("created late" in r.message for r in caplog.records)
    # A redelivery after the move is still recognised.
    assert store(legacy_rows("g-far", occurred=far.isoformat()), source, "legacy", far).duplicates == 1


def test_event_ids_stay_unique_and_increasing_across_partitions(source):
    first = store(legacy_rows("g-1"), source, "legacy", day(0) + timedelta(hours=23, minutes=59))
    second = store(legacy_rows("g-2"), source, "legacy", day(1) + timedelta(minutes=1))
    one, two = Event.objects.order_by("id")
    assert one.id < two.id and first.batch_id < second.batch_id
    assert partition_of(one.id) != partition_of(two.id)


# --- Exactly once across partitions and protocols -------------------------------------------------------


def test_a_redelivery_on_the_other_side_of_a_partition_boundary_is_a_duplicate(source):
    before, after = day(1) - timedelta(seconds=1), day(1) + timedelta(seconds=1)
    assert store(io_rows("a-1", "a-2"), source, "io", before).accepted == 2
    assert store(io_rows("a-1", "a-2", "a-3"), source, "io", after).accepted == 1
    assert Event.objects.count() == 3


def test_the_same_activity_by_both_protocols_across_a_boundary_is_stored_once(source):
    assert store(io_rows("a-1"), source, "io", day(1) - timedelta(seconds=1)).accepted == 1
    assert store(legacy_rows("a-1"), source, "legacy", day(1) + timedelta(seconds=1)).duplicates == 1
    assert store(legacy_rows("b-1"), source, "legacy", day(2) - timedelta(seconds=1)).accepted == 1
    assert store(io_rows("b-1"), source, "io", day(2) + timedelta(seconds=1)).duplicates == 1
    assert Event.objects.count() == 2


def test_copies_within_one_request_are_stored_once(source):
    rows = legacy_rows("g-1", "g-1", "g-2") + io_rows("g-2")
    stored = store(rows, source, "legacy", timezone.now())
    assert (stored.accepted, stored.duplicates) == (2, 2)


def test_a_redelivery_after_its_partition_was_dropped_is_still_a_duplicate(source, settings):
    settings.FLUXO_RETENTION_DAYS = 1
    past_partitions(4)
    old = day(-3) + timedelta(hours=12)
    store(legacy_rows("g-old", occurred=old.isoformat()), source, "legacy", old)
    dropped = partitions.drop_expired()
    assert partitions.partition_name("streams_event", day(-3)) in dropped
    assert partitions.partition_name("streams_batch", day(-3)) in dropped
    assert not Event.objects.exists() and not Batch.objects.exists()
    # Its key outlives it (the horizon is at least 8 days): Adobe's journal may still send it.
    assert EventKey.objects.count() == 1
    assert store(legacy_rows("g-old", occurred=old.isoformat()), source, "legacy", timezone.now()).duplicates == 1


def test_a_partition_detached_by_an_interrupted_drop_is_dropped_by_the_next_run(source, settings, monkeypatch):
    settings.FLUXO_RETENTION_DAYS = 1
    past_partitions(4)
    old = day(-3) + timedelta(hours=12)
    store(legacy_rows("g-old", occurred=old.isoformat()), source, "legacy", old)
    name = partitions.partition_name("streams_event", day(-3))
    with connection.cursor() as cursor:  # what a worker killed after the DETACH's commit leaves
        cursor.execute(f"ALTER TABLE streams_event DETACH PARTITION {name}")
    keep = "streams_event_p2026"  # a table of another name pattern is never touched
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {keep}x (n int)")
    dropped = partitions.drop_expired()
    assert name in dropped
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s), to_regclass(%s)", [name, f"{keep}x"])
        assert cursor.fetchone() == (None, f"{keep}x")
        cursor.execute(f"DROP TABLE {keep}x")
    assert partitions.drop_expired() == []


# --- Retention by dropping partitions -------------------------------------------------------------------


def test_retention_drops_whole_expired_partitions_and_the_rollups_stay_counted_once(source, settings):
    settings.FLUXO_RETENTION_DAYS = 2
    now = timezone.now()
    past_partitions(6)
    for days_ago in (5, 4, 0):
        at = now - timedelta(days=days_ago)
        store(legacy_rows(f"g-{days_ago}", occurred=at.isoformat()), source, "legacy", at)
    rollups.roll_up()
    counted = sorted(MinuteCount.objects.values_list("minute", "count"))
    assert sum(n for _, n in counted) == 3
    retention.prune(now)
    assert list(Event.objects.values_list("activity_key", flat=True)) == ["123-ABC-456|g-0"]
    assert Batch.objects.count() == 1
    names = {p.name for p in partitions.partitions("streams_event")}
    assert partitions.partition_name("streams_event", day(-5, now)) not in names
    rollups.roll_up()
    assert sorted(MinuteCount.objects.values_list("minute", "count")) == counted  # history kept, nothing twice


def test_key_partitions_are_dropped_past_the_horizon_unless_a_key_was_seen_since(source, settings):
    settings.FLUXO_RETENTION_DAYS = 1
    now = timezone.now()
    old_day = (now - timedelta(days=20)).date()
    late_day = (now - timedelta(days=19)).date()
    for d in (old_day, late_day):
        partitions._ensure("streams_eventkey", d, d + timedelta(days=1))
    # One event of each day, received long ago; the second day's also seen again just now (a late copy).
    store(legacy_rows("g-a", occurred=f"{old_day}T10:00:00Z"), source, "legacy", now - timedelta(days=20))
    store(legacy_rows("g-b", occurred=f"{late_day}T10:00:00Z"), source, "legacy", now - timedelta(days=19))
    store(legacy_rows("g-c", occurred=f"{late_day}T11:00:00Z"), source, "legacy", now)
    dropped = partitions.drop_expired(now)
    assert partitions.partition_name("streams_eventkey", old_day) in dropped
    assert partitions.partition_name("streams_eventkey", late_day) not in dropped
    assert sorted(EventKey.objects.values_list("day", flat=True).distinct()) == [late_day]


def test_the_partition_interval_is_a_setting(settings):
    settings.FLUXO_PARTITION_INTERVAL = "hour"
    moment = datetime(2030, 1, 2, 13, 45, tzinfo=UTC)
    assert partitions.floor(moment) == datetime(2030, 1, 2, 13, tzinfo=UTC)
    settings.FLUXO_PARTITION_INTERVAL = "week"
    assert partitions.floor(moment) == datetime(2029, 12, 31, tzinfo=UTC)


# --- The upgrade of a populated database ------------------------------------------------------------------


def _manage(database_url, *args):
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True
    )


@pytest.mark.slow
def test_migrate_turns_a_populated_unpartitioned_database_into_partitions_with_nothing_lost():
    settings_db = connection.settings_dict
    name = f"fluxo_upgrade_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(
        host=settings_db["HOST"] or None,
        port=settings_db["PORT"] or None,
        user=settings_db["USER"] or None,
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f"CREATE DATABASE {name}")
    url = f"postgres://{settings_db['USER']}@{settings_db['HOST'] or '127.0.0.1'}:{settings_db['PORT'] or 5432}/{name}"
    try:
        _manage(url, "migrate", "--noinput", "streams", "0005")
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
            _populate(db, 100_000)
            before = _fingerprint(db)
        _manage(url, "migrate", "--noinput")
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
            after = _fingerprint(db)
            assert db.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()[0] == 3
            keys = db.execute("SELECT count(*) FROM streams_eventkey").fetchone()[0]
            # Every event's keys: 100k activity keys and the 50k I/O eventids.
            assert keys == 150_000
            # New ids continue the old sequence; a redelivery of an old event is recognised.
            new_id = db.execute("SELECT nextval('streams_event_id_seq')").fetchone()[0]
            assert new_id > before["max_event_id"]
            legacy = db.execute("SELECT relname FROM pg_class WHERE relname = 'streams_event_legacy'").fetchone()
            assert legacy is not None
        assert after == before
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _populate(db, n):
    """Sources, batches and events as the old schema held them, filled with SQL."""
    db.execute(
        "INSERT INTO streams_source (name, munchkin_id, ingest_key, adobe_client_id, pinned_public_keys, legacy_auth, "
        "allow_query_token, oauth_issuer, oauth_audience, oauth_jwks_url, oauth_introspection_url, "
        "oauth_introspection_client_id, oauth_introspection_client_secret, created_at, auth_grace_hours, "
        "previous_auth) VALUES ('Acme', '123-ABC-456', 'k1', '', '', 'token', false, '', '', '', '', '', '', now(), "
        "24, '[]')"
    )
    (source_id,) = db.execute("SELECT id FROM streams_source").fetchone()
    db.execute(
        "INSERT INTO streams_batch (received_at, protocol, source_id, accepted, duplicates, counts, meta) "
        "SELECT now() - (g || ' minutes')::interval, 'legacy', %s, 100, 0, '[]', '{}' FROM generate_series(1, %s) g",
        [source_id, n // 100],
    )
    db.execute(
        "INSERT INTO streams_event (source_id, batch_id, munchkin_id, stream, type, event_uid, activity_key, "
        "received_at, occurred_at, activity_type_id, activity_type_name, lead_id, primary_attribute, "
        "primary_attribute_id, campaign_id, campaign_name, program_id, program_name, component_type, component_id, "
        "action, user_numeric, user_email, kind, subtype, details, flags, raw) "
        "SELECT %s, b.id, '123-ABC-456', 'activity', 'visitwebpage', CASE WHEN g %% 2 = 0 THEN 'ev-' || g END, "
        "'123-ABC-456|g-' || g, b.received_at, b.received_at - interval '5 seconds', 1, 'Visit Webpage', "
        "(g %% 1000)::text, '', '', '', '', '', '', '', '', '', '', '', '', '', '', '[]', '{\"n\": ' || g || '}' "
        "FROM generate_series(1, %s) g "
        "JOIN streams_batch b ON b.id = (SELECT min(id) FROM streams_batch) + (g - 1) / 100",
        [source_id, n],
    )


def _fingerprint(db):
    events = db.execute(
        "SELECT count(*), max(id), md5(string_agg(id::text || activity_key || coalesce(event_uid, '') || raw "
        "|| received_at::text, ',' ORDER BY id)) FROM streams_event"
    ).fetchone()
    batches = db.execute(
        "SELECT count(*), md5(string_agg(id::text || received_at::text, ',' ORDER BY id)) FROM streams_batch"
    ).fetchone()
    return {"events": events[0], "max_event_id": events[1], "events_md5": events[2], "batches": batches}
