"""Names a person reads for event types, and the keys that identify a type across rollups and deltas.

A type is (stream, type, activity_type_id): custom activities share one Adobe type string and differ
only by id. Custom activity names come from the events themselves (untrusted text, escaped where shown).
"""

from fluxo.ttlcache import MISSING, TTLCache
from streams import activity_types
from streams.models import Event

# activity_type_id -> the name, or "" when no stored event names that type (so it is not asked again)
_custom = TTLCache(ttl=600.0, max_size=5000)
_AUDIT_PREFIX = "com.adobe.platform.marketo.audit."
_NOTIFICATION_PREFIX = "com.adobe.platform.marketo.notification."


def type_key(stream, type_, activity_type_id):
    return f"{stream}|{type_}|{'' if activity_type_id is None else activity_type_id}"


def type_label(stream, type_, activity_type_id, custom_names=None):
    if stream == "activity":
        return _activity_label(type_, activity_type_id, custom_names or {})
    if stream == "audit":
        return "Audit: " + _words(type_.removeprefix(_AUDIT_PREFIX))
    if stream == "notification":
        return _words(type_.removeprefix(_NOTIFICATION_PREFIX)).capitalize()
    return type_ or "(no type)"


def _activity_label(type_, activity_type_id, custom_names):
    name = activity_types.NAMES.get(activity_type_id) or custom_names.get(activity_type_id)
    if name:
        return name
    if activity_type_id is not None:
        return f"Activity type {activity_type_id}"
    return "Activity: " + (_words(type_.rsplit(".", 1)[-1]) or "no type")


def _words(text):
    return text.replace(".", " ").replace("_", " ").strip()


def labels_for(triples):
    """{type_key: label} for (stream, type, activity_type_id) triples, custom names looked up once."""
    triples = set(triples)
    custom = custom_names(
        {t[2] for t in triples if t[0] == "activity" and t[2] is not None and t[2] not in activity_types.NAMES}
    )
    return {type_key(*t): type_label(*t, custom) for t in triples}


def custom_names(type_ids):
    """{id: the name the latest stored event of that activity type carries}, cached for a while."""
    found = {i: _custom.get(i, MISSING) for i in set(type_ids)}
    for type_id in [i for i, name in found.items() if name is MISSING]:
        found[type_id] = _latest_name(type_id)
        _custom.set(type_id, found[type_id])
    return {i: name for i, name in found.items() if name}


def _latest_name(type_id):
    rows = Event.objects.filter(activity_type_id=type_id).exclude(activity_type_name="").order_by("-received_at")
    return rows.values_list("activity_type_name", flat=True).first() or ""


def forget_custom_names():
    _custom.clear()
