"""One stored event as its page shows it: every normalised column, its flags, the raw payload as delivered,
the batch it came in with, and the same lead's events around it.

Every read is bounded by received time where one is known, so that on PostgreSQL (events and batches are
partitioned on ``received_at``) it reads one partition, or a few, never all of them.
"""

import json
from dataclasses import dataclass
from datetime import timedelta

import orjson
from django.db.models import Q

from dashboard import feed
from dashboard.labels import labels_for, type_key
from streams import store, wire
from streams.models import Batch, Event

AROUND = 5  # events of the same lead shown before it, and after it
# How far from the event (in occurred and in received time) its lead's neighbours are looked for: the
# received-time bound is what lets PostgreSQL skip the partitions outside it.
NEAR = timedelta(days=3)

# What each flag (streams.wire, streams.store, the receivers, the journal) says about an event.
FLAG_MEANINGS = {
    "munchkin_foreign": "carried another instance's Munchkin ID, with no link to it: filed under the receiving source",
    "no_munchkin_id": "carried no Munchkin ID",
    "no_recipient_client_id": "stated no recipient client id",
    "no_type": "had no event type",
    "no_event_id": "had no eventid (not de-duplicated on it)",
    "no_activity_id": "had no marketoGUID or CloudEvent id (not de-duplicated on it)",
    "no_marketo_guid": "had no marketoGUID: its id was used instead",
    "no_activity_type_id": "had no activityTypeId",
    "unknown_activity_type": "a standard activity type id Fluxo does not know",
    "lead_id_number": "the lead id came as a JSON number",
    "time_no_zone": "its time named no zone: taken as UTC",
    "time_short_offset": "its time had a short offset such as -5:00",
    "time_epoch": "its time came as a number (epoch)",
    "time_unreadable": "its time could not be read: the occurred time is empty",
    "journal_malformed": "a journal entry whose event could not be read: kept as stream other",
}
PROTOCOLS = {"io": "Adobe I/O webhook", "legacy": "legacy activity push", "journal": "Adobe I/O journal"}
# The columns shown in the page's field table, in the store's order; raw, flags and details have their own places.
SHOWN_COLUMNS = tuple(c for c in store.COLUMNS if c not in ("raw", "flags", "details", "source_id"))


def find(event_id, source_ids, at=None):
    """The event ``event_id`` among these sources', or None.

    With ``at`` (its received time, as the pages' links carry it) the lookup reads one partition: the
    primary key is (id, received_at) on PostgreSQL. Without it, or when it does not match, the event is
    looked up by id alone: once in each partition's primary-key index.
    """
    events = Event.objects.filter(id=event_id, source_id__in=source_ids)
    if at is not None:
        found = events.filter(received_at=at).first()
        if found is not None:
            return found
    return events.first()


def pretty(text):
    """A stored JSON text indented for reading, every value exact (integers beyond 64 bits included);
    text that does not parse, as it is. The page's template escapes it."""
    try:
        value = wire.parse_json(text.encode())
    except wire.Malformed:
        return text
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # an integer beyond 64 bits, or a lone surrogate: the exact parser's values
        pass
    shown = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        shown.encode()
    except UnicodeEncodeError:  # a lone surrogate: written as the escape it arrived as
        return json.dumps(value, indent=2)
    return shown


def fields(event):
    """[(column, value as text)] of every normalised column."""
    shown = []
    for column in SHOWN_COLUMNS:
        value = getattr(event, column)
        shown.append((column, "" if value is None else value.isoformat() if hasattr(value, "isoformat") else value))
    return shown


def flags(event):
    """[(flag, what it means)]; a flag this version does not know is shown by its name."""
    return [(flag, FLAG_MEANINGS.get(flag, "")) for flag in event.flags or []]


@dataclass
class BatchView:
    batch: Batch
    types: list  # [(label, events newly stored)] of this batch, for the event's source

    @property
    def protocol(self):
        return PROTOCOLS.get(self.batch.protocol, self.batch.protocol)

    @property
    def late(self):
        return bool((self.batch.meta or {}).get("late"))

    @property
    def envelope(self):
        """[(name, text)] of what the delivery's wrapper said (the legacy push's messageId, sourceApplication,
        …) or where it came from (the journal's registration and cursor)."""
        shown = []
        for name, value in (self.batch.meta or {}).items():
            if isinstance(value, dict):
                shown.extend((f"{name} {inner}", str(v)) for inner, v in value.items())
            elif name != "late":
                shown.append((name, str(value)))
        return sorted(shown)


def batch_of(event):
    """The event's batch (it has the event's received time, so one partition is read), or None once gone."""
    batch = Batch.objects.filter(id=event.batch_id, received_at=event.received_at).first()
    if batch is None:
        return None
    rows = [row for row in batch.counts or [] if isinstance(row, list) and len(row) == 5]
    mine = [
        (stream, type_, type_id, n) for source_id, stream, type_, type_id, n in rows if source_id == event.source_id
    ]
    labels = labels_for((stream, type_, type_id) for stream, type_, type_id, _n in mine)
    types = [(labels[type_key(stream, type_, type_id)], n) for stream, type_, type_id, n in mine]
    return BatchView(batch, sorted(types, key=lambda t: -t[1]))


def neighbours(event, n=AROUND):
    """(before, after): up to ``n`` events of the same lead and source on either side of this one by occurred
    time (ties by id), as feed items, oldest first; both empty for an event without a lead.

    Looked for within NEAR of the event in occurred and in received time, on the (lead_id, occurred_at)
    index, in the partitions of that received-time range only.
    """
    moment = event.occurred_at or event.received_at
    if not event.lead_id:
        return [], []
    near = Event.objects.filter(
        source_id=event.source_id,
        lead_id=event.lead_id,
        occurred_at__gte=moment - NEAR,
        occurred_at__lte=moment + NEAR,
        received_at__gte=event.received_at - NEAR,
        received_at__lte=event.received_at + NEAR,
    ).exclude(id=event.id)
    earlier = near.filter(Q(occurred_at__lt=moment) | Q(occurred_at=moment, id__lt=event.id))
    later = near.filter(Q(occurred_at__gt=moment) | Q(occurred_at=moment, id__gt=event.id))
    before = earlier.order_by("-occurred_at", "-id").values(*feed.FIELDS)[:n]
    after = later.order_by("occurred_at", "id").values(*feed.FIELDS)[:n]
    return [feed.item(row) for row in list(before)[::-1]], [feed.item(row) for row in after]


def as_item(event):
    """The event as a feed item (its label, detail and link), as the pages' tables show it."""
    return feed.item({name: getattr(event, name) for name in feed.FIELDS})
