"""Search across stored events, on the server, always within a received-time range.

The range is required (the last 24 hours by default, at most MAX_SPAN), so that PostgreSQL reads only the
partitions that hold it (events are partitioned on ``received_at``). Results come newest first by id, a page
at a time, continued by a keyset cursor (``before=<id>``): never an OFFSET, never a COUNT(*).

Filters an existing index serves narrow the query first: source and stream ((source, stream, received_at)),
type ((activity_type_id, received_at), or (type)), lead ((lead_id, occurred_at)). The others (e-mail,
campaign, user, text in the primary attribute) have no index, so they are a scan, and a scan is bounded: a
page reads at most SCAN_ROWS of the rows the indexed filters leave (the newest), and on PostgreSQL each
statement at most TIMEOUT_MS (``statement_timeout``). A page that stopped at either bound says so, and its
cursor continues below what was read. No index was added for this (the ingest bench is the cost of one).
"""

import contextlib
import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import OperationalError, connection, transaction
from django.db.models import Q

from dashboard import feed, ranges
from streams.models import Event, Stream

PAGE = 100
CSV_ROWS = 5000  # what one CSV download holds at most (the read API's exports are for more)
MAX_SPAN = timedelta(days=31)
DEFAULT_RANGE = "24h"
RANGES = [name for name, span in ranges.RELATIVE.items() if span <= MAX_SPAN]
SCAN_ROWS = 50_000
TIMEOUT_MS = 3000
MAX_TEXT = 255
_INT = re.compile(r"[0-9]{1,18}")
_TYPE_ID = re.compile(r"-?[0-9]+")


class BadQuery(ValueError):
    """A search that cannot be run as asked (the page says why, with a 400)."""


@dataclass(frozen=True)
class Query:
    """What a search asks for; None: any. ``since``/``until``: received time, [since, until), UTC."""

    since: object
    until: object
    stream: str | None = None
    type: str | None = None  # an activity type id (digits) or an event type (its exact text)
    lead: str | None = None
    email: str | None = None  # a user's e-mail, or any e-mail address the payload carries (a lead's)
    campaign: str | None = None  # a campaign id, or part of its name
    user: str | None = None  # who did it (audit, notifications): an e-mail or a numeric user id
    text: str | None = None  # part of the primary attribute
    before: int | None = None  # the cursor: only events with a smaller id

    @property
    def scans(self):
        """True when a filter no index serves is asked for: the search is then a bounded scan."""
        return any((self.email, self.campaign, self.user, self.text))


@dataclass
class Result:
    rows: list = field(default_factory=list)  # values(*fields) dicts, newest first
    next_before: int | None = None  # the cursor of the next page; None: nothing older matches
    capped: bool = False  # stopped after SCAN_ROWS rows: older ones were not read (the cursor goes on)
    timed_out: bool = False  # stopped by the statement timeout: nothing shown


def parse(params, zone, now):
    """The Query that the page's parameters ask for; BadQuery for anything odd."""
    since, until = _range(params, zone, now)
    stream = _text(params, "stream")
    if stream is not None and stream not in Stream.values:
        raise BadQuery(f"stream: expected one of {', '.join(Stream.values)}")
    type_ = _text(params, "type")
    if type_ is not None and _TYPE_ID.fullmatch(type_) and not -(2**31) <= int(type_) < 2**31:
        raise BadQuery("type: out of range")
    before = _text(params, "before")
    if before is not None and not _INT.fullmatch(before):
        raise BadQuery("before: expected an event id")
    texts = {name: _text(params, name) for name in ("lead", "email", "campaign", "user", "text")}
    return Query(since, until, stream, type_, before=None if before is None else int(before), **texts)


def _range(params, zone, now):
    name = params.get("range") or DEFAULT_RANGE
    try:
        if name != "custom":
            if name not in RANGES:
                raise BadQuery(f"range: expected one of {', '.join(RANGES)} or custom")
            window = ranges.relative(name, now)
            return window.since, window.until
        since = ranges.typed_time(params.get("since", ""), zone, "since")
        until = ranges.typed_time(params.get("until", ""), zone, "until")
    except ranges.BadRange as exc:
        raise BadQuery(str(exc)) from None
    if until <= since:
        raise BadQuery("until must be after since")
    if until - since > MAX_SPAN:
        raise BadQuery(f"a search covers at most {MAX_SPAN.days} days: narrow the range")
    return since, until


def _text(params, name):
    value = (params.get(name) or "").strip()
    if "\x00" in value or len(value) > MAX_TEXT:
        raise BadQuery(f"{name}: at most {MAX_TEXT} characters, no NUL")
    return value or None


def indexed(query, source_ids):
    """The events of these sources in the query's range matching its indexed filters, newest first."""
    events = Event.objects.filter(
        source_id__in=source_ids, received_at__gte=query.since, received_at__lt=query.until
    ).order_by("-id")
    if query.stream:
        events = events.filter(stream=query.stream)
    if query.type and _TYPE_ID.fullmatch(query.type):
        events = events.filter(activity_type_id=int(query.type))
    elif query.type:
        events = events.filter(type=query.type)
    if query.lead:
        events = events.filter(lead_id=query.lead)
    if query.before is not None:
        events = events.filter(id__lt=query.before)
    return events


def scanned(query):
    """The filters no index serves, as one Q (empty: none)."""
    found = Q()
    if query.email:
        found &= Q(user_email__iexact=query.email) | Q(raw__icontains=query.email)
    if query.campaign:
        found &= Q(campaign_id=query.campaign) | Q(campaign_name__icontains=query.campaign)
    if query.user:
        found &= Q(user_email__iexact=query.user) | Q(user_numeric=query.user)
    if query.text:
        found &= Q(primary_attribute__icontains=query.text)
    return found


def run(query, source_ids, limit=None, fields=feed.FIELDS):
    """One page (``limit`` rows, PAGE by default) of what the query finds among these sources' events."""
    limit = limit or PAGE
    try:
        with transaction.atomic(), _time_limit():
            return _page(query, source_ids, limit, fields)
    except OperationalError as exc:
        if not _cancelled(exc):
            raise
        return Result(timed_out=True)


def _page(query, source_ids, limit, fields):
    events = indexed(query, source_ids)
    floor = None
    if query.scans:
        # The SCAN_ROWS-th newest row the indexed filters leave: the scan reads no further than it.
        found = list(events.values_list("id", flat=True)[SCAN_ROWS - 1 : SCAN_ROWS])
        floor = found[0] if found else None
        events = events.filter(scanned(query))
        if floor is not None:
            events = events.filter(id__gte=floor)
    rows = list(events.values(*fields)[: limit + 1])
    if len(rows) > limit:
        return Result(rows[:limit], rows[limit - 1]["id"])
    return Result(rows, floor, capped=floor is not None)


@contextlib.contextmanager
def _time_limit():
    """On PostgreSQL, TIMEOUT_MS for each statement within, in the enclosing transaction only (and set back
    after it: a request's transaction may go on)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        before = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(TIMEOUT_MS)])
    yield  # an error within rolls the transaction (or savepoint) back, and the setting with it
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])


def _cancelled(exc):
    """True for PostgreSQL's "canceling statement due to statement timeout" (SQLSTATE 57014)."""
    return getattr(exc.__cause__, "sqlstate", None) == "57014"


def item(row):
    """A result row as the search table shows it: a feed item and its campaign."""
    return {**feed.item(row), "campaign": row["campaign_name"] or row["campaign_id"]}
