"""Building Marketo payloads and posting them to the real receivers, for tests of what reads them."""

import itertools
import uuid

import orjson

from streams import wire
from streams.store import store

_guids = itertools.count(1)
NOTIFICATION = "com.adobe.platform.marketo.notification."


def activity(type_id, lead="1001", name=None, primary="", **data):
    """One legacy-push activity (a fresh marketoGUID each time)."""
    item = {
        "marketoGUID": f"guid-{uuid.uuid4()}",
        "leadId": lead,
        "activityDate": data.pop("activityDate", "2026-12-01T10:00:00Z"),
        "activityTypeId": type_id,
        "primaryAttributeValue": primary,
        "attributes": data.pop("attributes", []),
        **data,
    }
    if name:
        item["activityType"] = name
    return item


def legacy_push(client, source, token, activities):
    """POST activities as one legacy push; the receiver's JSON answer."""
    body = orjson.dumps({"munchkinId": source.munchkin_id, "activities": list(activities)})
    response = client.post(
        f"/ingest/{source.ingest_key}/marketo-push/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200, response.content
    return response.json()


def cloud_event(event_type, data, munchkin_id="123-ABC-456"):
    """One Adobe I/O element in the event.body envelope (audit and notification streams)."""
    return {
        "eventid": str(uuid.uuid4()),
        "event": {"body": {"specversion": "1.0", "type": event_type, "data": {"munchkinId": munchkin_id, **data}}},
    }


def notification(kind, sub_type, action, munchkin_id="123-ABC-456"):
    return cloud_event(
        NOTIFICATION + kind, {"componentType": kind, "subType": sub_type, "eventAction": action}, munchkin_id
    )


def audit(component, action, user_id="ops@example.com", munchkin_id="123-ABC-456"):
    return cloud_event(
        f"com.adobe.platform.marketo.audit.user.{component.lower().replace(' ', '')}",
        {"componentType": component, "componentId": next(_guids), "eventAction": action, "userId": user_id},
        munchkin_id,
    )


def io_post(client, source, signed_headers, elements):
    """POST I/O elements, signed; the receiver's JSON answer (needs the key_server fixture)."""
    body = orjson.dumps(list(elements))
    response = client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **signed_headers(body)
    )
    assert response.status_code == 200, response.content
    return response.json()


def store_at(source, received_at, activities=(), elements=()):
    """Store legacy activities and I/O elements as one request received at ``received_at`` (the
    receivers stamp the present): the Stored, as streams.store.store answers."""
    rows = [wire.normalise_legacy(a, source.munchkin_id) for a in activities]
    rows += [wire.normalise_io(e) for e in elements]
    return store(rows, source, "legacy" if activities else "io", received_at)
