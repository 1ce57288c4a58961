"""Erasing one lead's personal data on request (``manage.py erase_lead``, the Source admin's form).

What goes: the lead's events of that source (in chunks, each its own short transaction), and every
stored copy of the e-mail addresses they held, found in their user_email, primary attribute, details
and raw payload (attributes such as "Email Address" or a Change Data Value's new value): the apps that
keep copies (alert samples and timelines) scrub them on streams.signals.lead_erased.

What stays: aggregate counts (the per-minute rollups and the batch rows' counts say how many events of
a type arrived, not whose), and the de-duplication keys of the erased events, so that a redelivery of
one (Adobe retries for 24 hours, its journal keeps 7 days, a legacy push resumes) is recognised and
not stored again. The keys hold no personal data: on PostgreSQL they are MD5 hashes of Marketo's
event ids (streams_eventkey), on SQLite the ids themselves (streams_erasedkey, read by a trigger on
insert). An ErasureRecord says who erased what and when.
"""

import re

from django.db import connection, transaction
from django.db.models import Q

from streams.models import ErasureRecord, Event, Source
from streams.signals import lead_erased

CHUNK = 1000
ERASED = "[erased]"
EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_SCANNED = ("user_email", "primary_attribute", "details", "raw")
_KEY_COLUMNS = (("e", "event_uid"), ("a", "activity_key"))


def find_source(reference):
    """The source named by ``reference``: its id, name or Munchkin ID; None when there is none."""
    reference = str(reference).strip()
    match = Q(name=reference) | Q(munchkin_id=reference.upper())
    if reference.isdigit():
        match |= Q(pk=int(reference))
    found = list(Source.objects.filter(match)[:2])
    return found[0] if len(found) == 1 else None


def erase_lead(source, lead_id, erased_by, user=None, emails=(), chunk=CHUNK):
    """Delete the lead's events of ``source``, scrub its e-mail addresses (those found in the events,
    plus ``emails``) wherever other apps keep copies, and record it all. Returns the ErasureRecord."""
    lead_id = str(lead_id).strip()
    if not lead_id:
        raise ValueError("a lead id is required")
    found = {e.strip().lower() for e in emails if e.strip()}
    event_ids, since = set(), None
    while True:
        batch = _erase_chunk(source.pk, lead_id, chunk)
        if batch is None:
            break
        ids, earliest, addresses = batch
        event_ids |= ids
        found |= addresses
        since = earliest if since is None else min(since, earliest)
    answers = lead_erased.send(
        sender=Source, source_id=source.pk, lead_id=lead_id, event_ids=event_ids, emails=found, since=since
    )
    return ErasureRecord.objects.create(
        source=source,
        source_name=source.name,
        lead_id=lead_id,
        erased_by=erased_by,
        user=user if user is not None and user.is_authenticated else None,
        events_removed=len(event_ids),
        samples_scrubbed=sum(n or 0 for _, n in answers),
    )


def _erase_chunk(source_id, lead_id, chunk):
    """One transaction: up to ``chunk`` of the lead's events deleted (their keys kept); returns
    (ids, earliest received time, e-mail addresses found) or None when none is left."""
    with transaction.atomic():
        rows = list(
            Event.objects.filter(source_id=source_id, lead_id=lead_id).values(
                "id", "received_at", "event_uid", "activity_key", *_SCANNED
            )[:chunk]
        )
        if not rows:
            return None
        ids = {row["id"] for row in rows}
        received = [row["received_at"] for row in rows]
        # The received range lets PostgreSQL look into those partitions only.
        window = {"received_at__gte": min(received), "received_at__lte": max(received)}
        Event.objects.filter(source_id=source_id, lead_id=lead_id, id__in=ids, **window).delete()
        if connection.vendor == "sqlite":
            _keep_sqlite_keys(source_id, rows)
    return ids, min(received), {address.lower() for row in rows for address in _addresses(row)}


def _addresses(row):
    for name in _SCANNED:
        yield from EMAIL_RE.findall(row[name] or "")


def _keep_sqlite_keys(source_id, rows):
    """SQLite de-duplicates on the events table: the erased events' ids go where its trigger looks."""
    keys = [f"{prefix}{row[name]}" for row in rows for prefix, name in _KEY_COLUMNS if row[name]]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT OR IGNORE INTO streams_erasedkey (source_id, key) VALUES (%s, %s)", [(source_id, k) for k in keys]
        )


def scrub_text(text, addresses, everything=False):
    """``text`` with the given addresses (or, with ``everything``, any e-mail address) replaced."""
    if not isinstance(text, str) or "@" not in text:
        return text
    if everything:
        return EMAIL_RE.sub(ERASED, text)
    for address in sorted(addresses, key=len, reverse=True):
        text = re.sub(re.escape(address), ERASED, text, flags=re.IGNORECASE)
    return text
