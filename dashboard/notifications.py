"""The Notification stream: campaign aborts and failures, the web-service daily quota, the rest.

Types beyond the documented three arrive as ``com.adobe.platform.marketo.notification.<kind>`` and
are shown as they come. Notifications are rare, so these read the events themselves.
"""

from dashboard import feed, figures
from fluxo.pages import event_url
from streams import wire
from streams.models import Event

CAMPAIGN_KINDS = ("campaign_abort", "campaign_failure")
QUOTA_KIND = "web_services"
WARN_PERCENT, FULL_PERCENT = 80, 100
LIMIT = 200


def _in(source_ids, since, until):
    return Event.objects.filter(
        stream="notification", source_id__in=source_ids, received_at__gte=since, received_at__lt=until
    )


def campaign_problems(source_ids, since, until, limit=LIMIT):
    """Campaign aborts and failures, newest first: what, which campaign, who, when."""
    rows = _in(source_ids, since, until).filter(kind__in=CAMPAIGN_KINDS).order_by("-id")
    fields = ("id", "source_id", "kind", "campaign_id", "campaign_name", "user_email", "occurred_at", "received_at")
    found = list(rows.values(*fields)[:limit])
    names = campaign_names(source_ids, since, until, {r["campaign_id"] for r in found if not r["campaign_name"]})
    return [
        {
            "id": r["id"],
            "url": event_url(r["id"], r["received_at"]),
            "source": r["source_id"],
            "what": "Campaign aborted" if r["kind"] == "campaign_abort" else "Campaign failed",
            "campaign": _campaign(r, names),
            "user": r["user_email"],
            "occurred_at": (r["occurred_at"] or r["received_at"]).isoformat(),
        }
        for r in found
    ]


def campaign_names(source_ids, since, until, campaign_ids):
    """{(source id, campaign id): name} that lead activities of the same range carried (notifications
    name a campaign by number only). Bounded: within the range (partitions pruned), at most 200."""
    campaign_ids = {c for c in campaign_ids if c}
    if not campaign_ids:
        return {}
    rows = (
        Event.objects.filter(stream="activity", source_id__in=source_ids, received_at__gte=since, received_at__lt=until)
        .filter(campaign_id__in=campaign_ids)
        .exclude(campaign_name="")
        .values_list("source_id", "campaign_id", "campaign_name")[:200]
    )
    return {(source_id, campaign_id): name for source_id, campaign_id, name in rows}


def _campaign(row, names):
    name = row["campaign_name"] or names.get((row["source_id"], row["campaign_id"]))
    if name and row["campaign_id"]:
        return f"{name} (#{row['campaign_id']})"
    return name or (f"#{row['campaign_id']}" if row["campaign_id"] else "")


def quota_points(source_ids, since, until):
    """[(time ISO, source id, percent of the daily quota used, the quota)] oldest first."""
    rows = _in(source_ids, since, until).filter(kind=QUOTA_KIND).order_by("id")
    points = []
    for r in rows.values("source_id", "details", "occurred_at", "received_at")[:5000]:
        action = _object(r["details"])
        percent = _number(action.get("percent"))
        if percent is not None:
            points.append(((r["occurred_at"] or r["received_at"]), r["source_id"], percent, action.get("dailyQuota")))
    return points


def others(source_ids, since, until, limit=50):
    rows = _in(source_ids, since, until).exclude(kind__in=(*CAMPAIGN_KINDS, QUOTA_KIND)).order_by("-id")
    return [feed.item(row) for row in rows.values(*feed.FIELDS)[:limit]]


def _object(text):
    try:
        found = wire.parse_json(text.encode()) if text else {}
    except wire.Malformed:
        return {}
    return found if isinstance(found, dict) else {}


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%"))
        except ValueError:
            return None
    return None


def gauge_figure(percent):
    """The latest share of the daily quota used, with the 80 % and 100 % marks."""
    return {
        "data": [
            {
                "type": "indicator",
                "mode": "gauge+number",
                "value": percent if percent is not None else 0,
                "number": {"suffix": " %"},
                "gauge": {
                    "axis": {"range": [0, max(FULL_PERCENT, percent or 0)], "tickvals": [0, 20, 40, 60, 80, 100]},
                    "bar": {"color": "#2557d6"},
                    "steps": [
                        {"range": [WARN_PERCENT, FULL_PERCENT], "color": "#fde7b0"},
                        {"range": [FULL_PERCENT, max(FULL_PERCENT, percent or 0)], "color": "#f6c0bb"},
                    ],
                    "threshold": {"line": {"color": "#b3261e", "width": 3}, "value": FULL_PERCENT},
                },
            }
        ],
        # Room above and beside the arc for its tick labels ("100" was clipped at the right).
        "layout": {"height": 220, "margin": {"l": 40, "r": 50, "t": 30, "b": 10}},
    }


def quota_line_figure(points, names, zone, window):
    """Percent of the daily quota over time, one line per source, with 80 % and 100 % marks.

    The time axis spans the selected range (``window``), never what Plotly guesses from the points:
    with none it guessed Jan to Nov 2000, with one a millisecond."""
    series = {}
    for moment, source_id, percent, _quota in points:
        x, y = series.setdefault(source_id, ([], []))
        x.append(figures.local_time(moment.timestamp(), zone))
        y.append(percent)
    data = [
        {"type": "scatter", "mode": "lines+markers", "name": figures.plotly_text(names.get(s, f"#{s}")), "x": x, "y": y}
        for s, (x, y) in series.items()
    ]
    marks = [_mark(WARN_PERCENT, "#e0a100"), _mark(FULL_PERCENT, "#b3261e")]
    return {
        "data": data,
        "layout": {
            "height": 260,
            "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
            "xaxis": {"type": "date", "range": [_local(window.since, zone), _local(window.until, zone)]},
            "yaxis": {"title": {"text": "% of daily quota"}, "range": [0, max([110, *(p[2] + 10 for p in points)])]},
            "shapes": marks,
            **({} if data else {"annotations": [_NO_QUOTA]}),
        },
    }


_NO_QUOTA = {"text": "No quota notification in this range", "showarrow": False, "xref": "paper", "yref": "paper",
             "x": 0.5, "y": 0.5}  # fmt: skip


def _local(moment, zone):
    return figures.local_time(moment.timestamp(), zone)


def _mark(percent, color):
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": percent,
        "y1": percent,
        "line": {"color": color, "dash": "dash", "width": 1},
    }
