"""Marketo's wire formats, normalised into one internal shape.

Every envelope variant Adobe I/O Events and the legacy Marketo push have used is accepted. An event
is never refused for an unknown type, an odd timestamp or a missing optional field: the raw payload
is kept as delivered and what was odd is recorded in ``flags``. Only a body that is not JSON, or not
of the stream's shape, is refused (``Malformed``).
"""

import codecs
import hashlib
import json
import re
from datetime import UTC, datetime

import orjson

from streams import activity_types
from streams.models import Stream

MARKETO_PREFIX = "com.adobe.platform.marketo."
_STREAM_BY_PREFIX = (
    (activity_types.IO_ACTIVITY_PREFIX, Stream.ACTIVITY),
    (MARKETO_PREFIX + "audit.", Stream.AUDIT),
    (MARKETO_PREFIX + "notification.", Stream.NOTIFICATION),
)
_NOTIFICATION_PREFIX = MARKETO_PREFIX + "notification."
# A surrogate escape (\ud800 to \udfff): orjson refuses a lone one, which Java and JavaScript
# senders can write when they cut a string between the two halves of an emoji.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_INT_TEXT = re.compile(r"\s*-?[0-9]{1,10}\s*")
_SHORT_OFFSET = re.compile(r"([+-])(\d):?(\d\d)$")
# Column widths (see models.Event); longer values are cut, and the raw payload keeps them whole.
_WIDTH = {
    "munchkin_id": 64,
    "type": 255,
    "activity_type_name": 255,
    "lead_id": 64,
    "primary_attribute_id": 64,
    "campaign_id": 64,
    "campaign_name": 255,
    "program_id": 64,
    "program_name": 255,
    "component_type": 100,
    "component_id": 64,
    "action": 100,
    "user_numeric": 64,
    "user_email": 254,
    "kind": 100,
    "subtype": 100,
}
_KEY_WIDTH = 255


class Malformed(ValueError):
    """The body is not JSON, or not of the stream's shape: 400, and nothing of it is stored."""


# --- Parsing -----------------------------------------------------------------------------------------


def parse_json(body):
    """Parse raw bytes once; integers beyond 64 bits and lone surrogates are kept exact (slow path, rare)."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]  # a byte order mark: RFC 8259 lets a parser ignore it
    try:
        if _has_huge_int(body):
            return _parse_exact(body)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            if not _SURROGATE_ESCAPE.search(body):
                raise
            return _parse_exact(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Malformed("the body is not JSON") from exc


# An integer literal beyond 64 bits (20 digits, or a minus and 19) would become a float in orjson,
# losing digits. To find one, every ASCII digit becomes "0", "-" stays, anything else a space: two
# substring searches then do in linear time what a regex did 40 times slower on a 500-activity body.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= c <= 0x39 else 0x2D if c == 0x2D else 0x20 for c in range(256))


def _has_huge_int(body):
    """True when ``body`` holds 20 digits in a row, or a minus and 19."""
    digits = body.translate(_DIGITS_ONLY)
    return b"0" * 20 in digits or b"-" + b"0" * 19 in digits


def _parse_exact(body):
    # Lone surrogates are kept: dump_json writes them back as the escapes they arrived as.
    return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite(literal):
    """As orjson does: a number too large for a double is refused, not read as infinity."""
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{literal[:20]} is too large")
    return value


def dump_json(value):
    """Serialise a parsed element back to JSON text, exactly as it was parsed.

    Raises Malformed for an element nested too deeply to be written back (orjson reads 1024
    levels, Python's writer gives up near its recursion limit): refused, rather than a 500.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits or a lone surrogate (exact parser), or deep nesting
        pass
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError as exc:
        raise Malformed("the body is nested too deeply") from exc


# --- Small lenient readers --------------------------------------------------------------------------


def parse_time(value, flags):
    """A timestamp from any of the forms Marketo has sent; None (flagged) when it cannot be read."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        flags.add("time_epoch")
        seconds = value / 1000 if value > 1e11 else value
        try:
            return _plausible(datetime.fromtimestamp(seconds, UTC), flags)
        except (OverflowError, OSError, ValueError):
            flags.add("time_unreadable")
            return None
    if not isinstance(value, str):
        flags.add("time_unreadable")
        return None
    return _parse_time_text(value.strip(), flags)


def _parse_time_text(text, flags):
    # The usual form ends in Z: no offset there for the regex to find (it needs a digit last).
    zulu = text.endswith(("Z", "z"))
    fixed = text if zulu else _SHORT_OFFSET.sub(lambda m: f"{m[1]}0{m[2]}:{m[3]}", text)
    if fixed != text:
        flags.add("time_short_offset")
    try:
        parsed = datetime.fromisoformat(fixed)
    except ValueError:
        flags.add("time_unreadable")
        return None
    if parsed.tzinfo is None:
        flags.add("time_no_zone")  # Adobe's audit "2024-07-11 13:20:42.755" form: taken as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return _plausible(parsed, flags)


def _plausible(moment, flags):
    """Years 1970 to 9998, whichever form the time came in: anything else is a misread (and the
    year 9999 overflows when shown in a zone east of UTC)."""
    if 1970 <= moment.year <= 9998:
        return moment
    flags.add("time_unreadable")
    return None


def text(value, column=None):
    """A column value from anything JSON holds: strings kept, numbers as text, NULs removed."""
    if value.__class__ is not str:  # most values are str: one test instead of four (JSON has no subclasses)
        if value is None or isinstance(value, (dict, list)):
            return ""
        value = _scalar_text(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii() and _LONE_SURROGATE.search(value):
        value = _LONE_SURROGATE.sub("\ufffd", value)  # not Unicode: no database would store it
    if column is not None and len(value) > _WIDTH[column]:
        value = value[: _WIDTH[column]]
    return value


def _scalar_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def key(value):
    """A de-duplication key from an outside id (an opaque string; long ones are hashed, not cut)."""
    value = text(value)
    if not value:
        return None
    if len(value) > _KEY_WIDTH:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return value


def as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -(2**31) <= value < 2**31 else None
    if isinstance(value, float) and value.is_integer():
        return as_int(int(value))
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if isinstance(value, str) and _INT_TEXT.fullmatch(value):
        return as_int(int(value))
    return None


def stream_of(event_type):
    for prefix, stream in _STREAM_BY_PREFIX:
        if event_type.startswith(prefix):
            return stream
    return Stream.OTHER


def _dict(value):
    return value if isinstance(value, dict) else {}


def _first(mapping, *names):
    for name in names:
        value = mapping.get(name)
        if value is not None and value != "":
            return value
    return None


# --- Adobe I/O Events -------------------------------------------------------------------------------


def io_elements(payload):
    """The events of an I/O delivery: one object (single mode) or an array of objects (batch mode)."""
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and all(isinstance(item, dict) for item in payload):
        return payload
    raise Malformed("an Adobe I/O delivery is a JSON object or an array of objects")


def is_validation_post(payload):
    """Adobe's asynchronous challenge: {"validationUrl": …} and nothing of a CloudEvent."""
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("validationUrl"), str)
        and not {"type", "data", "event", "eventid", "event_id"} & payload.keys()
    )


RECIPIENT_NAMES = ("recipientclientid", "recipient_client_id")


def recipients_of(element):
    """Every recipient client id an element states, as delivered (any JSON value), in each spelling and
    at each place one can stand: the top level, under ``event``, and in the CloudEvent under ``event.body``.
    """
    places = [element]
    wrapper = element.get("event")
    if isinstance(wrapper, dict):
        places.append(wrapper)
        if isinstance(wrapper.get("body"), dict):
            places.append(wrapper["body"])
    return [place[name] for place in places for name in RECIPIENT_NAMES if name in place]


def cloudevent_of(element):
    """The CloudEvent inside any envelope: flat (LADS, Observability), event.body, or event (V1.0)."""
    wrapper = element.get("event")
    if isinstance(wrapper, dict):
        body = wrapper.get("body")
        return body if isinstance(body, dict) else wrapper
    return element


def normalise_io(element):
    """One I/O element as a row of normalised columns (source not yet resolved)."""
    flags = set()
    inner = cloudevent_of(element)
    event_type = inner.get("type")
    if not isinstance(event_type, str) or not event_type:
        flags.add("no_type")
        event_type = ""
    stream = stream_of(event_type)
    data = _dict(inner.get("data"))
    row = _row(stream, event_type, data.get("munchkinId"), flags)
    row["event_uid"] = key(_first(element, "eventid", "event_id"))
    if row["event_uid"] is None:
        flags.add("no_event_id")
    row["occurred_at"] = parse_time(_first(inner, "time"), flags)
    _fill[stream](row, inner, data, flags)
    return _finish(row, element, flags)


def _activity_from_io(row, inner, data, flags):
    _activity_columns(row, data, flags)
    if isinstance(data.get("leadId"), (int, float)) and not isinstance(data.get("leadId"), bool):
        flags.add("lead_id_number")
    if data.get("activityDate") is not None:
        row["occurred_at"] = parse_time(data.get("activityDate"), flags)
    row["activity_key"] = _activity_key(row["munchkin_id"], inner.get("id"), flags)


def _audit_from_io(row, inner, data, flags):
    row["component_type"] = text(data.get("componentType"), "component_type")
    row["component_id"] = text(data.get("componentId"), "component_id")
    action = data.get("eventAction")
    row["action"] = text(action if not isinstance(action, (dict, list)) else dump_json(action), "action")
    row["user_numeric"] = text(data.get("user"), "user_numeric")
    row["user_email"] = text(data.get("userId"), "user_email")


def _notification_from_io(row, inner, data, flags):
    action = data.get("eventAction")
    row["kind"] = text(row["type"][len(_NOTIFICATION_PREFIX) :], "kind")
    row["subtype"] = text(data.get("subType"), "subtype")
    row["component_type"] = text(data.get("componentType"), "component_type")
    row["details"] = dump_json(action) if action is not None else ""
    action = _dict(action)
    row["campaign_id"] = text(action.get("campaignId"), "campaign_id")
    row["user_email"] = text(action.get("userId"), "user_email")


def _other_from_io(row, inner, data, flags):
    pass


_fill = {
    Stream.ACTIVITY: _activity_from_io,
    Stream.AUDIT: _audit_from_io,
    Stream.NOTIFICATION: _notification_from_io,
    Stream.OTHER: _other_from_io,
}


# --- The legacy Marketo activity push -----------------------------------------------------------------


def legacy_activities(payload):
    """The activities of a legacy push; any count, 0 included."""
    if not isinstance(payload, dict) or not isinstance(payload.get("activities"), list):
        raise Malformed("a Marketo activity push is an object with an activities array")
    activities = payload["activities"]
    if not all(isinstance(item, dict) for item in activities):
        raise Malformed("every element of activities must be an object")
    return activities


def legacy_envelope(payload):
    """What the push wrapper carries besides its activities (kept on the batch row)."""
    return {
        name: text(payload.get(name))[:255]
        for name in ("sourceApplication", "munchkinId", "messageId", "messageCreatedDate")
        if payload.get(name) is not None
    }


def normalise_legacy(activity, munchkin_id):
    """One legacy activity as a row of normalised columns (source not yet resolved).

    The same columns and flags as ``_row`` + ``_activity_columns`` give an I/O activity, built as one
    dict with each value computed once: this runs 500 times a push and was its largest Python cost.
    """
    flags = set()
    get = activity.get
    munchkin = get("munchkinId") or munchkin_id
    if munchkin is None:
        flags.add("no_munchkin_id")
    munchkin = text(munchkin, "munchkin_id")
    type_id = _activity_type_id(get("activityTypeId"), flags)
    name = text(get("activityType")) or activity_types.name_for(type_id)
    guid = get("marketoGUID")
    if guid is None and get("id") is not None:
        flags.add("no_marketo_guid")
        guid = get("id")
    return {
        "stream": _ACTIVITY,
        "type": text(activity_types.io_type_for(type_id, name), "type"),
        "munchkin_id": munchkin,
        "event_uid": None,
        "activity_key": _activity_key(munchkin, guid, flags),
        "occurred_at": parse_time(get("activityDate"), flags),
        "activity_type_id": type_id,
        "activity_type_name": text(name, "activity_type_name"),
        "lead_id": text(get("leadId"), "lead_id"),
        "primary_attribute": text(get("primaryAttributeValue")),
        "primary_attribute_id": text(get("primaryAttributeValueId"), "primary_attribute_id"),
        "campaign_id": text(get("campaignId"), "campaign_id"),
        "campaign_name": text(get("campaignName"), "campaign_name"),
        "program_id": text(get("programId"), "program_id"),
        "program_name": text(get("programName"), "program_name"),
        **_NOT_ACTIVITY_COLUMNS,
        "raw": dump_json(activity),
        "flags": sorted(flags),
    }


_ACTIVITY = str(Stream.ACTIVITY)
_NOT_ACTIVITY_COLUMNS = dict.fromkeys(
    ("component_type", "component_id", "action", "user_numeric", "user_email", "kind", "subtype", "details"), ""
)


# --- Shared by both protocols ---------------------------------------------------------------------------


def _row(stream, event_type, munchkin_id, flags):
    if munchkin_id is None:
        flags.add("no_munchkin_id")
    return {
        "stream": str(stream),
        "type": text(event_type, "type"),
        "munchkin_id": text(munchkin_id, "munchkin_id"),
        "event_uid": None,
        "activity_key": None,
        "occurred_at": None,
        "activity_type_id": None,
        "activity_type_name": "",
        "lead_id": "",
        "primary_attribute": "",
        "primary_attribute_id": "",
        "campaign_id": "",
        "campaign_name": "",
        "program_id": "",
        "program_name": "",
        "component_type": "",
        "component_id": "",
        "action": "",
        "user_numeric": "",
        "user_email": "",
        "kind": "",
        "subtype": "",
        "details": "",
    }


def _activity_type_id(value, flags):
    type_id = as_int(value)
    if type_id is None:
        flags.add("no_activity_type_id")
    elif type_id < activity_types.CUSTOM_MIN_ID and type_id not in activity_types.NAMES:
        flags.add("unknown_activity_type")
    return type_id


def _activity_columns(row, data, flags):
    type_id = row["activity_type_id"] = _activity_type_id(data.get("activityTypeId"), flags)
    name = text(data.get("activityType")) or activity_types.name_for(type_id)
    row["activity_type_name"] = text(name, "activity_type_name")
    row["lead_id"] = text(data.get("leadId"), "lead_id")
    row["primary_attribute"] = text(data.get("primaryAttributeValue"))
    row["primary_attribute_id"] = text(data.get("primaryAttributeValueId"), "primary_attribute_id")
    for column, field in (
        ("campaign_id", "campaignId"),
        ("campaign_name", "campaignName"),
        ("program_id", "programId"),
        ("program_name", "programName"),
    ):
        row[column] = text(data.get(field), column)


def _activity_key(munchkin_id, activity_id, flags):
    activity_id = text(activity_id)
    if not activity_id:
        flags.add("no_activity_id")
        return None
    # Munchkin IDs are upper case; a lower-case copy on one protocol must still meet its twin.
    return key(f"{munchkin_id.upper()}|{activity_id}")


def _finish(row, element, flags):
    row["raw"] = dump_json(element)
    row["flags"] = sorted(flags)
    return row
