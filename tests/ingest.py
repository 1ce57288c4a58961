"""Building Marketo payloads and posting them to the real receivers, for tests of what reads them."""

import functools
import itertools
import uuid

import orjson

from streams import wire
from streams.store import store
from tests.processes import http

_guids = itertools.count(1)
_made = itertools.count(1)
NOTIFICATION = "com.adobe.platform.marketo.notification."
APRIL = "2026-04-20T18:43:56Z"  # a fixed day in the past: every lag measured from it is positive


def activity(type_id, lead="1001", name=None, primary="", **data):
    """One legacy-push activity: a fresh marketoGUID each time, each sorting after the ones made before
    (a batch is stored in key order, so tests that look for the newest find the last one made)."""
    item = {
        "marketoGUID": f"guid-{next(_made):09d}-{uuid.uuid4()}",
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


# What the dashboard and alerts tests push unless told otherwise: lead 7's Visit Webpage of /pricing in April.
april_activity = functools.partial(activity, lead=7, name="Visit Webpage", primary="/pricing", activityDate=APRIL)


def marketo_body(activities, munchkin_id="123-ABC-456", message_id="m-1"):
    """A legacy push body with the whole envelope Marketo sends around its activities."""
    return orjson.dumps(
        {
            "sourceApplication": "Marketo",
            "munchkinId": munchkin_id,
            "messageId": message_id,
            "messageCreatedDate": "2026-04-21T15:28:49Z",
            "activities": list(activities),
        }
    )


def _legacy_body(munchkin_id, body):
    """A test's own body as it is (text in UTF-8), else activities as one push of ``munchkin_id``."""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes):
        return body
    return orjson.dumps({"munchkinId": munchkin_id, "activities": list(body)})


def legacy_post(client, source, token, body, query="", content_type="application/json", **extra):
    """POST activities, or a body as it is, to the source's legacy push, unchecked (refusals are answers
    too): the response. ``token`` is the bearer; without one no Authorization header is sent, unless
    ``extra`` (WSGI environ keys, as Django's client takes them) carries one."""
    if token:
        extra = {"HTTP_AUTHORIZATION": f"Bearer {token}", **extra}
    path = f"/ingest/{source.ingest_key}/marketo-push/{query}"
    return client.generic("POST", path, _legacy_body(source.munchkin_id, body), content_type=content_type, **extra)


def legacy_push(client, source, token, activities):
    """POST activities (or a body as it is) as one legacy push; the receiver's JSON answer."""
    response = legacy_post(client, source, token, activities)
    assert response.status_code == 200, response.content
    return response.json()


def http_post(base, source, body, token=None, query="", timeout=15):
    """POST activities, or a body as it is, to a running web process's legacy push, unchecked: (status,
    headers, body) as tests.processes.http answers. ``source`` is what add_source --json printed; the
    bearer is its API token unless ``token`` is given, and ``token=""`` sends none (one in ``query``)."""
    token = source.get("api_token") if token is None else token
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    url = base + source["endpoints"]["legacy_push"] + query
    return http("POST", url, _legacy_body(source["munchkin_id"], body), headers, timeout)


def http_push(base, source, activities, **options):
    """POST activities (or a body as it is) to a running web process, as ``http_post`` does; its JSON answer."""
    status, _, answer = http_post(base, source, activities, **options)
    assert status == 200, answer
    return orjson.loads(answer)


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
