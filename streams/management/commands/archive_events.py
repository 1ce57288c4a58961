import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from streams import archive, export
from streams.models import ArchivedDay, Source


class Command(BaseCommand):
    help = (
        "Archive one UTC day of events (received time) as one checked Parquet file per source, to "
        "--dest or FLUXO_ARCHIVE_DEST (a folder or s3://bucket/prefix). Works on SQLite too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--day", required=True, help="YYYY-MM-DD (UTC); the day must be over")
        parser.add_argument("--source", action="append", default=[], help="a source id or name (default: all)")
        parser.add_argument("--dest", help="a folder or s3://bucket/prefix (default FLUXO_ARCHIVE_DEST)")
        parser.add_argument("--force", action="store_true", help="write again a day already archived")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON line per source")

    def handle(self, *args, day, source, dest, force, as_json, **options):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise CommandError(f"--day: expected YYYY-MM-DD, not {day!r}") from None
        failed = 0
        for source_id in _source_ids(source):
            failed += not self._archive(source_id, day, dest, force, as_json)
        if failed:
            raise CommandError(f"{failed} archive(s) failed; see above")

    def _archive(self, source_id, day, dest, force, as_json):
        try:
            ok = archive.archive_day(source_id, day, dest) if force else archive.ensure_archived(source_id, day, dest)
        except archive.ArchiveError as exc:
            raise CommandError(str(exc)) from None
        record = ArchivedDay.objects.get(source_id=source_id, day=day)
        summary = {
            "source": source_id,
            "day": day.isoformat(),
            "archived": ok,
            "rows": record.rows,
            "bytes": record.bytes,
            "location": record.location,
            "error": record.error,
        }
        if as_json:
            self.stdout.write(json.dumps(summary))
        elif ok:
            where = record.location or "(no events, no file)"
            self.stdout.write(f"source {source_id} {day}: {record.rows} events, {record.bytes} bytes, {where}")
        else:
            self.stderr.write(f"source {source_id} {day}: failed: {record.error}")
        return ok


def _source_ids(values):
    if not values:
        return list(Source.objects.order_by("id").values_list("id", flat=True))
    try:
        return export.source_ids(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
