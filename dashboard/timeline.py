"""A lead's whole timeline from its stored activities: what happened, field changes with old and new
values, list membership, merges and deletion. Values are untrusted text: templates escape them.
"""

from dataclasses import dataclass, field

import orjson

from fluxo.pages import event_url
from streams import wire
from streams.models import Event

LIMIT = 1000
NEW_LEAD, CHANGE_DATA_VALUE, ADD_TO_LIST, REMOVE_FROM_LIST, MERGE_LEADS, DELETE_LEAD = 12, 13, 24, 25, 32, 37
_KIND = {
    NEW_LEAD: "created",
    CHANGE_DATA_VALUE: "change",
    ADD_TO_LIST: "list",
    REMOVE_FROM_LIST: "list",
    MERGE_LEADS: "merge",
    DELETE_LEAD: "delete",
}


@dataclass
class Entry:
    id: int
    occurred_at: object
    received_at: object
    label: str
    kind: str  # "activity", "created", "change", "list", "merge" or "delete"
    summary: str
    campaign: str
    attributes: list = field(default_factory=list)  # [(name, value as text)]

    @property
    def url(self):
        return event_url(self.id, self.received_at)


def of_lead(source_id, lead_id, limit=LIMIT):
    """(entries newest first, whether there were more than ``limit``)."""
    rows = list(
        Event.objects.filter(source_id=source_id, lead_id=lead_id, stream="activity")
        .order_by("-occurred_at", "-id")
        .values("id", "occurred_at", "received_at", "activity_type_id", "activity_type_name", "type",
                "primary_attribute", "campaign_name", "campaign_id", "raw")[: limit + 1]
    )  # fmt: skip
    return [entry(row) for row in rows[:limit]], len(rows) > limit


def entry(row):
    type_id = row["activity_type_id"]
    attributes = attributes_of(row["raw"])
    return Entry(
        id=row["id"],
        occurred_at=row["occurred_at"],
        received_at=row["received_at"],
        label=row["activity_type_name"] or row["type"] or "(no type)",
        kind=_KIND.get(type_id, "activity"),
        summary=summary(type_id, row["primary_attribute"], dict(attributes)),
        campaign=row["campaign_name"] or row["campaign_id"],
        attributes=attributes,
    )


def summary(type_id, primary, attributes):
    """One line a person reads for an activity."""
    if type_id == CHANGE_DATA_VALUE:
        name = attributes.get("Attribute Name") or primary
        line = f"{name}: {attributes.get('Old Value', '')} → {attributes.get('New Value', '')}"
        reason = attributes.get("Reason")
        return f"{line} ({reason})" if reason else line
    if type_id == ADD_TO_LIST:
        return f"added to list {primary}"
    if type_id == REMOVE_FROM_LIST:
        return f"removed from list {primary}"
    if type_id == MERGE_LEADS:
        merged = attributes.get("Merge IDs") or attributes.get("Merged Lead IDs") or ""
        return f"merged {merged}".strip() + (f" ({primary})" if primary else "")
    if type_id == DELETE_LEAD:
        return f"lead deleted ({primary})" if primary else "lead deleted"
    return primary


def attributes_of(raw):
    """The activity's ``attributes`` as [(name, value as text)], for either protocol's raw payload."""
    try:
        payload = wire.parse_json(raw.encode())
    except wire.Malformed:
        return []
    if not isinstance(payload, dict):
        return []
    data = wire.cloudevent_of(payload).get("data")
    found = (data if isinstance(data, dict) else payload).get("attributes")
    if not isinstance(found, list):
        return []
    return [(_text(item.get("name")), _text(item.get("value"))) for item in found if isinstance(item, dict)]


def _text(value):
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)
