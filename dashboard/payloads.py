"""What the live socket sends, built by plain functions: announcements in, ``{group: frame}`` out.

The live path in two hops: an announcement (streams.announce, alerts.announce) or the health clock
reaches dashboard.tick, which calls one of these and hands the result to dashboard.broadcast. These
send nothing and keep no state; the frames they read from the database (a bounded sample of rows,
lags) come from dashboard.feed, dashboard.tail and dashboard.health. Tested without a socket.
"""

import logging

import orjson

from dashboard import feed, health, tail
from dashboard.groups import (
    ALERTS_FRAME,
    DELTA_FRAME,
    HEALTH_FRAME,
    TAIL_FRAME,
    alerts_group,
    source_group,
    tail_group,
    unscoped_alerts_group,
)
from dashboard.labels import labels_for, type_key

log = logging.getLogger(__name__)

SAMPLE = 20
TAIL_SAMPLE = 50


def parse_announcement(data):
    """[the announced batch] or [] for a message that is not one (logged)."""
    try:
        found = orjson.loads(data)
        return [found] if isinstance(found["batch"], int) and isinstance(found["counts"], list) else []
    except (ValueError, KeyError, TypeError):
        log.warning("live tick: ignored a malformed batch announcement")
        return []


def build_frames(announcements, watched, tails):
    """{group name: frame} for one tick: the overview deltas of ``watched`` sources, and the frames
    of the lead-activity tails (``{(source_id, filter key): Filter}``) these announcements concern.
    """
    frames = {source_group(s): frame for s, frame in build_deltas(announcements, watched).items()}
    frames.update(build_tail_frames(announcements, tails))
    return frames


def build_deltas(announcements, watched):
    """{source_id: delta frame} for the watched sources that these announcements concern.

    A frame holds one count row per (batch, type), so a page can tell which of them a snapshot
    already held, and the newest SAMPLE events of those batches; ``sampled`` says there were more.
    """
    rows, batches = {}, {}
    for announcement in announcements:
        for source_id, stream, type_, type_id, n in announcement["counts"]:
            if source_id in watched:
                row = [announcement["batch"], announcement["received_at"], stream, type_, type_id, n]
                rows.setdefault(source_id, []).append(row)
                batches.setdefault(source_id, set()).add(announcement["batch"])
    labels = labels_for((r[2], r[3], r[4]) for found in rows.values() for r in found)
    return {source_id: delta(source_id, found, batches[source_id], labels) for source_id, found in rows.items()}


def delta(source_id, rows, batch_ids, labels):
    """One source's ``live.delta``: its count rows, a sample of its new events, their lags."""
    events = feed.of_batches(sorted(batch_ids), source_id, SAMPLE + 1)
    counts = []
    for batch_id, received_at, stream, type_, type_id, n in rows:
        key = type_key(stream, type_, type_id)
        counts.append(
            {"batch": batch_id, "at": received_at, "stream": stream, "key": key, "label": labels[key], "n": n}
        )
    return {
        "type": DELTA_FRAME,
        "source": source_id,
        "counts": counts,
        "events": events[:SAMPLE],
        "sampled": len(events) > SAMPLE,
        "last_event_at": max(row[1] for row in rows),
        "lags": health.lags_of_batches(sorted(batch_ids), source_id),
    }


def build_tail_frames(announcements, tails):
    """Per watched tail: the newest matching rows of the announced batches (filtered, then sampled)."""
    batches = {}
    for announcement in announcements:
        for source_id, stream, *_ in announcement["counts"]:
            batches.setdefault((source_id, stream), set()).add(announcement["batch"])
    frames = {}
    for (source_id, key), tail_filter in tails.items():
        found = batches.get((source_id, tail_filter.stream))
        if not found:
            continue
        events = tail.of_batches(sorted(found), source_id, tail_filter, TAIL_SAMPLE + 1)
        if events:
            frames[tail_group(source_id, key)] = {
                "type": TAIL_FRAME,
                "source": source_id,
                "events": events[:TAIL_SAMPLE],
                "sampled": len(events) > TAIL_SAMPLE,
            }
    return frames


def with_counters(frames, changed):
    """``frames`` with each source's changed counters (``{source id: counters}``) put in its delta,
    or in a health frame of its own when the tick has no delta for it."""
    for source_id, counters in changed.items():
        group = source_group(source_id)
        if group in frames:
            frames[group] = {**frames[group], "counters": counters}
        else:
            frames[group] = {"type": HEALTH_FRAME, "source": source_id, "counters": counters}
    return frames


def changed_counters(found, sent):
    """The sources whose counters (``{source id: counters}``) differ from those last ``sent``."""
    return {s: c for s, c in found.items() if sent.get(s) != c}


def alerts_frames(data):
    """{group: live.alerts frame} for an alert announcement: each alert to its source's groups (the
    overview's, and the alerts page's), one of no single source to the unscoped group."""
    try:
        alerts = orjson.loads(data)["alerts"]
    except (ValueError, KeyError, TypeError):
        log.warning("live tick: ignored a malformed alert announcement")
        return {}
    frames = {}
    for alert in alerts if isinstance(alerts, list) else ():
        source_id = alert.get("source_id") if isinstance(alert, dict) else None
        scoped = isinstance(source_id, int)
        for group in (source_group(source_id), alerts_group(source_id)) if scoped else (unscoped_alerts_group(),):
            frames.setdefault(group, {"type": ALERTS_FRAME, "alerts": []})["alerts"].append(alert)
    return frames
