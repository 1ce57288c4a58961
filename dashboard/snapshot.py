"""The overview's state in one JSON document: first paint, and re-sync after a reconnect.

``included`` tells the page which batches the counts already hold, so that it applies exactly the
live deltas that came after: a delta row for batch b counts iff b > through or b is pending. The chart,
the totals and the health rows' per-minute counts are all read under it.
"""

from dashboard import feed, figures, health, rollups
from dashboard.labels import labels_for
from dashboard.ranges import window_document


def overview(sources, window, zone, now):
    """The overview for ``sources`` (already authorised for the viewer) over ``window``."""
    ids = [s.id for s in sources]
    with rollups.settled() as included:
        counts = rollups.counts(ids, window.since, window.until, window.bucket_seconds)
        minutes = health.rate_minutes(ids, now)
    labels = labels_for((c.stream, c.type, c.activity_type_id) for c in counts)
    totals = figures.totals_by_key(counts)
    return {
        "generated_at": now.isoformat(),
        "window": window_document(window),
        "zone": str(zone),
        "sources": [{"id": s.id, "name": s.name} for s in sources],
        "figure": figures.rate_figure(counts, window, labels, zone),
        "totals": {"events": sum(totals.values()), "by_stream": figures.totals_by_stream(counts)},
        "top_types": figures.top_types(totals, labels),
        "feed": feed.latest(ids),
        "health": health.of_sources(sources, now, minutes),
        "health_rules": health.rules(),
        "included": {"through": included.through, "pending": included.pending},
    }
