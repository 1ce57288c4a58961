"""Reads of events by batch or by id name their received time (issue 10): the same rows in both passes,
and on PostgreSQL, by the statements' plans, only the partitions that hold them are read."""

from datetime import timedelta

import pytest
from django.db import connection  # noqa: F401 (the skipif condition names it)
from django.utils import timezone

from alerts import evaluate, lifecycle
from alerts.models import Alert, Rule
from alerts.views import samples_of
from dashboard import feed, health, payloads, rollups, tail
from dashboard.models import AuditPerson
from streams import partitions, retention
from streams.models import Batch, Event
from tests.ingest import activity, cloud_event, notification, store_at
from tests.partitioned import day, event_partitions_read, past_partitions

on_postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="partitions exist on PostgreSQL only")

HOURS = timedelta(hours=6)  # into each day, so every batch lies well inside one partition


def event_partition(offset):
    return partitions.partition_name("streams_event", day(offset))


def stored_days(source, offsets, **fields):
    """{day offset: (batch id, its events' ids)}: one legacy push of two activities received each day."""
    found = {}
    for offset in offsets:
        stored = store_at(source, day(offset) + HOURS, [activity(1, **fields), activity(2, **fields)])
        found[offset] = (
            stored.batch_id,
            sorted(Event.objects.filter(batch_id=stored.batch_id).values_list("id", flat=True)),
        )
    return found


def readers(batch_ids, source_id):
    """What the live path reads of these batches, as event ids newest first, one list per reader."""
    return {
        "feed": [e["id"] for e in feed.of_batches(batch_ids, source_id, 10)],
        "tail": [e["id"] for e in tail.of_batches(batch_ids, source_id, tail.Filter(), 10)],
        "lags": [lag[0] for lag in health.lags_of_batches(batch_ids, source_id)],
    }


def make_alert(source, samples):
    rule = Rule.objects.create(name="Any", kind="match", conditions=[])
    now = timezone.now()
    return Alert.objects.create(
        rule=rule, source=source, state=Alert.State.FIRING, severity=rule.severity, started_at=now, samples=samples
    )


@pytest.fixture
def days_of_events(source, other_source):
    """Batches of two activities received two days ago, yesterday and today, and another source's."""
    found = stored_days(source, (-2, -1, 0))
    store_at(other_source, day(-1) + HOURS, [activity(1)])
    return found


# --- The same rows (both passes) ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_live_path_reads_exactly_the_events_of_its_batches_over_several_days(source, days_of_events):
    (two, two_ids), (today, today_ids) = days_of_events[-2], days_of_events[0]
    newest_first = sorted(two_ids + today_ids, reverse=True)
    found = readers([two, today], source.id)
    assert found["feed"] == found["tail"] == newest_first  # yesterday's batch, between them, is not theirs
    assert found["lags"] == [today, today, two, two]
    assert readers([two + today + 10_000], source.id) == {"feed": [], "tail": [], "lags": []}


@pytest.mark.django_db
def test_a_delta_samples_only_its_own_source_s_events_of_the_batches(source, other_source, days_of_events):
    batch_id, ids = days_of_events[-1]
    announcement = {
        "batch": batch_id,
        "received_at": (day(-1) + HOURS).isoformat(),
        "counts": [[source.id, "activity", "", 1, 1]],
    }
    delta = payloads.build_deltas([announcement], {source.id})[source.id]
    assert [e["id"] for e in delta["events"]] == sorted(ids, reverse=True)
    assert [lag[0] for lag in delta["lags"]] == [batch_id, batch_id]


@pytest.mark.django_db
def test_an_alert_s_samples_over_several_days_link_to_each_event_s_own_source(
    source, other_source, admin_user, days_of_events
):
    theirs = store_at(other_source, day(0) + HOURS, [activity(1, lead="77")])
    events = [*evaluate.events_of([days_of_events[-2][0], theirs.batch_id], needs_raw=False)]
    samples = [lifecycle.sample(e) for e in events]
    unbounded = {**lifecycle.sample(events[0]), "received_at": None}  # as a sample may be, scrubbed
    alert = make_alert(None, [*samples, unbounded])
    rows = samples_of(alert, admin_user)
    assert [row["lead_url"] for row in rows] == [
        f"/leads/{source.id}/1001/",
        f"/leads/{source.id}/1001/",
        f"/leads/{other_source.id}/77/",
        f"/leads/{source.id}/1001/",
    ]


@pytest.mark.django_db
def test_a_quota_notification_reads_its_percent_from_the_stored_event(source):
    stored = store_at(source, day(-1) + HOURS, elements=[notification("web_services", "quota", {"percent": "85%"})])
    (event,) = evaluate.events_of([stored.batch_id], needs_raw=False)
    assert lifecycle.what_happened(event) == "Web-service quota at 85 % of the daily limit"
    event.columns["received_at"] = None  # an event known by its id alone is still found
    assert lifecycle.what_happened(event) == "Web-service quota at 85 % of the daily limit"


def audit_of(user, email):
    data = {"componentType": "Email", "componentId": 1, "eventAction": "approve", "user": user, "userId": email}
    return cloud_event("com.adobe.platform.marketo.audit.user.email", data)


@pytest.mark.django_db(transaction=True)
def test_the_rollups_learn_who_a_user_number_is_from_audit_batches_of_several_days(source):
    store_at(source, day(-2) + HOURS, elements=[audit_of(253, "ann@x.io")])
    stored_days(source, (-1,))
    store_at(source, day(0) + HOURS, elements=[audit_of(254, "bob@x.io")])
    rollups.roll_up()
    assert sorted(AuditPerson.objects.values_list("user_numeric", "user_email")) == [
        ("253", "ann@x.io"),
        ("254", "bob@x.io"),
    ]


@pytest.mark.django_db
def test_retention_removes_a_batch_row_only_once_its_events_are_gone(source):
    stored = stored_days(source, (-3, -2))
    Event.objects.filter(batch_id=stored[-3][0]).delete()
    assert retention._delete_before(["streams_batch"], day(0), 100, 1, only_empty=True) == 1
    assert list(Batch.objects.values_list("id", flat=True)) == [stored[-2][0]]


# --- Only their partitions (PostgreSQL) ---------------------------------------------------------------------


@pytest.fixture
def past_days():
    past_partitions(3)


@pytest.mark.parametrize("offsets", [(-1,), (-2, -1), (-2, 0)])
@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_the_live_path_reads_only_the_partitions_of_its_batches(source, days_of_events, offsets):
    batch_ids = [days_of_events[n][0] for n in offsets]
    for name, reader in (
        ("feed", lambda: feed.of_batches(batch_ids, source.id, 10)),
        ("tail", lambda: tail.of_batches(batch_ids, source.id, tail.Filter(), 10)),
        ("lags", lambda: health.lags_of_batches(batch_ids, source.id)),
    ):
        # The batches' received times bound the read: from the first's partition to the last's.
        expected = {event_partition(n) for n in range(offsets[0], offsets[-1] + 1)}
        assert (name, event_partitions_read(reader)) == (name, expected)


@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_a_tick_s_frames_read_only_the_partition_of_the_batch_announced(source, days_of_events):
    batch_id, _ = days_of_events[-1]
    announcement = {"batch": batch_id, "received_at": "", "counts": [[source.id, "activity", "", 1, 2]]}
    tails = {(source.id, "all"): tail.Filter()}
    read = event_partitions_read(lambda: payloads.build_frames([announcement], {source.id}, tails))
    assert read == {event_partition(-1)}


@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_the_rollups_read_only_the_partitions_of_the_audit_batches(source):
    stored_days(source, (-2, 0))
    store_at(source, day(-1) + HOURS, elements=[audit_of(253, "ann@x.io")])
    assert event_partitions_read(rollups.roll_up) == {event_partition(-1)}
    assert AuditPerson.objects.get().user_email == "ann@x.io"


@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_an_alert_page_and_a_quota_message_read_only_their_events_partitions(source, admin_user):
    stored_days(source, (-2, 0))
    quota = store_at(source, day(-1) + HOURS, elements=[notification("web_services", "quota", {"percent": 85})])
    (event,) = evaluate.events_of([quota.batch_id], needs_raw=False)
    assert event_partitions_read(lambda: lifecycle.what_happened(event)) == {event_partition(-1)}
    alert = make_alert(source, [lifecycle.sample(event)])
    assert event_partitions_read(lambda: samples_of(alert, admin_user)) == {event_partition(-1)}


@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_the_evaluator_reads_only_the_partitions_of_its_batches(source, days_of_events):
    batch_ids = [days_of_events[n][0] for n in (-2, -1)]
    read = event_partitions_read(lambda: list(evaluate.events_of(batch_ids, needs_raw=False)))
    assert read == {event_partition(-2), event_partition(-1)}


@pytest.mark.usefixtures("past_days")
@pytest.mark.django_db(transaction=True)
@on_postgresql
def test_retention_looks_for_a_batch_s_events_only_before_the_cutoff(source):
    cutoff = day(-1)
    read = event_partitions_read(
        lambda: retention._delete_before(["streams_batch_default"], cutoff, 100, 1, only_empty=True)
    )
    # The DEFAULT partition may hold any time; the day partitions from the cutoff on are not read.
    assert {event_partition(-3), event_partition(-2), "streams_event_default"} <= read
    assert not read & {event_partition(n) for n in range(-1, partitions.AHEAD + 1)}
