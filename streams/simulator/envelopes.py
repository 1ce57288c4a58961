"""The wire shapes the simulator sends, as Adobe and Marketo document them (reference, sections 1 and 4).

- I/O Lead Activity: a flat CloudEvent with ``eventid`` and ``recipientclientid`` at the top.
- User Audit and Notification: ``{eventid, event: {body: <CloudEvent>}, recipientclientid}``.
- The legacy push: ``{sourceApplication, munchkinId, messageId, messageCreatedDate, activities}``.

Adobe sends the deprecated spellings ``event_id`` and ``recipient_client_id`` beside the current
ones until the end of 2026, so both are sent.
"""

import orjson

from streams import activity_types

ACTIVITY_SOURCE = "urn:marketo_activity_stream"
MAX_IO_BATCH_EVENTS = 20
MAX_IO_BATCH_BYTES = 2 * 1000 * 1000
MAX_LEGACY_BATCH = 500


def iso_seconds(moment):
    """2026-04-20T18:43:56Z: activity dates and CloudEvent times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_time(moment):
    """2024-07-11 13:20:42.755: the audit stream's time since July 2024 (space, milliseconds, no zone)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def io_activity(eventid, guid, log_item_id, munchkin_id, date, activity, client_id):
    data = {
        "munchkinId": munchkin_id,
        "leadId": str(activity["leadId"]),
        "activityDate": date,
        "activityTypeId": activity["activityTypeId"],
        "activityType": activity["activityType"],
        "activityLogItemId": log_item_id,
        **_optional(activity),
        "attributes": activity["attributes"],
    }
    event = {
        "eventid": eventid,
        "event_id": eventid,
        "specversion": "1.0",
        "type": activity_types.io_type_for(activity["activityTypeId"], activity["activityType"]),
        "source": ACTIVITY_SOURCE,
        "id": guid,
        "time": date,
        "datacontenttype": "application/json",
        "data": data,
    }
    return _addressed(event, client_id)


def legacy_activity(guid, log_item_id, date, activity):
    """The same activity as the legacy push carries it: marketoGUID, an integer leadId."""
    return {
        "marketoGUID": guid,
        "leadId": activity["leadId"],
        "activityDate": date,
        "activityTypeId": activity["activityTypeId"],
        "activityType": activity["activityType"],
        "activityLogItemId": log_item_id,
        **_optional(activity),
        "attributes": activity["attributes"],
    }


def _optional(activity):
    names = (
        "primaryAttributeValueId",
        "primaryAttributeValue",
        "campaignId",
        "campaignName",
        "programId",
        "programName",
    )
    return {name: activity[name] for name in names if name in activity}


def wrapped(eventid, event_type, source, time, dataschema, data, client_id):
    """A User Audit or Notification event: the CloudEvent under ``event.body``."""
    body = {
        "specversion": "1.0",
        "type": event_type,
        "source": source,
        "time": time,
        "datacontenttype": "application/json",
        "dataschema": dataschema,
        "data": data,
    }
    return _addressed({"eventid": eventid, "event_id": eventid, "event": {"body": body}}, client_id)


def _addressed(event, client_id):
    event["recipientclientid"] = client_id
    event["recipient_client_id"] = client_id
    return event


def legacy_body(munchkin_id, message_id, created, activities):
    return orjson.dumps(
        {
            "sourceApplication": "Marketo",
            "munchkinId": munchkin_id,
            "messageId": message_id,
            "messageCreatedDate": created,
            "activities": activities,
        }
    )


def io_body(encoded_events, single):
    """The request body for already-encoded events: one object (single mode) or a JSON array."""
    if single:
        (only,) = encoded_events
        return only
    return b"[" + b",".join(encoded_events) + b"]"


def take_io_batch(pending, single, max_events=MAX_IO_BATCH_EVENTS, max_bytes=MAX_IO_BATCH_BYTES):
    """Pop from the left of ``pending`` (a deque of (event, encoded)) a batch Adobe would send:
    at most 20 events and 2 MB of body, or one event in single mode. Always at least one event."""
    batch = [pending.popleft()]
    size = len(batch[0][1]) + 2
    if single:
        return batch
    while pending and len(batch) < max_events and size + len(pending[0][1]) + 1 <= max_bytes:
        item = pending.popleft()
        batch.append(item)
        size += len(item[1]) + 1
    return batch
