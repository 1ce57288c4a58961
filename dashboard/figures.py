"""Plotly figure specs as plain dicts, built from rollup counts: testable without a browser.

Plotly reads a few HTML-like tags in names and titles (``<b>``, ``<br>``, links), so every text that
comes from an event is escaped before it goes into a spec: it shows as typed and means nothing.
"""

import html
from datetime import UTC, datetime

from dashboard.labels import type_key

OTHER_KEY = "other"
OTHER_LABEL = "Other types"
MAX_TRACES = 10
# Plotly's default palette without its grey, which is kept for "Other types". A type's colour comes from
# its key (colour_of), never from its position, so it keeps its colour across updates and pages.
OTHER_COLOUR = "#7f7f7f"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)


def colour_of(key):
    """A type's colour: FNV-1a of its key's code points, into PALETTE (static/js/overview.js: the same)."""
    if key == OTHER_KEY:
        return OTHER_COLOUR
    h = 0x811C9DC5
    for ch in key:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def plotly_text(text):
    """Untrusted text as Plotly shows it literally (its pseudo-HTML escaped)."""
    return html.escape(text, quote=False)


def local_time(epoch_seconds, zone):
    """A bucket start as the naive local time Plotly puts on a date axis (it knows no zones)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def totals_by_key(counts):
    """{type_key: events} over every bucket."""
    totals = {}
    for c in counts:
        key = type_key(c.stream, c.type, c.activity_type_id)
        totals[key] = totals.get(key, 0) + c.count
    return totals


def chart_keys(totals, max_traces=MAX_TRACES):
    """The type keys that get their own trace, busiest first; the rest go to "Other types"."""
    ranked = sorted(totals, key=lambda key: (-totals[key], key))
    if len(ranked) <= max_traces:
        return ranked
    return ranked[: max_traces - 1]


def rate_figure(counts, window, labels, zone, max_traces=MAX_TRACES):
    """Stacked bars of events per minute by type, one bar per bucket of ``window``.

    Each trace carries ``meta.key`` (its type key, or OTHER_KEY) so live deltas find their trace.
    """
    starts = window.bucket_starts()
    index = {start: i for i, start in enumerate(starts)}
    keys = chart_keys(totals_by_key(counts), max_traces)
    series = {key: [0.0] * len(starts) for key in keys}
    per_minute = window.bucket_seconds / 60
    for c in counts:
        if c.bucket not in index:
            continue
        key = type_key(c.stream, c.type, c.activity_type_id)
        if key not in series:
            key = OTHER_KEY
            series.setdefault(OTHER_KEY, [0.0] * len(starts))
        series[key][index[c.bucket]] += c.count / per_minute
    x = [local_time(start, zone) for start in starts]
    traces = [_bar(key, labels.get(key, key), x, series[key]) for key in series]
    layout = _rate_layout(window)
    if not traces:
        layout["xaxis"] = {"type": "date", "range": [x[0], local_time(int(window.until.timestamp()), zone)]}
        layout["annotations"] = [_NO_EVENTS]
    return {"data": traces, "layout": layout}


# static/js/overview.js draws live-added traces with the same text.
HOVER = "%{y:.1f} per minute · click to list them<extra>%{fullData.name}</extra>"


def _bar(key, label, x, y):
    name = OTHER_LABEL if key == OTHER_KEY else plotly_text(label)
    return {
        "type": "bar",
        "name": name,
        "x": x,
        "y": [round(v, 3) for v in y],
        "meta": {"key": key},
        "marker": {"color": colour_of(key)},
        "hovertemplate": HOVER,
    }


_NO_EVENTS = {
    "text": "No events in this range",
    "showarrow": False,
    "xref": "paper",
    "yref": "paper",
    "x": 0.5,
    "y": 0.5,
}


def _rate_layout(window):
    return {
        "barmode": "stack",
        "bargap": 0.1,
        "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
        "height": 320,
        # Autorange: live buckets appended by the browser stay in view as old ones leave.
        "xaxis": {"type": "date", "autorange": True},
        # A drag zooms the time axis only: it sets the page's range (static/js/overview.js).
        "yaxis": {"title": {"text": "events per minute"}, "rangemode": "tozero", "fixedrange": True},
        "legend": {"orientation": "h", "y": -0.2},
        "showlegend": True,
        # Keeps the view across live updates and re-syncs of one range; another range (another custom one
        # too: a zoom, or back from one) is drawn whole.
        "uirevision": _revision(window),
    }


def _revision(window):
    if window.name != "custom":
        return f"rate-{window.name}"
    return f"rate-custom-{int(window.since.timestamp())}-{int(window.until.timestamp())}"


def top_types(totals, labels, limit=10):
    """The busiest types as rows for a table: key, label (raw text: a page escapes it), events, share."""
    everything = sum(totals.values()) or 1
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [
        {"key": key, "label": labels.get(key, key), "events": n, "share": round(n / everything, 4)} for key, n in ranked
    ]


def totals_by_stream(counts):
    found = {"activity": 0, "audit": 0, "notification": 0, "other": 0}
    for c in counts:
        found[c.stream] = found.get(c.stream, 0) + c.count
    return found
