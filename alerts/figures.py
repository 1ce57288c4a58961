"""Plotly figure specs for the alerts pages, as plain dicts (tested without a browser).

Every text that comes from an event (group labels) is escaped for Plotly's pseudo-HTML: it shows as
typed and means nothing.
"""

import html


def plot_text(text):
    return html.escape(str(text), quote=False)


def group_label(labels):
    """A group's labels as one line ("campaign=Spring sale"), or "(the rule)" without any."""
    if not labels:
        return "(the rule)"
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def local(moment, zone):
    """An aware time as the naive local time Plotly puts on a date axis (it knows no zones)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def preview_timeline(firings, since, until, zone, resolves):
    """When a previewed rule would have fired (markers) and, for rules that resolve, how long (lines)."""
    marks_x, marks_y, marks_text = [], [], []
    spans_x, spans_y = [], []
    for firing in firings:
        if firing.fired_at is None:
            continue
        label = plot_text(group_label(firing.labels))
        marks_x.append(local(firing.fired_at, zone))
        marks_y.append(label)
        marks_text.append(f"{firing.hits or firing.value} event(s)")
        if resolves:  # still open at the end of the preview: the line runs to its end
            end = firing.resolved_at or until
            spans_x += [local(firing.fired_at, zone), local(end, zone), None]
            spans_y += [label, label, None]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "firing",
            "x": spans_x,
            "y": spans_y,
            "line": {"width": 6, "color": "#e8a29b"},
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "fired",
            "x": marks_x,
            "y": marks_y,
            "text": marks_text,
            "marker": {"size": 9, "color": "#b3261e"},
            "hovertemplate": "%{y}<br>%{x}<br>%{text}<extra></extra>",
        },
    ]
    layout = {
        "height": min(120 + 28 * len(set(marks_y)), 420),
        "margin": {"l": 160, "r": 20, "t": 10, "b": 40},
        "showlegend": False,
        "xaxis": {"type": "date", "range": [local(since, zone), local(until, zone)]},
        "yaxis": {"type": "category", "automargin": True},
    }
    return {"data": data, "layout": layout}
