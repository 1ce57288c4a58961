"""The read API: stored events for people and programs (e.g. feeding ML scoring models).

``GET /api/v1/events`` answers one page, ``{"results": [...], "next": URL or null}``, oldest first by
event id (unique, so the order is stable), paged by keyset (``after=<id>``, never OFFSET); ``next`` is
absolute, built from the request's own host, and null on the last page. ``limit``: 1 to 1000, 100 by
default. ``GET /api/v1/events.ndjson`` streams the whole matching range as NDJSON, read in keyset chunks
so memory stays constant however long the range.

Filters, on both: ``stream``, ``source`` (id), ``activity_type_id``, ``type``, ``lead_id``, ``since`` and
``until`` (received time, ISO 8601; ``since`` inclusive, ``until`` exclusive, so windows tile; no zone
means UTC; no default window), ``after`` (an event id). An empty value is no filter; an unknown
parameter or a bad value is a 400, so a typo never silently widens a query.

Authentication: ``Authorization: Bearer <personal API token>`` (streams.api_tokens), or a logged-in
browser session for people; a presented token is always checked, never bypassed by a session. The
API is read-only (GET alone; anything else is a 405), so a session cannot be abused through CSRF.
Superusers see every source's events; everyone else those of sources shared with one of their groups
(Source.viewer_groups). The database unavailable: 503 with Retry-After, never a 500.
"""

import functools
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import orjson
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Count, DateTimeField, ExpressionWrapper, F, Min
from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from fluxo.answers import json_error
from streams import api_tokens, store, wire
from streams.models import Batch, Event, Source, Stream

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Rows per query when streaming NDJSON: large enough to amortise a round trip, small enough for memory.
CHUNK = 1000
RETRY_AFTER_SECONDS = "30"
_INT32 = 2**31
_INT64 = 2**63
_DIGITS = re.compile(r"-?[0-9]{1,19}")
# A "+hh:mm" offset typed unencoded into a URL arrives as " hh:mm": put the plus back.
_LOST_PLUS = re.compile(r"^(\S+T\S+) ([0-9]{2}(?::?[0-9]{2})?)$")

# What each result carries: every stored column (streams.store writes them), its id and batch.
FIELDS = ("id", "batch_id", "received_at", *store.COLUMNS)


class ApiError(Exception):
    """A request answered with a 4xx and a short machine-readable error."""

    def __init__(self, status, error, detail, headers=None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


def api_view(handler):
    """GET only, authenticated, scoped to what the caller may see; database failures become a 503.

    ``handler(request, visible)`` receives the Event queryset the caller is allowed to read.
    """

    @csrf_exempt  # read-only: answers anything but GET with 405 instead of a CSRF 403
    @functools.wraps(handler)
    def view(request):
        if request.method != "GET":
            return json_error(405, "method_not_allowed", "the read API answers GET only", {"Allow": "GET"})
        try:
            return handler(request, visible_events(authenticate(request)))
        except ApiError as exc:
            return json_error(exc.status, exc.error, exc.detail, exc.headers)
        except (OperationalError, InterfaceError) as exc:
            log.warning("read API 503: database %s", exc.__class__.__name__)
            return json_error(
                503, "unavailable", "the database is unavailable; retry", {"Retry-After": RETRY_AFTER_SECONDS}
            )

    return view


# --- Who is asking, and what they may see --------------------------------------------------------------


def _unauthorized(detail, token_error=None):
    challenge = 'Bearer realm="fluxo"' + (f', error="{token_error}"' if token_error else "")
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": challenge})


def authenticate(request):
    """The user behind a Bearer token, else a logged-in session; raises a 401 ApiError."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, secret = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("expected Authorization: Bearer <token>", "invalid_request")
        user = api_tokens.user_for(secret.strip())
        if user is None:
            raise _unauthorized("the token is unknown, revoked or expired", "invalid_token")
        return user
    if request.user.is_authenticated and request.user.is_active:
        return request.user
    raise _unauthorized("a personal API token is required: Authorization: Bearer <token>")


def visible_events(user):
    shared = Source.objects.live()  # a source being deleted is gone for the API too
    if user.is_superuser and not Source.objects.exclude(deleting_since=None).exists():
        # Every event: no filter, which the planner would otherwise guess from statistics that a
        # partition filled minutes ago does not have yet (0.5 % of the rows, so it sorted all of the
        # last hour rather than walk the primary key: 400 ms instead of 3 ms; BENCHMARKS.md).
        return Event.objects.all()
    if not user.is_superuser:
        shared = shared.filter(viewer_groups__user=user)
    # The ids themselves, not a subquery: with a subquery the planner cannot tell how many events it
    # keeps and, for since=, joins and sorts the whole window (257 ms for the last hour at 20M rows)
    # instead of walking the primary key from the window's floor (0.6 ms; BENCHMARKS.md).
    return Event.objects.filter(source_id__in=list(shared.order_by().values_list("id", flat=True).distinct()))


# --- Query parameters ------------------------------------------------------------------------------


def _integer(bound):
    def parse(value):
        if not _DIGITS.fullmatch(value) or not -bound <= int(value) < bound:
            raise ValueError("expected a whole number")
        return int(value)

    return parse


def _stream(value):
    if value not in Stream.values:
        raise ValueError(f"expected one of {', '.join(Stream.values)}")
    return value


def _time(value):
    try:
        parsed = datetime.fromisoformat(_LOST_PLUS.sub(r"\1+\2", value.strip()))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("expected an ISO 8601 time such as 2026-04-20T18:43:56Z") from None


def _text(value):
    return value


# parameter -> (parser, ORM lookup)
_FILTERS = {
    "stream": (_stream, "stream"),
    "source": (_integer(_INT64), "source_id"),
    "activity_type_id": (_integer(_INT32), "activity_type_id"),
    "type": (_text, "type"),
    "lead_id": (_text, "lead_id"),
    "since": (_time, "received_at__gte"),
    "until": (_time, "received_at__lt"),
    "after": (_integer(_INT64), "id__gt"),
}


def _parsed(name, parser, value):
    if "\x00" in value:
        raise ApiError(400, "bad_parameter", f"{name}: contains a NUL character")
    try:
        return parser(value)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"{name}: {exc}") from None


def filtered(events, params, allowed=()):
    """``events`` narrowed by the query's filters, oldest first; a 400 ApiError for anything odd.

    With ``since``, the query also starts from an id below which the window has no event
    (``_since_floor``; one probe statement now): the same rows, found without walking the table.
    """
    lookups = parse_filters(params, allowed)
    if "received_at__gte" in lookups:
        floor = _since_floor(lookups)
        if floor is None:
            return events.none()
        lookups["id__gte"] = floor
        events, lookups = _walk_from_floor(events, lookups)
    return events.filter(**lookups).order_by("id")


def parse_filters(params, allowed=()):
    """The query's filters as ORM lookups (parameter names mapped by _FILTERS); a 400 ApiError for anything odd."""
    unknown = sorted(set(params) - set(_FILTERS) - set(allowed))
    if unknown:
        raise ApiError(400, "unknown_parameter", f"unknown parameter(s): {', '.join(unknown)}")
    lookups = {}
    for name, (parser, lookup) in _FILTERS.items():
        value = params.get(name, "")
        if value != "":
            lookups[lookup] = _parsed(name, parser, value)
    return lookups


def _since_floor(lookups):
    """An id no event received in [since, until) lies below, or None when no event does.

    Received times grow with the ids, but only roughly (a request stamped early may commit late), and
    the planner, assuming the matching rows spread evenly over the ids, walks the primary key from the
    oldest row: 436 ms at 2M rows for the last hour (BENCHMARKS.md). So a page starts from here
    instead: when the window is long next to the way to it, the walk from the oldest row (or from
    ``after``) meets it soon enough, and the bound is just that starting point; otherwise the lowest id
    in the window, exactly, from the window's batches (``_batch_floor``).
    """
    window = _received_within(Event.objects.all(), lookups)
    first, last, low = _probe(
        window.order_by("received_at", "id").values("id")[:1],
        window.order_by("-received_at", "-id").values("id")[:1],
        Event.objects.order_by("id").values("id")[:1],
    )
    if first is None:
        return None
    start = max(low or 0, lookups.get("id__gt", -_INT64) + 1)
    # Walking the primary key costs about 3x more a row than the index-only scan of the window.
    if 3 * (first - start) <= last - first:
        return start
    floor = _batch_floor(lookups)
    if floor is None:  # a batch of the window predates Batch.first_event_id
        # "+ 0" keeps PostgreSQL from answering min(id) by walking the primary key (the slow plan again).
        floor = window.aggregate(floor=Min(F("id") + 0))["floor"]
    return first if floor is None else min(floor, first)  # None: the window was pruned meanwhile


def _batch_floor(lookups):
    """The lowest event id of the window, from its batches' first_event_id; None if one lacks it.

    Every event has its batch's received time, so the window's events are exactly its batches' and
    their lowest id is the lowest first_event_id. A batch stores up to 500 events (the legacy push)
    or 20-odd (a batched Adobe I/O delivery), so this reads that many times fewer rows than the
    events' own (received_at, id) index: 216,000 events in the last hour were 432 batches here.
    """
    found = _received_within(Batch.objects.all(), lookups).aggregate(
        floor=Min("first_event_id"), batches=Count("id"), known=Count("first_event_id")
    )
    return found["floor"] if found["batches"] == found["known"] else None


def _received_within(rows, lookups):
    rows = rows.filter(received_at__gte=lookups["received_at__gte"])
    if "received_at__lt" in lookups:
        rows = rows.filter(received_at__lt=lookups["received_at__lt"])
    return rows


def _probe(*queries):
    """The single values of one-row ``queries``, read in one statement (one round trip, one snapshot)."""
    compiled = [query.query.sql_with_params() for query in queries]
    sql = "SELECT " + ", ".join(f"({part})" for part, _params in compiled)
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for _part, params in compiled for value in params])
        return cursor.fetchone()


def _walk_from_floor(events, lookups):
    """The received-time filters on an expression PostgreSQL has no index for.

    Given the floor and the window, the planner still takes them for independent and may read the
    whole window through the (received_at, id) index and sort it (8-12 ms for the last hour at 2M
    rows) rather than walk the primary key from the floor (0.2 ms), which meets the window at once.
    """
    if connection.vendor != "postgresql":
        return events, lookups
    plain = ExpressionWrapper(F("received_at") + timedelta(0), output_field=DateTimeField())
    renamed = {key.replace("received_at__", "received_plain__"): value for key, value in lookups.items()}
    return events.alias(received_plain=plain), renamed


def _limit(params):
    value = params.get("limit", "")
    if value == "":
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_LIMIT:
        raise ApiError(400, "bad_parameter", f"limit: expected a whole number from 1 to {MAX_LIMIT}")
    return int(value)


# --- Results -----------------------------------------------------------------------------------------


def _json_value(text):
    """A stored JSON text parsed, big integers exact (wire.parse_json); text that will not parse, as is."""
    try:
        return wire.parse_json(text.encode())
    except wire.Malformed:
        return text


def result(row):
    """One ``values(*FIELDS)`` row as the API shows it: times ISO 8601, JSON texts parsed."""
    row["received_at"] = row["received_at"].isoformat()
    row["occurred_at"] = row["occurred_at"].isoformat() if row["occurred_at"] else None
    row["details"] = _json_value(row["details"]) if row["details"] else None
    row["raw"] = _json_value(row["raw"])
    return row


def dump(value):
    """JSON bytes; the slow path only for integers beyond 64 bits, which orjson refuses."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# --- The views -------------------------------------------------------------------------------------


@api_view
def events(request, visible):
    limit = _limit(request.GET)
    rows = list(filtered(visible, request.GET, allowed=("limit",)).values(*FIELDS)[: limit + 1])
    page = rows[:limit]
    following = _next_url(request, page[-1]["id"]) if len(rows) > limit else None
    response = HttpResponse(dump({"results": [result(row) for row in page], "next": following}))
    response["Content-Type"] = "application/json"
    response["Cache-Control"] = "no-store"
    return response


def _next_url(request, last_id):
    query = request.GET.copy()
    query["after"] = str(last_id)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


@api_view
def events_ndjson(request, visible):
    query = filtered(visible, request.GET)
    # The first chunk is read now, so an unavailable database is still a clean 503, not a cut stream.
    first = _chunk(query, None)
    lines = _async_lines(query, first) if isinstance(request, ASGIRequest) else _lines(query, first)
    response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
    response["Cache-Control"] = "no-store"
    return response


def _chunk(query, after):
    """(NDJSON bytes of up to CHUNK events after id ``after``, the id to continue from or None when done)."""
    if after is not None:
        query = query.filter(id__gt=after)
    rows = list(query.values(*FIELDS)[:CHUNK])
    body = b"".join(dump(result(row)) + b"\n" for row in rows)
    return body, rows[-1]["id"] if len(rows) == CHUNK else None


def _lines(query, chunk):
    body, after = chunk
    while True:
        if body:
            yield body
        if after is None:
            return
        body, after = _chunk(query, after)


async def _async_lines(query, chunk):
    # Under ASGI, Django would read a synchronous iterator whole into memory before sending a byte;
    # an asynchronous one is sent chunk by chunk. A failure mid-stream cuts the chunked transfer short,
    # which a client sees as an incomplete response, never as a complete one.
    body, after = chunk
    while True:
        if body:
            yield body
        if after is None:
            return
        body, after = await sync_to_async(_chunk)(query, after)
