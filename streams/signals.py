"""Signals the streams app sends for what other apps keep about a source or a lead.

streams imports no other app, so the apps that hold rows about a source (rollups, alerts) or copies of
a lead's data (alert samples) listen here.
"""

from django.dispatch import Signal

# Sent by streams.deletion while a deleted source's rows are removed, with ``source_id`` and ``chunk``.
# Each receiver deletes at most ``chunk`` of its own rows of that source, in a short transaction of its
# own, and returns how many it deleted; it is called again until every receiver returns 0. So it must be
# idempotent: a killed worker calls it again from the start.
source_erasing = Signal()

# Sent by streams.erasure after a lead's events were deleted, with ``source_id``, ``lead_id``,
# ``event_ids`` (the deleted events), ``emails`` (the addresses found in them, lower case) and
# ``since`` (the earliest received time among them). Each receiver removes its stored copies of those
# addresses and returns how many stored items (samples, lines) it changed.
lead_erased = Signal()
