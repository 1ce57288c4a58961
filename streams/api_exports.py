"""The read API's files: ``GET /api/v1/events.csv`` and ``GET /api/v1/events.parquet`` for a time range.

The same authentication, visibility, filters and errors as the rest of the read API (streams.api),
with two more rules, because a file is the whole range at once rather than one page: ``since`` and
``until`` are both required, and the range is at most MAX_RANGE long (a 400 ``bad_range`` otherwise;
ask for several ranges, which tile, or use ``manage.py export_events``).

CSV is streamed as it is read. Parquet's footer comes last and a reader needs it first, so the file
is written to a spooled temporary file (memory up to SPOOL_BYTES, then disk) and streamed from there.
"""

import tempfile
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

from streams import api, export

MAX_RANGE = timedelta(days=31)
SPOOL_BYTES = 16 * 2**20
BLOCK = 2**20


def _window(request, visible):
    """(events narrowed by every filter but the time range, since, until); a 400 ApiError for a bad range."""
    lookups = api.parse_filters(request.GET)
    since, until = lookups.pop("received_at__gte", None), lookups.pop("received_at__lt", None)
    if since is None or until is None:
        raise api.ApiError(400, "bad_range", "since and until are both required for a file")
    if not since < until <= since + MAX_RANGE:
        raise api.ApiError(400, "bad_range", f"until must be after since, at most {MAX_RANGE.days} days later")
    return visible.filter(**lookups), since, until


def _filename(since, until, fmt):
    return f"events-{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}.{fmt}"


def _file_response(body, since, until, fmt):
    response = StreamingHttpResponse(body, content_type=export.CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{_filename(since, until, fmt)}"'
    response["Cache-Control"] = "no-store"
    return response


@api.api_view
def events_csv(request, visible):
    events, since, until = _window(request, visible)
    chunks = export.chunks(events, since, until)
    # The first chunk is read now, so an unavailable database is still a clean 503, not a cut stream.
    first = next(chunks, None)
    parts = _async_csv(chunks, first) if isinstance(request, ASGIRequest) else _csv(chunks, first)
    return _file_response(parts, since, until, "csv")


def _csv(chunks, first):
    yield export.csv_header()
    if first is None:
        return
    yield export.csv_bytes(first)
    for rows in chunks:
        yield export.csv_bytes(rows)


async def _async_csv(chunks, first):
    # Under ASGI a synchronous iterator would be read whole into memory before the first byte is sent.
    # The generator runs in the view's thread (thread-sensitive), so it keeps its database connection.
    yield export.csv_header()
    rows = first
    while rows is not None:
        yield export.csv_bytes(rows)
        rows = await sync_to_async(next)(chunks, None)


@api.api_view
def events_parquet(request, visible):
    events, since, until = _window(request, visible)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by the body iterator
    try:
        export.write_parquet(export.chunks(events, since, until), spool)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    body = _async_blocks(spool) if isinstance(request, ASGIRequest) else _blocks(spool)
    response = _file_response(body, since, until, "parquet")
    response["Content-Length"] = str(spool.seek(0, 2))
    spool.seek(0)
    return response


def _blocks(spool):
    with spool:
        while block := spool.read(BLOCK):
            yield block


async def _async_blocks(spool):
    with spool:
        while block := await sync_to_async(spool.read)(BLOCK):
            yield block
