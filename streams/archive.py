"""Archives: each source's events of each UTC day (received time) as one Parquet file, checked.

Layout, Hive style so DuckDB, Spark or Athena read the folder as one partitioned table::

    <FLUXO_ARCHIVE_DEST>/source=<source id>/date=<YYYY-MM-DD>/events.parquet

The destination is a folder or ``s3://bucket/prefix`` (boto3; FLUXO_ARCHIVE_S3_ENDPOINT_URL for an
S3-compatible store, credentials from the standard AWS_* variables). A file is written to a local
temporary file first, then moved (a folder: one rename) or uploaded (a bucket), then read back: its
footer's row count and its size must agree with what was written and with a COUNT of that source's
day in the database. Only then is the day's ArchivedDay row marked checked, and only a checked day
may be removed by retention (``safe_cutoff``). A day without events is recorded without a file.

A day is archived once it is over (plus GRACE, for a request that committed just after midnight).
A failed attempt is recorded (error, attempts) and retried by the next run; FLUXO_ARCHIVE_FAILURE_DAYS
says when retention gives up waiting for one (0, the default: never, the events are kept).
"""

import io
import logging
import os
import tempfile
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from streams import export
from streams.models import ArchivedDay, Event, Source

log = logging.getLogger(__name__)

FILENAME = "events.parquet"
GRACE = timedelta(minutes=15)
BEHIND_AFTER = timedelta(hours=2)


class ArchiveError(Exception):
    """The archive could not be written, or what was read back does not match."""


def enabled():
    return bool(settings.FLUXO_ARCHIVE_DEST)


def day_bounds(day):
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def key(source_id, day):
    return f"source={source_id}/date={day.isoformat()}/{FILENAME}"


# --- Destinations ---------------------------------------------------------------------------------------


def destination(dest=None):
    """The Folder or Bucket that ``dest`` (default FLUXO_ARCHIVE_DEST) names; ArchiveError when none."""
    dest = dest or settings.FLUXO_ARCHIVE_DEST
    if not dest:
        raise ArchiveError("no archive destination: set FLUXO_ARCHIVE_DEST or give one")
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[len("s3://") :].partition("/")
        return Bucket(bucket, prefix.strip("/"))
    return Folder(Path(dest))


class Folder:
    def __init__(self, root):
        self.root = root

    def location(self, name):
        return str(self.root / name)

    @contextmanager
    def staging(self, name):
        """A temporary path beside the final one, so publishing is one atomic rename."""
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".", suffix=".tmp")
        os.close(fd)
        try:
            yield tmp
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def publish(self, tmp, name):
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, self.root / name)

    def inspect(self, name):
        """(rows in the footer, size in bytes) of the published file."""
        from streams import parquet  # only here: pyarrow is 40 MiB of a process (see streams.parquet)

        path = self.root / name
        return parquet.footer_rows(path), path.stat().st_size


class Bucket:
    def __init__(self, bucket, prefix):
        self.bucket, self.prefix = bucket, prefix

    def _key(self, name):
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name):
        return f"s3://{self.bucket}/{self._key(name)}"

    @property
    def client(self):
        import boto3  # only when a bucket is used: boto3 takes about 0.3 s to import

        return boto3.client("s3", endpoint_url=settings.FLUXO_ARCHIVE_S3_ENDPOINT_URL)

    @contextmanager
    def staging(self, name):
        with tempfile.TemporaryDirectory(prefix="fluxo-archive-") as folder:
            yield os.path.join(folder, FILENAME)

    def publish(self, tmp, name):
        self.client.upload_file(tmp, self.bucket, self._key(name))  # multipart above 8 MB

    def inspect(self, name):
        """(rows in the footer, size) of the uploaded object, reading only its footer (range requests)."""
        from streams import parquet  # only here: pyarrow is 40 MiB of a process (see streams.parquet)

        client = self.client
        size = client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"]
        with _RangeReader(client, self.bucket, self._key(name), size) as reader:
            return parquet.footer_rows(reader), size


class _RangeReader(io.RawIOBase):
    """A seekable, read-only file over an S3 object: each read is one ranged GET."""

    def __init__(self, client, bucket, key, size):
        super().__init__()
        self.client, self.bucket, self.key, self.size, self.pos = client, bucket, key, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer):
        end = min(self.pos + len(buffer), self.size)
        if end <= self.pos:
            return 0
        answer = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.pos}-{end - 1}")
        data = answer["Body"].read()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


# --- Archiving one day ------------------------------------------------------------------------------------


def is_over(day, now=None):
    return day_bounds(day)[1] + GRACE <= (now or timezone.now())


def day_is_archived(source_id, day):
    """Whether this source's events of this day are in the archive, written and checked."""
    return ArchivedDay.objects.filter(source_id=source_id, day=day, checked_at__isnull=False, error="").exists()


def ensure_archived(source_id, day, dest=None):
    """True once the day is archived and checked (archiving it now if need be); False if that failed."""
    return day_is_archived(source_id, day) or archive_day(source_id, day, dest)


def archive_day(source_id, day, dest=None, now=None):
    """Write, publish and check one source's day; record the outcome. True when archived and checked.

    Raises ArchiveError for a day that is not over yet (its file would miss what is still to come),
    and for an archived day whose events retention has begun to remove (``_refuse_to_shrink``).
    """
    if not is_over(day, now):
        raise ArchiveError(f"{day} is not over yet (archives are written {GRACE} after the day ends)")
    target = destination(dest)
    record, _ = ArchivedDay.objects.get_or_create(source_id=source_id, day=day)
    _refuse_to_shrink(record)
    attempted = timezone.now()
    ArchivedDay.objects.filter(pk=record.pk).update(
        attempts=F("attempts") + 1, first_attempt_at=Coalesce(F("first_attempt_at"), attempted)
    )
    try:
        rows, size, location = _write_and_check(target, source_id, day)
    except (ArchiveError, OSError, _arrow_error(), *_boto_errors()) as exc:
        log.warning("archive of source %s day %s failed: %s", source_id, day, exc)
        ArchivedDay.objects.filter(pk=record.pk).update(error=str(exc)[:2000] or type(exc).__name__, checked_at=None)
        return False
    ArchivedDay.objects.filter(pk=record.pk).update(
        rows=rows, bytes=size, location=location, checked_at=timezone.now(), error=""
    )
    log.info("archived source %s day %s: %d events, %d bytes, %s", source_id, day, rows, size, location or "-")
    return True


def _refuse_to_shrink(record):
    """An archived day that retention has since thinned out is never written again with less."""
    if record.checked_at is None or not record.rows:
        return
    start, end = day_bounds(record.day)
    now = Event.objects.filter(source_id=record.source_id, received_at__gte=start, received_at__lt=end).count()
    if now < record.rows:
        raise ArchiveError(
            f"the archive of {record.day} holds {record.rows} events, the database {now} now (retention removed "
            "some): not overwritten"
        )


def _arrow_error():
    """What pyarrow raises for a file it cannot write or read (imported only when needed)."""
    from streams import parquet

    return parquet.ArrowException


def _boto_errors():
    """What boto3 raises for a store that is unreachable, refuses or fails (imported only when needed)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return Boto3Error, BotoCoreError, ClientError


def _write_and_check(target, source_id, day):
    """(rows, bytes, location) of the published, re-read file; ArchiveError on any disagreement."""
    start, end = day_bounds(day)
    events = Event.objects.filter(source_id=source_id)
    expected = events.filter(received_at__gte=start, received_at__lt=end).count()
    if expected == 0:
        return 0, 0, ""
    name = key(source_id, day)
    with target.staging(name) as tmp:
        with open(tmp, "wb") as out:
            written = export.write_parquet(export.chunks(events, start, end), out)
        size = os.path.getsize(tmp)
        target.publish(tmp, name)
    found_rows, found_size = target.inspect(name)
    if not written == found_rows == expected or found_size != size:
        raise ArchiveError(
            f"the archive disagrees: {expected} events in the database, {written} written, "
            f"{found_rows} read back; {size} bytes written, {found_size} read back"
        )
    return found_rows, found_size, target.location(name)


# --- What retention and the beat ask ---------------------------------------------------------------------


def safe_cutoff(source_id, cutoff, now=None):
    """The time before which retention may remove this source's events: ``cutoff``, or earlier.

    Every day before ``cutoff`` that still has events is archived first (now, if not yet); the start of
    the first one that could not be is the limit, unless FLUXO_ARCHIVE_FAILURE_DAYS says to give up on it.
    """
    oldest = (
        Event.objects.filter(source_id=source_id, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("received_at", flat=True)
        .first()
    )
    day = oldest.astimezone(UTC).date() if oldest else None
    while day is not None and day_bounds(day)[0] < cutoff:
        if not _archived_or_archive(source_id, day, now) and not gave_up(source_id, day, now):
            return min(cutoff, day_bounds(day)[0])
        day += timedelta(days=1)
    return cutoff


def _archived_or_archive(source_id, day, now):
    if day_is_archived(source_id, day):
        return True
    if not is_over(day, now):
        return False
    return archive_day(source_id, day, now=now)


def gave_up(source_id, day, now=None):
    """Whether retention may remove this day unarchived: its first failed attempt is FAILURE_DAYS old."""
    days = settings.FLUXO_ARCHIVE_FAILURE_DAYS
    if not days:
        return False
    since = (now or timezone.now()) - timedelta(days=days)
    given_up = ArchivedDay.objects.filter(
        source_id=source_id, day=day, checked_at__isnull=True, first_attempt_at__lte=since
    ).exists()
    if given_up:
        log.error("archive of source %s day %s failed for %d days: removed without an archive", source_id, day, days)
    return given_up


def archive_due(now=None, budget=timedelta(minutes=50)):
    """Archive every source's days from the retention window's start to the last day that is over.

    Already archived days cost nothing but one query per source; a run stops after ``budget`` and the
    next one goes on. Returns how many days were archived now.
    """
    if not enabled():
        return 0
    now = now or timezone.now()
    deadline = timezone.now() + budget
    first = (now - timedelta(days=settings.FLUXO_RETENTION_DAYS)).date()
    last = (now - GRACE).date() - timedelta(days=1)
    archived = 0
    for source_id in Source.objects.order_by("id").values_list("id", flat=True):
        done = set(
            ArchivedDay.objects.filter(source_id=source_id, day__gte=first, checked_at__isnull=False).values_list(
                "day", flat=True
            )
        )
        day = first
        while day <= last and timezone.now() < deadline:
            if day not in done:
                archived += archive_day(source_id, day, now=now)
            day += timedelta(days=1)
    return archived


def status(now=None):
    """Counts for metrics and stream health, over the retention window's finished days.

    ``backlog_days``: (source, day) pairs that are due but not archived yet, failing ones included.
    """
    now = now or timezone.now()
    first = (now - timedelta(days=settings.FLUXO_RETENTION_DAYS)).date()
    last = (now - GRACE).date() - timedelta(days=1)
    window = ArchivedDay.objects.filter(day__gte=first, day__lte=last)
    archived = window.filter(checked_at__isnull=False).count()
    due = Source.objects.count() * max(0, (last - first).days + 1)
    newest = ArchivedDay.objects.filter(checked_at__isnull=False).order_by("-day").values_list("day", flat=True)
    return {
        "enabled": enabled(),
        "archived_days": archived,
        "backlog_days": max(0, due - archived),
        "failing_days": window.filter(checked_at__isnull=True).exclude(error="").count(),
        "last_archived_day": _iso(newest.first()),
    }


def source_states(now=None):
    """{source id: its archive state} for stream health; empty when archiving is off.

    ``state``: "failing" when a day of the retention window failed its last attempt, else "behind" when
    a day is still not archived BEHIND_AFTER after it was due (the archive runs hourly, so a day that has
    just ended is not behind yet), else "ok". With ``last_archived_day``, ``backlog_days`` (due, not
    archived) and ``failing_days``. A few grouped queries, whatever the number of sources.
    """
    if not enabled():
        return {}
    now = now or timezone.now()
    first = (now - timedelta(days=settings.FLUXO_RETENTION_DAYS)).date()
    last = (now - GRACE).date() - timedelta(days=1)
    overdue_last = (now - GRACE - BEHIND_AFTER).date() - timedelta(days=1)
    checked = Q(checked_at__isnull=False)
    counts = {
        row["source_id"]: row
        for row in ArchivedDay.objects.filter(day__gte=first, day__lte=last)
        .values("source_id")
        .annotate(
            archived=Count("id", filter=checked),
            overdue_archived=Count("id", filter=checked & Q(day__lte=overdue_last)),
            failing=Count("id", filter=Q(checked_at__isnull=True) & ~Q(error="")),
        )
    }
    newest = dict(
        ArchivedDay.objects.filter(checked).values("source_id").annotate(day=Max("day")).values_list("source_id", "day")
    )
    due, overdue = max(0, (last - first).days + 1), max(0, (overdue_last - first).days + 1)
    return {
        source_id: _source_state(counts.get(source_id, {}), due, overdue, newest.get(source_id))
        for source_id in Source.objects.values_list("id", flat=True)
    }


def _source_state(counts, due, overdue, newest):
    failing = counts.get("failing", 0)
    behind = overdue - counts.get("overdue_archived", 0) > 0
    return {
        "state": "failing" if failing else "behind" if behind else "ok",
        "last_archived_day": _iso(newest),
        "backlog_days": max(0, due - counts.get("archived", 0)),
        "failing_days": failing,
    }


def missed_sources(now=None):
    """{source id: the first missed day} of sources with a day whose archive failed and is still not
    written a whole day after the day ended (alerts' "archive missed" condition); empty when off."""
    if not enabled():
        return {}
    now = now or timezone.now()
    ended_before = (now - GRACE).date() - timedelta(days=1)
    failing = ArchivedDay.objects.filter(checked_at__isnull=True, day__lt=ended_before).exclude(error="")
    found = {}
    for source_id, day in failing.order_by("day").values_list("source_id", "day"):
        found.setdefault(source_id, day)
    return found


def _iso(day):
    return day.isoformat() if isinstance(day, date) else None
