"""Per-minute rollups from batch rows: every batch counted once, whatever the order of commit."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from dashboard import ranges, rollups, tasks
from dashboard.models import HourCount, MinuteCount, RolledUpBatch, RollupFloor
from streams.models import Batch, Source
from tests.conftest import payload
from tests.ingest import legacy_push

pytestmark = pytest.mark.django_db

VISIT = "com.adobe.platform.marketo.activity.standard.visitwebpage"
CLICK = "com.adobe.platform.marketo.activity.standard.clicklink"
ABORT = "com.adobe.platform.marketo.notification.campaign_abort"
T0 = datetime(2026, 4, 20, 18, 43, 12, tzinfo=UTC)


def batch(source, counts, received_at=T0, **fields):
    return Batch.objects.create(
        received_at=received_at,
        protocol="io",
        source=source,
        accepted=sum(row[-1] for row in counts),
        duplicates=0,
        counts=counts,
        **fields,
    )


def table():
    """The rollups as {(source_id, stream, type, activity_type_id, minute ISO): count}."""
    return {
        (r.source_id, r.stream, r.type, r.activity_type_id, r.minute.isoformat()): r.count
        for r in MinuteCount.objects.all()
    }


def test_events_posted_to_a_receiver_are_counted_per_type_and_minute(client, source, api_token):
    legacy_push(client, source, api_token, payload("lads_legacy_push_batch.json"))
    assert rollups.roll_up() == 1
    stored = Batch.objects.get()
    minute = stored.received_at.replace(second=0, microsecond=0).isoformat()
    expected = {(s, stream, t, type_id, minute): n for s, stream, t, type_id, n in stored.counts}
    assert table() == expected
    assert sum(table().values()) == 3


def test_rolling_up_again_counts_nothing_twice(source):
    batch(source, [[source.id, "activity", VISIT, 1, 5]])
    assert rollups.roll_up() == 1
    assert rollups.roll_up() == 0
    assert rollups.catch_up() == 0
    assert list(table().values()) == [5]


def test_batches_of_the_same_minute_add_up_and_other_minutes_get_their_own_row(source):
    batch(source, [[source.id, "activity", VISIT, 1, 5]])
    batch(source, [[source.id, "activity", VISIT, 1, 2]], received_at=T0 + timedelta(seconds=40))
    batch(source, [[source.id, "activity", VISIT, 1, 7]], received_at=T0 + timedelta(seconds=60))
    rollups.roll_up()
    assert table() == {
        (source.id, "activity", VISIT, 1, "2026-04-20T18:43:00+00:00"): 7,
        (source.id, "activity", VISIT, 1, "2026-04-20T18:44:00+00:00"): 7,
    }


def test_a_batch_that_commits_after_a_later_one_was_rolled_up_is_still_counted(source):
    # Ids are taken at insert, rows become visible at commit: a lower id can appear after a higher one.
    now = timezone.now()
    batch(source, [[source.id, "activity", VISIT, 1, 1]], id=20, received_at=now)
    assert rollups.roll_up() == 1
    batch(source, [[source.id, "activity", VISIT, 1, 10]], id=10, received_at=now)
    assert rollups.roll_up() == 1
    assert list(table().values()) == [11]


def test_events_without_an_activity_type_id_are_kept_apart_and_read_back_as_none(source):
    batch(source, [[source.id, "notification", ABORT, None, 2], [source.id, "activity", VISIT, 1, 3]])
    rollups.roll_up()
    found = rollups.counts(None, T0 - timedelta(hours=1), T0 + timedelta(hours=1), 60)
    assert sorted((c.type, c.activity_type_id, c.count) for c in found) == [(VISIT, 1, 3), (ABORT, None, 2)]


def test_counts_go_to_the_source_each_row_names(source, other_source):
    # One request can carry events of several Munchkin IDs; the batch belongs to the receiving source.
    batch(source, [[source.id, "activity", VISIT, 1, 3], [other_source.id, "activity", VISIT, 1, 4]])
    rollups.roll_up()
    since, until = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    minute = int(T0.replace(second=0).timestamp())
    assert rollups.per_source_minutes(None, since, until) == {source.id: {minute: 3}, other_source.id: {minute: 4}}
    assert [c.count for c in rollups.counts([other_source.id], since, until, 60)] == [4]
    assert rollups.counts([], since, until, 60) == []


def test_hourly_rollups_hold_the_same_counts_and_serve_whole_hour_buckets(source):
    for minute in (0, 30, 59):
        batch(source, [[source.id, "activity", VISIT, 1, 2]], received_at=T0.replace(minute=minute))
    batch(source, [[source.id, "activity", VISIT, 1, 5]], received_at=T0 + timedelta(hours=1))
    rollups.roll_up()
    assert sorted((h.hour.hour, h.count) for h in HourCount.objects.all()) == [(18, 6), (19, 5)]
    day = T0.replace(hour=0, minute=0, second=0)
    found = rollups.counts(None, day, day + timedelta(days=1), 3600)
    assert [(datetime.fromtimestamp(c.bucket, UTC).hour, c.count) for c in found] == [(18, 6), (19, 5)]
    # The same over the minute table, for a range that does not start on the hour.
    found = rollups.counts(None, day + timedelta(minutes=1), day + timedelta(days=1), 3600)
    assert [c.count for c in found] == [6, 5]


def test_counts_are_summed_into_buckets_aligned_on_the_epoch(source):
    for minute in range(12):
        batch(source, [[source.id, "activity", VISIT, 1, 1]], received_at=T0.replace(minute=minute))
    rollups.roll_up()
    found = rollups.counts(None, T0.replace(minute=0, second=0), T0.replace(minute=12, second=0), 300)
    assert [(datetime.fromtimestamp(c.bucket, UTC).minute, c.count) for c in found] == [(0, 5), (5, 5), (10, 2)]
    # The range is half open, on whole minutes.
    found = rollups.counts(None, T0.replace(minute=1, second=0), T0.replace(minute=3, second=0), 60)
    assert [c.count for c in found] == [1, 1]


def test_the_floor_passes_batches_once_proven_settled_and_forgets_their_records(source):
    first = batch(source, [[source.id, "activity", VISIT, 1, 1]])
    second = batch(source, [[source.id, "activity", VISIT, 1, 1]])
    rollups.roll_up(now=T0 + timedelta(minutes=1))  # takes the watermark: the floor stays
    assert RollupFloor.objects.get().batch_id == 0
    assert RollupFloor.objects.get().seen_through == second.id
    assert RolledUpBatch.objects.count() == 2
    rollups.roll_up(now=T0 + timedelta(minutes=1))  # no transaction was open across: proven
    assert RollupFloor.objects.get().batch_id == second.id > first.id
    assert RolledUpBatch.objects.count() == 0
    batch(source, [[source.id, "activity", VISIT, 1, 1]])
    assert rollups.roll_up() == 1
    assert list(table().values()) == [3]


def test_the_floor_never_passes_a_batch_still_to_be_counted(source):
    batches = [batch(source, [[source.id, "activity", VISIT, 1, 1]]) for _ in range(3)]
    # One batch per run: after the first run the floor may pass only the batch counted.
    rollups.roll_up(limit=1, now=T0 + timedelta(days=1))
    assert RollupFloor.objects.get().batch_id == batches[0].id
    rollups.catch_up(limit=1)
    assert list(table().values()) == [3]


def test_a_run_that_fails_leaves_nothing_behind_and_the_next_counts_once(source):
    batch(source, [[source.id, "activity", VISIT, 1, 4]])

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        rollups.roll_up()
        raise Crash
    assert table() == {}
    assert RolledUpBatch.objects.count() == 0
    assert rollups.roll_up() == 1
    assert list(table().values()) == [4]


def test_a_deleted_source_s_counts_are_skipped_not_an_error(source, other_source):
    batch(source, [[source.id, "activity", VISIT, 1, 3], [other_source.id + 1000, "activity", VISIT, 1, 4]])
    assert rollups.roll_up() == 1
    assert list(table().values()) == [3]


def test_settled_names_exactly_the_batches_it_holds(source):
    now = timezone.now()
    batch(source, [[source.id, "activity", VISIT, 1, 1]], id=5, received_at=now)
    with rollups.settled() as included:
        assert (included.through, included.pending) == (5, [])
    batch(source, [[source.id, "activity", VISIT, 1, 1]], id=9, received_at=now)
    batch(source, [[source.id, "activity", VISIT, 1, 1]], id=7, received_at=now)
    with rollups.settled(limit=1) as included:
        # Only batch 7 was taken this time: 9 waits, and everything up to 7 is held.
        assert (included.through, included.pending) == (7, [])
    with rollups.settled() as included:
        assert included.through == 9
    assert list(table().values()) == [3]


def test_old_minute_rollups_are_pruned_and_hourly_ones_kept(source):
    now = timezone.now()
    old = now - ranges.MINUTE_HISTORY - timedelta(hours=2)
    batch(source, [[source.id, "activity", VISIT, 1, 4]], received_at=old)
    batch(source, [[source.id, "activity", VISIT, 1, 1]], received_at=now)
    rollups.roll_up()
    assert rollups.prune(now=now, chunk=1) == 1
    assert [m.count for m in MinuteCount.objects.all()] == [1]
    assert sorted(h.count for h in HourCount.objects.all()) == [1, 4]
    # A range that old is read by the hour, so it still shows.
    window = ranges.custom(old.isoformat(), (old + timedelta(hours=2)).isoformat(), UTC, now)
    assert window.bucket_seconds == 3600
    assert [c.count for c in rollups.counts(None, window.since, window.until, window.bucket_seconds)] == [4]
    assert tasks.prune_rollups() == 0


def test_the_celery_task_rolls_everything_up(source):
    for _ in range(5):
        batch(source, [[source.id, "activity", VISIT, 1, 2]])
    assert tasks.roll_up() == 5
    assert list(table().values()) == [10]


def test_the_beat_schedules_the_rollups_every_few_seconds(settings):
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "dashboard.roll_up")
    assert entry["schedule"] <= 10


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_concurrent_runs_never_count_a_batch_twice(source):
    for _ in range(200):
        batch(source, [[source.id, "activity", VISIT, 1, 1]])
    barrier = threading.Barrier(4)
    errors = []

    def run():
        try:
            barrier.wait()
            while rollups.roll_up(limit=7):
                pass
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(table().values()) == [200]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="an open transaction beside a writer needs PostgreSQL")
def test_a_real_transaction_that_commits_late_is_counted(source):
    opened, release = threading.Event(), threading.Event()
    now = timezone.now()

    def slow_ingest():
        with transaction.atomic():
            batch(Source.objects.get(id=source.id), [[source.id, "activity", CLICK, 3, 10]], received_at=now)
            opened.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=slow_ingest)
    thread.start()
    opened.wait(10)
    batch(source, [[source.id, "activity", VISIT, 1, 1]], received_at=now)  # a higher id, committed first
    assert rollups.roll_up() == 1
    release.set()
    thread.join()
    assert rollups.roll_up() == 1
    assert sorted(table().values()) == [1, 10]


def floor():
    return RollupFloor.objects.get().batch_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="an open transaction beside a writer needs PostgreSQL")
def test_the_floor_never_passes_a_transaction_held_open_across_runs_and_it_is_counted_at_commit(source):
    opened, release, held = threading.Event(), threading.Event(), {}
    received = timezone.now() - timedelta(minutes=30)  # older than any grace a clock-based floor would give

    def slow_ingest():
        with transaction.atomic():
            held["batch"] = batch(Source.objects.get(id=source.id), [[source.id, "activity", CLICK, 3, 10]],
                                  received_at=received)  # fmt: skip
            opened.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=slow_ingest)
    thread.start()
    try:
        assert opened.wait(30)
        later = batch(source, [[source.id, "activity", VISIT, 1, 1]], received_at=received)
        for _ in range(3):
            rollups.roll_up()
        assert floor() < held["batch"].id < later.id
    finally:
        release.set()
        thread.join()
    assert rollups.roll_up() == 1
    rollups.roll_up()
    rollups.roll_up()
    assert floor() == later.id  # proven once the transaction ended: the floor moves on
    assert RolledUpBatch.objects.count() == 0
    assert sorted(table().values()) == [1, 10]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="a sequence gap needs PostgreSQL")
def test_the_floor_passes_the_id_of_a_transaction_that_rolled_back(source):
    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic():
        lost = batch(source, [[source.id, "activity", VISIT, 1, 5]])
        raise Abandon
    later = batch(source, [[source.id, "activity", VISIT, 1, 1]])
    assert later.id > lost.id
    rollups.roll_up()
    rollups.roll_up()
    assert floor() == later.id
    assert list(table().values()) == [1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent snapshots need PostgreSQL")
def test_concurrent_snapshots_do_not_wait_for_each_other_and_each_reads_what_it_names(source):
    batch(source, [[source.id, "activity", VISIT, 1, 1]], received_at=timezone.now())
    inside, other_done, found = threading.Event(), threading.Event(), {}
    since, until = timezone.now() - timedelta(hours=1), timezone.now() + timedelta(hours=1)

    def slow_snapshot():
        try:
            with rollups.settled() as included:
                before = sum(c.count for c in rollups.counts(None, since, until, 3600))
                inside.set()
                other_done.wait(30)
                # Another snapshot and a rollup committed meanwhile: this one still reads what it named.
                after = sum(c.count for c in rollups.counts(None, since, until, 3600))
                found["slow"] = (included, before, after)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_snapshot)
    thread.start()
    try:
        assert inside.wait(30)
        newer = batch(source, [[source.id, "activity", VISIT, 1, 2]], received_at=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '20s'")  # waiting in line fails here instead of hanging
        with rollups.settled() as included:
            total = sum(c.count for c in rollups.counts(None, since, until, 3600))
        assert (included.through, total) == (newer.id, 3)
    finally:
        other_done.set()
        thread.join()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    slow_included, before, after = found["slow"]
    assert before == after == 1
    assert slow_included.through < newer.id
    assert newer.id not in slow_included.pending
