"""Per-source stream health: is each stream arriving, how fast, how late, and what was refused.

Counts of refused requests, duplicates and 503s live in Redis (streams.announce), so they are
counted even while the database is down; rates come from the rollups, lag from the latest events.

A snapshot row carries what a page needs to keep the row live from the deltas (dashboard.tick): the
per-minute counts of the rate window (``minutes``, kept under the snapshot's ``included`` contract),
the lag sample with the batch of each value (``lags``: a delta's lags are added only for batches the
sample does not hold) and the Redis counters, which the tick re-sends whenever they change.
"""

import logging
import math
from datetime import datetime, timedelta

from django.db.models import Max

from dashboard import rollups
from dashboard.models import MinuteCount
from fluxo.ttlcache import TTLCache
from streams import announce, registration_health
from streams import archive as event_archive
from streams.models import Event, Source

log = logging.getLogger(__name__)

SILENT_AFTER = timedelta(minutes=5)
RATE_WINDOW = timedelta(minutes=15)
LAG_WINDOW = timedelta(hours=1)
LAG_SAMPLE = 200
# Archive states change at most hourly; the live tick asks every second: one grouped read a minute.
_archive_states = TTLCache(ttl=60, max_size=1)


def rules():
    """The windows a page recomputes a row's values over, as the server does (seconds)."""
    return {
        "silent_after_s": int(SILENT_AFTER.total_seconds()),
        "rate_window_s": int(RATE_WINDOW.total_seconds()),
        "lag_window_s": int(LAG_WINDOW.total_seconds()),
        "lag_sample": LAG_SAMPLE,
    }


def rate_minutes(source_ids, now):
    """What the rates are computed from: {source id: {minute start: events}} of the rate window."""
    return rollups.per_source_minutes(source_ids, now - RATE_WINDOW, now)


def of_sources(sources, now, minutes=None):
    """One health row per source (a Source queryset or list), in its order; ``minutes`` as rate_minutes
    gives them (read here when not given)."""
    sources = list(sources)
    if minutes is None:
        minutes = rate_minutes([s.id for s in sources], now)
    unavailable = announce.unavailable_counts([s.ingest_key for s in sources])
    archives = archive_states(now)
    return [_row(s, now, minutes.get(s.id, {}), unavailable.get(s.ingest_key, 0), archives) for s in sources]


def archive_states(now=None):
    """{source id: archive state (streams.archive.source_states)}, empty when no archive is configured."""
    found = _archive_states.get("all")
    if found is None:
        found = event_archive.source_states(now)
        _archive_states.set("all", found)
    return found


def _with_archive(values, source_id, archives):
    """A row's counters with its archive state, only when an archive destination is configured."""
    if archives:
        values["archive"] = archives.get(source_id)
    return values


def _row(source, now, minutes, unavailable, archives):
    raw = announce.counters(source.id)
    last = _last_event(source.id, raw)
    lags = recent_lags(source.id, now)
    values = sorted(lag for _batch, _at, lag in lags)
    return {
        "source": source.id,
        "name": source.name,
        "munchkin_id": source.munchkin_id,
        "last_event_at": last.isoformat() if last else None,
        **silence(last, now),
        "per_minute": per_minute(minutes, now),
        "minutes": sorted([minute, n] for minute, n in minutes.items()),
        "lag_p50_s": percentile(values, 0.5),
        "lag_p95_s": percentile(values, 0.95),
        "lags": lags,
        **_with_archive(counter_values(raw, unavailable), source.id, archives),
        "registrations": registrations(source, now),
    }


def registrations(source, now):
    """Where the source's Adobe registrations stand against Adobe's rules, and what to do (snapshot only)."""
    found = []
    for registration in source.adobe_registrations.all():
        health = registration_health.estimate(registration, now)
        found.append({"name": registration.name, "level": health.level, "advice": health.advice})
    return found


def per_minute(minutes, now):
    """Events a minute, as the chart shows them: ``minutes`` ({minute start (epoch s): events} of the
    rate window) over the time they span, up to ``now``.

    The span begins at the first minute with events (a source that began sending, or came back,
    inside the window is not averaged over all of it). That minute is left out once a complete minute
    follows it, since the source may have begun part-way through it. The span is at least a minute,
    so a first batch does not read as a rate. (Dividing by the whole window read 7.87 for a source
    sending 60 a minute for two minutes.) static/js/overview.js computes the same.
    """
    now_s = now.timestamp()
    active = sorted(m for m, n in minutes.items() if n and m <= now_s)
    if not active:
        return 0.0
    start = active[0] + 60 if active[0] + 60 < now_s // 60 * 60 else active[0]
    events = sum(n for m, n in minutes.items() if start <= m <= now_s)
    return round(events / max(1.0, (now_s - start) / 60), 2)


def counter_values(raw, unavailable):
    """The counters a row shows, from a source's Redis counters and its 503s."""
    return {
        "accepted": raw.get("accepted", 0),
        "duplicates": raw.get("duplicates", 0),
        # Events carrying a Munchkin ID this source does not deliver for: kept here, flagged.
        "foreign": raw.get("foreign", 0),
        "rejected": {reason: raw.get(f"rejected_{reason}", 0) for reason in announce.REJECTION_REASONS},
        "unavailable": unavailable,
    }


def counters_of(source_ids):
    """{source id: counter_values} for these sources, as Redis has them now."""
    keys = dict(Source.objects.filter(id__in=source_ids).values_list("id", "ingest_key"))
    unavailable = announce.unavailable_counts(list(keys.values()))
    archives = archive_states()
    return {
        source_id: _with_archive(
            counter_values(announce.counters(source_id), unavailable.get(key, 0)), source_id, archives
        )
        for source_id, key in keys.items()
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


def recent_lags(source_id, now):
    """[batch id, received (epoch seconds), received minus occurred (seconds)] of the source's latest
    events, newest first."""
    rows = Event.objects.filter(source_id=source_id, received_at__gte=now - LAG_WINDOW, occurred_at__isnull=False)
    return _lags(rows.order_by("-received_at", "-id"))


def lags_of_batches(batch_ids, source_id):
    """The same for what these batches stored for one source (a delta's share of the sample)."""
    rows = Event.objects.of_batches(batch_ids).filter(source_id=source_id, occurred_at__isnull=False)
    return _lags(rows.order_by("-id"))


def _lags(rows):
    found = rows.values_list("batch_id", "received_at", "occurred_at")[:LAG_SAMPLE]
    return [
        [batch_id, received.timestamp(), round((received - occurred).total_seconds(), 1)]
        for batch_id, received, occurred in found
    ]


def percentile(values, fraction):
    """The nearest-rank percentile of sorted ``values`` (None for none), rounded to 0.1 s."""
    if not values:
        return None
    rank = min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))
    return round(values[rank], 1)
