"""Per-source stream health: is each stream arriving, how fast, how late, and what was refused.

Counts of refused requests, duplicates and 503s live in Redis (streams.announce), so they are
counted even while the database is down; rates come from the rollups, lag from the latest events.
"""

import logging
import math
from datetime import datetime, timedelta

from django.db.models import Max

from dashboard import rollups
from dashboard.models import MinuteCount
from streams import announce
from streams.models import Event

log = logging.getLogger(__name__)

SILENT_AFTER = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=15)
LAG_WINDOW = timedelta(hours=1)
LAG_SAMPLE = 200


def of_sources(sources, now):
    """One health row per source (a Source queryset or list), in its order."""
    sources = list(sources)
    rates = rollups.per_source([s.id for s in sources], now - RATE_WINDOW, now)
    unavailable = announce.unavailable_counts([s.ingest_key for s in sources])
    return [_row(s, now, rates.get(s.id, 0), unavailable.get(s.ingest_key, 0)) for s in sources]


def _row(source, now, recent, unavailable):
    counters = announce.counters(source.id)
    last = _last_event(source.id, counters)
    lags = lag_seconds(source.id, now)
    return {
        "source": source.id,
        "name": source.name,
        "munchkin_id": source.munchkin_id,
        "last_event_at": last.isoformat() if last else None,
        **silence(last, now),
        "per_minute": round(recent / (RATE_WINDOW.total_seconds() / 60), 2),
        "lag_p50_s": percentile(lags, 0.5),
        "lag_p95_s": percentile(lags, 0.95),
        "accepted": counters.get("accepted", 0),
        "duplicates": counters.get("duplicates", 0),
        "rejected": {reason: counters.get(f"rejected_{reason}", 0) for reason in announce.REJECTION_REASONS},
        "unavailable": unavailable,
    }


def silence(last, now):
    """{"state": "never" | "silent" | "ok", "silent_minutes": whole minutes since the last event or None}."""
    if last is None:
        return {"state": "never", "silent_minutes": None}
    minutes = int((now - last).total_seconds() // 60)
    return {"state": "silent" if now - last >= SILENT_AFTER else "ok", "silent_minutes": max(minutes, 0)}


def _last_event(source_id, counters):
    if counters.get("last_event_at"):
        return datetime.fromisoformat(counters["last_event_at"])
    # Redis was emptied: the rollups still know the minute.
    return MinuteCount.objects.filter(source_id=source_id).aggregate(last=Max("minute"))["last"]


def lag_seconds(source_id, now):
    """Received minus occurred, in seconds, over the source's latest events (sorted)."""
    rows = (
        Event.objects.filter(source_id=source_id, received_at__gte=now - LAG_WINDOW, occurred_at__isnull=False)
        .order_by("-received_at")
        .values_list("received_at", "occurred_at")[:LAG_SAMPLE]
    )
    return sorted((received - occurred).total_seconds() for received, occurred in rows)


def percentile(values, fraction):
    """The nearest-rank percentile of sorted ``values`` (None for none), rounded to 0.1 s."""
    if not values:
        return None
    rank = min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))
    return round(values[rank], 1)
