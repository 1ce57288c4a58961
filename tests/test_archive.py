"""Archives: one checked Parquet file per source and day, to a folder or a real local S3 server; retention waits."""

import io
import json
import socket
from datetime import UTC, date, datetime, timedelta

import boto3
import duckdb
import pandas
import pyarrow.parquet as pq
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.utils import timezone

from fluxo import env
from streams import archive, retention
from streams.models import ArchivedDay, Batch, Event
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 20)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def move_to(day, events, hour=12):
    """Put ``events`` on ``day`` (received time), as if they had arrived then."""
    when = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    Event.objects.filter(id__in=[event.id for event in events]).update(received_at=when)
    Batch.objects.filter(events__in=events).update(received_at=when)


@pytest.fixture
def day_of_events(client, source, api_token, other_source):
    """Acme: 3 events on DAY and 1 the day after; Acme EU: 1 on DAY."""
    legacy_push(client, source, api_token, [activity(1, primary=f"p{i}") for i in range(3)])
    move_to(DAY, Event.objects.all())
    legacy_push(client, source, api_token, [activity(1, primary="next day")])
    move_to(DAY + timedelta(days=1), Event.objects.filter(primary_attribute="next day"))
    from streams.auth import issue_api_token

    legacy_push(client, other_source, issue_api_token(other_source), [activity(2)])
    move_to(DAY, Event.objects.filter(source=other_source), hour=23)
    return Event.objects.filter(source=source, received_at__date=DAY).order_by("received_at", "id")


@pytest.fixture
def s3(monkeypatch, settings):
    """A real S3 API (moto in server mode) on a free loopback port, with a bucket named archive."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    settings.FLUXO_ARCHIVE_S3_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=settings.FLUXO_ARCHIVE_S3_ENDPOINT_URL)
    client.create_bucket(Bucket="archive")
    yield client
    server.stop()


def archive_command(*args):
    out = io.StringIO()
    call_command("archive_events", "--json", *args, stdout=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- Writing and checking ---------------------------------------------------------------------------------


def test_a_day_goes_to_a_folder_as_one_file_per_source_that_duckdb_and_pandas_read(
    tmp_path, source, other_source, day_of_events
):
    summaries = archive_command("--day", DAY.isoformat(), "--dest", str(tmp_path))
    assert [(s["source"], s["rows"], s["archived"]) for s in summaries] == [
        (source.id, 3, True),
        (other_source.id, 1, True),
    ]
    path = tmp_path / f"source={source.id}" / f"date={DAY}" / "events.parquet"
    assert summaries[0]["location"] == str(path)
    assert summaries[0]["bytes"] == path.stat().st_size
    assert pq.read_table(path).column("raw").to_pylist() == [event.raw for event in day_of_events]
    record = ArchivedDay.objects.get(source=source, day=DAY)
    assert record.checked_at is not None and record.error == "" and record.attempts == 1
    assert archive.day_is_archived(source.id, DAY)
    assert not archive.day_is_archived(source.id, DAY + timedelta(days=1))

    # Hive-style folders: the source and the date become columns.
    found = duckdb.sql(
        f"SELECT source, date, count(*) FROM read_parquet('{tmp_path}/**/*.parquet', hive_partitioning=true) "
        "GROUP BY ALL ORDER BY source"
    ).fetchall()
    assert [(int(s), str(d), n) for s, d, n in found] == [(source.id, str(DAY), 3), (other_source.id, str(DAY), 1)]
    frame = pandas.read_parquet(tmp_path)  # pyarrow's dataset reader, partitions included
    assert sorted(frame["id"]) == sorted(Event.objects.filter(received_at__date=DAY).values_list("id", flat=True))


def test_a_day_goes_to_an_s3_bucket_and_is_checked_from_the_object(s3, source, day_of_events, tmp_path):
    (summary,) = archive_command("--day", DAY.isoformat(), "--source", "Acme", "--dest", "s3://archive/fluxo/")
    key = f"fluxo/source={source.id}/date={DAY}/events.parquet"
    assert summary["location"] == f"s3://archive/{key}"
    assert summary["rows"] == 3
    stored = s3.get_object(Bucket="archive", Key=key)["Body"].read()
    assert len(stored) == summary["bytes"]
    (tmp_path / "copy.parquet").write_bytes(stored)
    assert duckdb.sql(f"SELECT count(*) FROM '{tmp_path / 'copy.parquet'}'").fetchall() == [(3,)]
    assert archive.day_is_archived(source.id, DAY)


def test_an_archive_that_fails_is_recorded_then_retried(s3, source, day_of_events):
    with pytest.raises(CommandError, match="failed"):
        archive_command("--day", DAY.isoformat(), "--source", "Acme", "--dest", "s3://missing-bucket")
    record = ArchivedDay.objects.get(source=source, day=DAY)
    assert record.checked_at is None and "NoSuchBucket" in record.error and record.attempts == 1
    assert not archive.day_is_archived(source.id, DAY)
    s3.create_bucket(Bucket="missing-bucket")
    assert archive.ensure_archived(source.id, DAY, "s3://missing-bucket")
    record.refresh_from_db()
    assert (record.attempts, record.error, record.rows) == (2, "", 3)


def test_a_day_without_events_is_archived_without_a_file_and_a_day_not_over_is_refused(tmp_path, source):
    assert archive.archive_day(source.id, DAY, str(tmp_path))
    assert ArchivedDay.objects.get(source=source, day=DAY).location == ""
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CommandError, match="not over"):
        archive_command("--day", timezone.now().date().isoformat(), "--dest", str(tmp_path))


# --- Retention waits for the archive ------------------------------------------------------------------------


def test_retention_archives_expired_days_first_and_keeps_a_day_whose_archive_failed(
    tmp_path, settings, source, other_source, day_of_events
):
    settings.FLUXO_RETENTION_DAYS = 5
    settings.FLUXO_ARCHIVE_DEST = str(tmp_path / "archive")
    (tmp_path / "archive").mkdir()
    # Acme EU's folder cannot be written (a file stands where its folder should be): its archive fails.
    (tmp_path / "archive" / f"source={other_source.id}").write_text("in the way")
    assert retention.prune(now=NOW) == 4  # Acme: DAY and the day after, archived, then deleted
    assert archive.day_is_archived(source.id, DAY) and archive.day_is_archived(source.id, DAY + timedelta(days=1))
    assert not archive.day_is_archived(other_source.id, DAY)
    assert list(Event.objects.values_list("source_id", flat=True)) == [other_source.id]  # kept, not archived
    assert ArchivedDay.objects.get(source=other_source, day=DAY).error != ""


def test_after_the_failure_days_setting_a_day_is_removed_without_its_archive(
    tmp_path, settings, source, other_source, day_of_events
):
    settings.FLUXO_RETENTION_DAYS = 5
    settings.FLUXO_ARCHIVE_DEST = str(tmp_path)
    (tmp_path / f"source={other_source.id}").write_text("in the way")
    retention.prune(now=NOW)
    assert Event.objects.filter(source=other_source).count() == 1  # the default (0): kept for ever
    settings.FLUXO_ARCHIVE_FAILURE_DAYS = 3
    ArchivedDay.objects.filter(source=other_source).update(first_attempt_at=NOW - timedelta(days=3))
    assert retention.prune(now=NOW) == 1
    assert not Event.objects.exists()


def test_with_archiving_off_retention_removes_unarchived_days(settings, source, day_of_events):
    settings.FLUXO_RETENTION_DAYS = 5
    settings.FLUXO_ARCHIVE_DEST = None
    assert retention.prune(now=NOW) == 5
    assert not ArchivedDay.objects.exists()


def test_the_beat_task_archives_every_finished_day_of_the_window_once(tmp_path, settings, source, day_of_events):
    settings.FLUXO_RETENTION_DAYS = 30
    settings.FLUXO_ARCHIVE_DEST = str(tmp_path)
    assert archive.status(now=NOW)["backlog_days"] == 60
    first = archive.archive_due(now=NOW)
    # 30 days (up to yesterday) for each of the 2 sources: 3 with events (2 for Acme, 1 for Acme EU).
    assert ArchivedDay.objects.filter(checked_at__isnull=False).count() == 60 == first
    assert ArchivedDay.objects.exclude(location="").count() == 3
    assert archive.archive_due(now=NOW) == 0
    assert archive.status(now=NOW) == {
        "enabled": True,
        "archived_days": 60,
        "backlog_days": 0,
        "failing_days": 0,
        "last_archived_day": (NOW.date() - timedelta(days=1)).isoformat(),
    }


class _LosingFolder(archive.Folder):
    """A store that keeps only part of what it is given (a truncating proxy, a full disk that lies)."""

    def publish(self, tmp, name):
        table = pq.read_table(tmp)
        pq.write_table(table.slice(0, 1), self.root / name)


def test_an_archive_that_does_not_read_back_whole_is_not_recorded_as_archived(tmp_path, source, day_of_events):
    with pytest.raises(archive.ArchiveError, match="3 events in the database, 3 written, 1 read back"):
        archive._write_and_check(_LosingFolder(tmp_path), source.id, DAY)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/srv/archive", "/srv/archive"), ("s3://bucket/prefix/", "s3://bucket/prefix"), ("s3://bucket", "s3://bucket")],
)
def test_the_destination_setting_takes_a_folder_or_an_s3_url(monkeypatch, value, expected):
    monkeypatch.setenv("FLUXO_ARCHIVE_DEST", value)
    assert env.get_archive_dest("FLUXO_ARCHIVE_DEST") == expected


@pytest.mark.parametrize("value", ["http://bucket/x", "s3:///prefix", "gs://bucket"])
def test_a_destination_that_is_neither_fails_loudly(monkeypatch, value):
    monkeypatch.setenv("FLUXO_ARCHIVE_DEST", value)
    with pytest.raises(ImproperlyConfigured):
        env.get_archive_dest("FLUXO_ARCHIVE_DEST")


def test_an_archived_day_that_retention_thinned_out_is_never_overwritten_with_less(tmp_path, source, day_of_events):
    archive_command("--day", DAY.isoformat(), "--source", "Acme", "--dest", str(tmp_path))
    path = tmp_path / f"source={source.id}" / f"date={DAY}" / "events.parquet"
    Event.objects.filter(id=day_of_events[0].id).delete()
    with pytest.raises(CommandError, match="holds 3 events, the database 2 now"):
        archive_command("--day", DAY.isoformat(), "--source", "Acme", "--dest", str(tmp_path), "--force")
    assert pq.read_metadata(path).num_rows == 3
    assert archive.day_is_archived(source.id, DAY)


# --- An alert after a missed day --------------------------------------------------------------------------


def test_a_day_still_unarchived_a_day_after_it_ended_fires_the_archive_preset(source, settings, tmp_path):
    from alerts import evaluate
    from alerts.models import Alert
    from tests.test_alerts_evaluate import from_preset

    settings.FLUXO_ARCHIVE_DEST = str(tmp_path / "archive")
    rule = from_preset("archive-missed")
    now = timezone.now()
    yesterday = (now - timedelta(days=1)).date()
    ArchivedDay.objects.create(source=source, day=yesterday, error="bucket refused", attempts=1, first_attempt_at=now)
    evaluate.tick(now=now)
    assert not Alert.objects.filter(rule=rule).exists()  # yesterday may still be archived today
    ArchivedDay.objects.create(
        source=source, day=yesterday - timedelta(days=2), error="bucket refused", attempts=3, first_attempt_at=now
    )
    evaluate.tick(now=now)
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.source_id) == (Alert.State.FIRING, source.id)
    settings.FLUXO_ARCHIVE_DEST = None  # archiving turned off: nothing is missed any more
    evaluate.tick(now=now + timedelta(hours=2))
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED
