import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from streams import journal
from streams.models import AdobeRegistration, JournalCursor


class Command(BaseCommand):
    help = (
        "Bring back a registration's events from Adobe's journal (kept 7 days) after an outage: from the oldest "
        "kept position, or from a time. Stored exactly once whatever the webhook or earlier backfills brought. "
        "Interrupted, it resumes with --resume from the last committed page."
    )

    def add_arguments(self, parser):
        parser.add_argument("registration", help="the registration's name or id")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--since", help="from this time (ISO 8601, UTC if no zone), via Adobe's seek")
        start.add_argument("--resume", action="store_true", help="go on from where the last backfill stopped")
        parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, registration, since, resume, **options):
        found = _registration(registration)
        if not resume:
            journal.start_backfill(found.id, journal.seek_since(_moment(since)) if since else "oldest")
        elif not JournalCursor.objects.filter(registration=found, kind=JournalCursor.Kind.BACKFILL).exists():
            raise CommandError("no backfill to resume")
        with _Bar(enabled=not options["quiet"] and not options["json"], since=_moment(since) if since else None) as bar:
            progress = journal.run(found.id, JournalCursor.Kind.BACKFILL, on_page=bar.update)
        if options["json"]:
            self.stdout.write(json.dumps(progress.as_json()))
        else:
            self.stdout.write(_describe(progress))
        if progress.busy:
            raise CommandError("another journal job holds this registration (or its journal is stopped)", returncode=3)
        if progress.stopped or progress.error:
            raise CommandError(progress.stopped or progress.error, returncode=1)


def _registration(reference):
    query = AdobeRegistration.objects.filter(name=reference)
    if reference.isdigit():
        query = query | AdobeRegistration.objects.filter(pk=int(reference))
    found = query.first()
    if found is None:
        raise CommandError(f"no registration {reference!r}")
    return found


def _moment(text):
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _describe(progress):
    text = f"{progress.stored} events stored, {progress.duplicates} already there, {progress.pages} pages"
    if progress.malformed:
        text += f", {progress.malformed} unreadable entries stored as 'other' (flagged journal_malformed)"
    if progress.gaps:
        text += f", {progress.gaps} expired positions (gaps recorded)"
    return text + (", the journal's end reached." if progress.at_end else ".")


class _Bar:
    """Progress by the time of the newest event read, from the start (or the first event) to now."""

    def __init__(self, enabled, since):
        self.enabled, self.since = enabled, since
        self.progress = Progress(
            TextColumn("[bold]journal"), BarColumn(), TextColumn("{task.fields[counts]}"), TimeElapsedColumn()
        )
        self.task = None

    def __enter__(self):
        if self.enabled:
            self.progress.start()
            self.task = self.progress.add_task("backfill", total=1.0, counts="")
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.stop()

    def update(self, progress):
        if not self.enabled:
            return
        newest = progress.newest_event_at
        self.since = self.since or newest
        span = (timezone.now() - self.since).total_seconds() if self.since else 0
        done = min(1.0, (newest - self.since).total_seconds() / span) if newest and span > 0 else 0.0
        counts = f"{progress.stored} new, {progress.duplicates} known, {progress.pages} pages"
        self.progress.update(self.task, completed=1.0 if progress.at_end else done, counts=counts)
