"""Asset changes by user, from the User Audit stream: who changed which kind of asset, and how.

V1.0 events name a user by number (``user``), V2.0 by e-mail (``userId``); an event that carries
both (the hybrid V1.0 shape) tells which number is which person, so both are shown as one. What such
events told is kept (dashboard.models.AuditPerson, per source), so the match holds in any range.
Audit volume is that of people at work, so these read the events themselves, grouped in SQL.
"""

from collections import Counter
from dataclasses import dataclass

from django.db.models import Count

from dashboard import figures
from dashboard.feed import LOGIN_FAILURE
from dashboard.models import AuditPerson
from streams.models import Event

MAX_USERS = 20


@dataclass(frozen=True)
class Change:
    person: str
    component: str
    action: str
    count: int


def changes(source_ids, since, until):
    """Changes grouped by person, component type and action, in [since, until) (received time)."""
    rows = list(
        Event.objects.filter(stream="audit", source_id__in=source_ids, received_at__gte=since, received_at__lt=until)
        .values("source_id", "user_numeric", "user_email", "component_type", "action")
        .annotate(n=Count("id"))
    )
    emails = {**known_people(source_ids), **people(rows)}
    return [
        Change(
            person_of(r["user_numeric"], r["user_email"], emails, r["source_id"]),
            r["component_type"] or "?",
            r["action"],
            r["n"],
        )
        for r in rows
    ]


def known_people(source_ids):
    """{(source id, user number): e-mail} that earlier events told."""
    found = AuditPerson.objects.filter(source_id__in=source_ids).values_list("source_id", "user_numeric", "user_email")
    return {(source_id, numeric): email for source_id, numeric, email in found}


def people(rows):
    """{(source id, user number): e-mail} from the events that carry both."""
    return {
        (r.get("source_id"), r["user_numeric"]): r["user_email"] for r in rows if r["user_numeric"] and r["user_email"]
    }


def person_of(numeric, email, emails, source_id=None):
    if email:
        return email
    if (source_id, numeric) in emails:
        return emails[(source_id, numeric)]
    return f"user #{numeric}" if numeric else "(unknown user)"


def by_person(found):
    counts = Counter()
    for change in found:
        counts[change.person] += change.count
    return counts.most_common()


def by_component_and_action(found):
    counts = Counter()
    for change in found:
        counts[(change.component, change.action)] += change.count
    return [{"component": c, "action": a, "changes": n} for (c, a), n in counts.most_common()]


def is_login_failure(component, action):
    return (component.lower(), action.lower()) == LOGIN_FAILURE


def login_failures(found):
    return sum(c.count for c in found if is_login_failure(c.component, c.action))


def heatmap_figure(found, max_users=MAX_USERS):
    """Changes as a heat map of people by component type, the busiest people on top (text escaped for Plotly)."""
    people_ranked = [person for person, _ in by_person(found)[:max_users]]
    components = sorted({c.component for c in found if c.person in people_ranked})
    z = [[0] * len(components) for _ in people_ranked]
    for change in found:
        if change.person in people_ranked:
            z[people_ranked.index(change.person)][components.index(change.component)] += change.count
    layout = _heatmap_layout(len(people_ranked))
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [figures.plotly_text(c) for c in components],
                "y": [figures.plotly_text(p) for p in people_ranked],
                "z": z,
                # Plotly's "Blues" runs dark to light; reversed, more changes read darker.
                "colorscale": "Blues",
                "reversescale": True,
                "colorbar": {"title": {"text": "changes"}, "thickness": 12},
                "hovertemplate": "%{y}<br>%{x}: %{z} changes<extra></extra>",
            }
        ],
        "layout": layout,
    }


def _heatmap_layout(rows):
    layout = {
        "height": max(260, 60 + 24 * rows),
        "margin": {"l": 200, "r": 10, "t": 10, "b": 80},
        "yaxis": {"autorange": "reversed", "automargin": True},
        # Slanted component names never overlap, however many there are.
        "xaxis": {"automargin": True, "tickangle": -35},
    }
    if not rows:
        layout["annotations"] = [
            {
                "text": "No asset changes in this range",
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
            }
        ]
        layout["xaxis"]["visible"] = layout["yaxis"]["visible"] = False
    return layout
