"""The OpenAPI document: valid OpenAPI 3.1, complete, and true of real responses of the read API and the receivers."""

import json
from datetime import timedelta

import orjson
import pytest
from django.urls import get_resolver
from django.utils import timezone
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import validate

from streams import api, api_tokens, openapi
from streams.models import Source
from tests.ingest import activity, audit, cloud_event, legacy_push

pytestmark = pytest.mark.django_db

DOC = "/api/v1/openapi.json"


@pytest.fixture
def doc(client):
    response = client.get(DOC)  # public: no token
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.fixture
def check(doc):
    """Assert that ``response`` is one the document describes for (path, method), body included."""

    def check(response, path, method="get"):
        answers = doc["paths"][path][method]["responses"]
        status = str(response.status_code)
        assert status in answers, (path, method, status, response.content[:300])
        content = answers[status].get("content")
        if content is None:
            return
        media = response["Content-Type"].split(";")[0]
        assert media in content, (path, status, media)
        if media == "application/json":
            schema = {**content[media]["schema"], "components": doc["components"]}
            Draft202012Validator(schema).validate(json.loads(b"".join(_body(response))))

    return check


def _body(response):
    return response.streaming_content if response.streaming else [response.content]


def event_schema(doc):
    return Draft202012Validator({"$ref": "#/components/schemas/Event", "components": doc["components"]})


# --- The document itself ---------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    assert doc == json.loads(orjson.dumps(openapi.document()))


def test_it_describes_every_route_of_the_api_and_the_receivers_and_every_filter(doc):
    resolvers = [p for p in get_resolver().url_patterns if hasattr(p, "urlconf_module")]
    streams_urls = next(p for p in resolvers if getattr(p.urlconf_module, "__name__", None) == "streams.urls")
    routes = {str(pattern.pattern) for pattern in streams_urls.url_patterns}
    described = {path.lstrip("/").replace("{key}", "<str:ingest_key>") for path in doc["paths"]}
    assert {route for route in routes if not route.startswith("^")} == described  # the ^… ones: no-slash aliases
    page = {p["name"] for p in doc["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert page == {*api._FILTERS, "limit"}
    for path in ("/api/v1/events.csv", "/api/v1/events.parquet"):
        required = {p["name"] for p in doc["paths"][path]["get"]["parameters"] if p["required"]}
        assert required == {"since", "until"}
    assert set(doc["components"]["schemas"]["Event"]["properties"]) == set(api.FIELDS)


def test_the_event_schema_refuses_a_result_that_lost_or_gained_a_column(doc, client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [activity(1)])
    token = api_tokens.create(admin_user)[1]
    (row,) = client.get("/api/v1/events", HTTP_AUTHORIZATION=f"Bearer {token}").json()["results"]
    schema = event_schema(doc)
    schema.validate(row)
    for broken in ({k: v for k, v in row.items() if k != "lead_id"}, {**row, "extra": 1}, {**row, "id": "1"}):
        with pytest.raises(ValidationError):
            schema.validate(broken)


# --- Real responses ------------------------------------------------------------------------------------------


def test_read_api_answers_match_the_document(
    client, check, doc, source, api_token, admin_user, key_server, signed_headers
):
    legacy_push(client, source, api_token, [activity(1), activity(13, attributes=[{"name": "x", "value": 1}])])
    body = orjson.dumps([audit("Email", "approve"), cloud_event("com.adobe.platform.marketo.notification.x", {})])
    response = client.post(
        f"/ingest/{source.ingest_key}/adobe-io/", body, content_type="application/json", **signed_headers(body)
    )
    check(response, "/ingest/{key}/adobe-io/", "post")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_tokens.create(admin_user)[1]}"}
    page = client.get("/api/v1/events", {"limit": 2}, **auth)
    check(page, "/api/v1/events")
    check(client.get(page.json()["next"], **auth), "/api/v1/events")
    check(client.get("/api/v1/events", {"limt": 2}, **auth), "/api/v1/events")
    check(client.get("/api/v1/events", {"since": "yesterday"}, **auth), "/api/v1/events")
    check(client.get("/api/v1/events"), "/api/v1/events")
    check(client.get("/api/v1/events", HTTP_AUTHORIZATION="Bearer nope"), "/api/v1/events")
    check(client.post("/api/v1/events", **auth), "/api/v1/events")

    ndjson = client.get("/api/v1/events.ndjson", **auth)
    check(ndjson, "/api/v1/events.ndjson")
    lines = b"".join(ndjson.streaming_content).splitlines()
    assert len(lines) == 4
    for line in lines:
        event_schema(doc).validate(json.loads(line))
    since, until = (timezone.now() - timedelta(hours=1)).isoformat(), timezone.now().isoformat()
    for path in ("/api/v1/events.csv", "/api/v1/events.parquet"):
        check(client.get(path, {"since": since, "until": until}, **auth), path)
        check(client.get(path, {"since": since}, **auth), path)


def test_receiver_answers_match_the_document(client, check, source, api_token, key_server, signed_headers, settings):
    io, push = f"/ingest/{source.ingest_key}/adobe-io/", f"/ingest/{source.ingest_key}/marketo-push/"
    io_doc, push_doc = "/ingest/{key}/adobe-io/", "/ingest/{key}/marketo-push/"
    check(client.get(io, {"challenge": "abc-123"}), io_doc)
    check(client.get(io, {"challenge": "<script>"}), io_doc)
    check(client.get("/ingest/nosuchkey/adobe-io/", {"challenge": "abc"}), io_doc)

    malformed = b"[1, 2]"
    check(client.post(io, malformed, content_type="application/json", **signed_headers(malformed)), io_doc, "post")
    check(client.post(io, b"[]", content_type="application/json"), io_doc, "post")  # unsigned: 401
    validation = orjson.dumps({"validationUrl": "https://csm.adobe.io/csm/registrations/validate?id=1"})
    check(client.post(io, validation, content_type="application/json"), io_doc, "post")
    check(client.put(io), io_doc, "post")  # 405, documented without a body

    token = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    good = orjson.dumps({"munchkinId": source.munchkin_id, "activities": [activity(1)]})
    check(client.post(push, good, content_type="application/json", **token), push_doc, "post")
    check(client.post(push, good, content_type="application/json", **token), push_doc, "post")  # redelivery
    check(client.post(push, b"{", content_type="application/json", **token), push_doc, "post")
    check(client.post(push, good, content_type="application/json", HTTP_AUTHORIZATION="Bearer x"), push_doc, "post")
    check(client.post("/ingest/nosuchkey/marketo-push/", good, content_type="application/json"), push_doc, "post")
    check(client.get(push), push_doc)
    settings.FLUXO_MAX_BODY_BYTES = 64 * 1024
    big = orjson.dumps({"munchkinId": source.munchkin_id, "activities": [activity(1, primary="x" * 70_000)]})
    response = client.post(push, big, content_type="application/json", **token)
    assert response.status_code == 413
    check(response, push_doc, "post")
    assert Source.objects.count() == 1
