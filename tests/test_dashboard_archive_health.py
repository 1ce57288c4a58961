"""The archive on the overview's stream health: ok, behind or failing per source, only with a destination."""

from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import health
from streams import archive
from streams.models import ArchivedDay

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_states():
    health._archive_states.clear()
    yield
    health._archive_states.clear()


@pytest.fixture
def archiving(settings, tmp_path, source, other_source, redis_client):
    settings.FLUXO_RETENTION_DAYS = 3
    settings.FLUXO_ARCHIVE_DEST = str(tmp_path)
    return timezone.now()


def archive_row(health_rows, source):
    (row,) = [h for h in health_rows if h["source"] == source.id]
    return row["archive"]


def test_without_an_archive_destination_stream_health_says_nothing_of_archives(settings, source, redis_client):
    settings.FLUXO_ARCHIVE_DEST = None
    (row,) = health.of_sources([source], timezone.now())
    assert "archive" not in row
    assert "archive" not in health.counters_of([source.id])[source.id]


def test_every_finished_day_archived_reads_ok_with_the_last_day(archiving, source, other_source):
    archive.archive_due(now=archiving)

    found = archive_row(health.of_sources([source, other_source], archiving), source)

    yesterday = (archiving - archive.GRACE).date() - timedelta(days=1)
    assert found == {"state": "ok", "last_archived_day": yesterday.isoformat(), "backlog_days": 0, "failing_days": 0}


def test_a_day_not_archived_hours_after_it_was_due_reads_behind(archiving, source, other_source):
    archive.archive_due(now=archiving)
    oldest = ArchivedDay.objects.filter(source=source).order_by("day").first()
    oldest.delete()  # as if the hourly run had not reached it

    rows = health.of_sources([source, other_source], archiving)

    assert archive_row(rows, source)["state"] == "behind" and archive_row(rows, source)["backlog_days"] == 1
    assert archive_row(rows, other_source)["state"] == "ok"


def test_a_day_that_has_just_ended_is_not_behind_yet(archiving, source, other_source):
    just_after_midnight = archiving.replace(hour=0, minute=30)
    archive.archive_due(now=just_after_midnight - timedelta(hours=1))  # the day before yesterday and older

    found = archive_row(health.of_sources([source], just_after_midnight), source)

    assert found["state"] == "ok" and found["backlog_days"] == 1


def test_a_day_whose_archive_failed_reads_failing_live_too(archiving, source, other_source):
    archive.archive_due(now=archiving)
    day = ArchivedDay.objects.filter(source=source).order_by("day").first()
    day.checked_at, day.error = None, "S3 answered 403 (AccessDenied)"
    day.save()

    (row,) = health.of_sources([source], archiving)
    live = health.counters_of([source.id])[source.id]

    assert row["archive"]["state"] == "failing" and row["archive"]["failing_days"] == 1
    assert live["archive"] == row["archive"]  # the tick re-sends it with the counters when it changes


def test_the_overview_has_its_archive_column_only_with_a_destination(settings, client, admin_user, source):
    client.force_login(admin_user)
    settings.FLUXO_ARCHIVE_DEST = None
    assert ">Archive</th>" not in client.get("/").content.decode()
    settings.FLUXO_ARCHIVE_DEST = "/srv/fluxo-archive"
    assert ">Archive</th>" in client.get("/").content.decode()
