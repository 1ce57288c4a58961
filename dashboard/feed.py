"""Events as rows of a live feed: the few columns a person reads, cut to a readable length.

Every value here comes from an event and is untrusted: pages put it in with textContent only.
"""

from dashboard.labels import type_key, type_label
from fluxo.pages import event_url
from streams.models import Event

FIELDS = (
    "id",
    "source_id",
    "batch_id",
    "stream",
    "type",
    "activity_type_id",
    "activity_type_name",
    "received_at",
    "occurred_at",
    "lead_id",
    "primary_attribute",
    "campaign_id",
    "campaign_name",
    "component_type",
    "component_id",
    "action",
    "user_email",
    "user_numeric",
    "kind",
    "subtype",
)
MAX_TEXT = 200
LOGIN_FAILURE = ("login", "login failure")


def item(row):
    """One ``values(*FIELDS)`` row as a feed item."""
    type_id = row["activity_type_id"]
    names = {type_id: row["activity_type_name"]} if row["activity_type_name"] else {}
    return {
        "id": row["id"],
        "source": row["source_id"],
        "batch": row["batch_id"],
        "stream": row["stream"],
        "key": type_key(row["stream"], row["type"], type_id),
        "label": _cut(type_label(row["stream"], row["type"], type_id, names)),
        "received_at": row["received_at"].isoformat(),
        "url": event_url(row["id"], row["received_at"]),
        "occurred_at": row["occurred_at"].isoformat() if row["occurred_at"] else None,
        "lead": _cut(row["lead_id"]),
        "user": _cut(row["user_email"] or row["user_numeric"]),
        "detail": _cut(_detail(row)),
        # Login failures stand out on the audit page.
        "alert": row["stream"] == "audit" and (row["component_type"].lower(), row["action"].lower()) == LOGIN_FAILURE,
    }


def _detail(row):
    if row["stream"] == "audit":
        return " ".join(p for p in (row["component_type"], row["component_id"], row["action"]) if p)
    if row["stream"] == "notification":
        return " ".join(p for p in (row["subtype"], row["campaign_id"] and f"campaign {row['campaign_id']}") if p)
    return row["primary_attribute"] or row["campaign_name"]


def _cut(text):
    text = text or ""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def latest(source_ids, limit=50):
    """The newest stored events of these sources, newest first."""
    rows = Event.objects.filter(source_id__in=source_ids).order_by("-id").values(*FIELDS)[:limit]
    return [item(row) for row in rows]


def of_batches(batch_ids, source_id, limit):
    """A bounded sample (the newest) of what these batches stored for one source, newest first."""
    rows = Event.objects.of_batches(batch_ids).filter(source_id=source_id).order_by("-id").values(*FIELDS)
    return [item(row) for row in rows[:limit]]
