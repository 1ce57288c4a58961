"""Tails: the newest events of one stream matching a person's filters, live (lead activity by
default; the audit and notification pages tail their own streams).

Filters are applied on the server, to each tick's new rows, before any sampling: a rare type asked
for is never lost among thousands of common ones.
"""

import hashlib
import re
from dataclasses import dataclass

import orjson
from django.db.models import Q

from dashboard import feed
from streams.models import Event, Stream

LIMIT = 100
MAX_TEXT = 255
_INT = re.compile(r"-?[0-9]{1,10}")


class BadFilter(ValueError):
    """A filter that cannot be applied (a 400, or a refused socket)."""


@dataclass(frozen=True)
class Filter:
    """What a tail shows of a source's events of one stream; None: any."""

    activity_type_id: int | None = None
    lead_id: str | None = None
    campaign: str | None = None  # a campaign id or its exact name
    stream: str = Stream.ACTIVITY

    def key(self):
        """A short stable name for this filter (part of group names)."""
        canonical = orjson.dumps([self.stream, self.activity_type_id, self.lead_id, self.campaign])
        return hashlib.sha256(canonical).hexdigest()[:16]

    def apply(self, events):
        events = events.filter(stream=self.stream)
        if self.activity_type_id is not None:
            events = events.filter(activity_type_id=self.activity_type_id)
        if self.lead_id is not None:
            events = events.filter(lead_id=self.lead_id)
        if self.campaign is not None:
            events = events.filter(Q(campaign_id=self.campaign) | Q(campaign_name=self.campaign))
        return events


def parse(params):
    """The Filter that query parameters ``stream``, ``type``, ``lead`` and ``campaign`` ask for."""
    stream = params.get("stream") or Stream.ACTIVITY
    if stream not in Stream.values:
        raise BadFilter(f"stream: expected one of {', '.join(Stream.values)}")
    type_id = _text(params, "type")
    if type_id is not None and not _INT.fullmatch(type_id):
        raise BadFilter("type: expected an activity type id")
    if type_id is not None and not -(2**31) <= int(type_id) < 2**31:
        raise BadFilter("type: out of range")
    type_id = None if type_id is None else int(type_id)
    return Filter(type_id, _text(params, "lead"), _text(params, "campaign"), str(Stream(stream)))


def _text(params, name):
    value = (params.get(name) or "").strip()
    if "\x00" in value or len(value) > MAX_TEXT:
        raise BadFilter(f"{name}: at most {MAX_TEXT} characters, no NUL")
    return value or None


def latest(source_ids, tail_filter, limit=LIMIT, window=None):
    """The newest matching activities of these sources, newest first; only those received in ``window``
    (a ranges.Window) when one is given."""
    rows = tail_filter.apply(Event.objects.filter(source_id__in=source_ids)).order_by("-id")
    if window is not None:
        rows = rows.filter(received_at__gte=window.since, received_at__lt=window.until)
    return [feed.item(row) for row in rows.values(*feed.FIELDS)[:limit]]


def of_batches(batch_ids, source_id, tail_filter, limit):
    """The newest matching rows these batches stored for one source, newest first."""
    rows = tail_filter.apply(Event.objects.of_batches(batch_ids).filter(source_id=source_id)).order_by("-id")
    return [feed.item(row) for row in rows.values(*feed.FIELDS)[:limit]]
