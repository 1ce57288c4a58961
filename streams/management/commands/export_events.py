import json
import os
import sys
import time
from contextlib import nullcontext

from django.core.management.base import BaseCommand, CommandError

from streams import api, export
from streams.models import Event, Stream


class Command(BaseCommand):
    help = (
        "Export the events received in [--since, --until) as Parquet, NDJSON or CSV, streaming in "
        "constant memory. A progress bar on a terminal; --json prints a summary."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="received at or after (ISO 8601; no zone is UTC)")
        parser.add_argument("--until", required=True, help="received before (ISO 8601; no zone is UTC)")
        parser.add_argument("--source", action="append", default=[], help="a source id or name (repeatable)")
        parser.add_argument("--stream", action="append", default=[], choices=Stream.values, help="(repeatable)")
        parser.add_argument("--format", required=True, choices=export.FORMATS, dest="fmt")
        parser.add_argument("--output", required=True, help="a file path, or - for stdout (ndjson and csv)")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print a JSON summary when done")

    def handle(self, *args, since, until, source, stream, fmt, output, as_json, **options):
        since, until = _window(since, until)
        if output == "-" and fmt == "parquet":
            raise CommandError("Parquet cannot go to stdout (its footer is written last); give a file path")
        events = Event.objects.all()
        if source:
            events = events.filter(source_id__in=_source_ids(source))
        if stream:
            events = events.filter(stream__in=stream)
        started = time.monotonic()
        with _Output(output) as out, self._progress(events, since, until, as_json) as advance:
            rows = export.write(fmt, _counted(export.chunks(events, since, until), advance), out)
        summary = {
            "rows": rows,
            "bytes": out.written,
            "seconds": round(time.monotonic() - started, 3),
            "path": output,
            "format": fmt,
        }
        if as_json:
            (sys.stderr if output == "-" else self.stdout).write(json.dumps(summary) + "\n")
        elif output != "-":
            self.stdout.write(f"{rows} events, {out.written} bytes written to {output}")

    def _progress(self, events, since, until, quiet):
        if quiet or not sys.stderr.isatty():
            return nullcontext(lambda n: None)
        return _Bar(events.filter(received_at__gte=since, received_at__lt=until).count())


def _window(since, until):
    try:
        lookups = api.parse_filters({"since": since, "until": until})
    except api.ApiError as exc:
        raise CommandError(exc.detail.replace("since:", "--since:").replace("until:", "--until:")) from None
    if lookups["received_at__gte"] >= lookups["received_at__lt"]:
        raise CommandError("--until must be after --since")
    return lookups["received_at__gte"], lookups["received_at__lt"]


def _source_ids(values):
    try:
        return export.source_ids(values)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _counted(chunks, advance):
    for rows in chunks:
        yield rows
        advance(len(rows))


class _CountingFile:
    """A binary file that counts the bytes written through it."""

    def __init__(self, raw):
        self.raw, self.written = raw, 0

    def write(self, data):
        self.written += len(data)
        return self.raw.write(data)

    def flush(self):
        self.raw.flush()

    def tell(self):
        return self.written

    @property
    def closed(self):
        return self.raw.closed


class _Output:
    """The output file (or stdout), counted; a file left half-written by a failure is removed."""

    def __init__(self, output):
        self.output, self.raw = output, None

    def __enter__(self):
        self.raw = sys.stdout.buffer if self.output == "-" else open(self.output, "wb")
        self.counting = _CountingFile(self.raw)
        return self.counting

    def __exit__(self, *exc):
        self.raw.flush()
        if self.output != "-":
            self.raw.close()
            if exc[0] is not None:
                os.unlink(self.output)  # a cut export must not pass for a whole one


class _Bar:
    def __init__(self, total):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),  # stdout may be the export itself
        )
        self.task = self.progress.add_task("exporting", total=total)

    def __enter__(self):
        self.progress.start()
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc):
        self.progress.stop()
