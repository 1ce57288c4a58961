"""The OpenAPI 3.1 document of the read API and the receivers, served at ``GET /api/v1/openapi.json``.

Built from the same Python structures the code uses (the read API's filters and columns, the
receivers' status codes), and kept true by tests/test_openapi.py, which validates real responses
against it. Public: it describes endpoints and shapes, never a secret or a source.
"""

import functools

import orjson
from django.http import HttpResponse, HttpResponseNotAllowed

from streams import api, api_exports, export
from streams.models import Stream

_NULLABLE_TEXT = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_JSON = {"description": "A JSON value (the stored JSON text parsed; the text itself if it does not parse)"}
# The JSON type of each exported column in the read API's document; anything else is text.
_EVENT_TYPES = {
    "id": {"type": "integer", "format": "int64"},
    "batch_id": {"type": "integer", "format": "int64"},
    "source_id": {"type": "integer", "format": "int64"},
    "received_at": _TIME,
    "occurred_at": {"type": ["string", "null"], "format": "date-time"},
    "activity_type_id": {"type": ["integer", "null"], "format": "int32"},
    "stream": {"type": "string", "enum": list(Stream.values)},
    "type": {"type": "string"},
    "event_uid": _NULLABLE_TEXT,
    "activity_key": _NULLABLE_TEXT,
    "flags": {"type": "array", "items": {"type": "string"}},
    "details": {**_JSON, "description": "Notifications: the eventAction object; null otherwise"},
    "raw": {**_JSON, "description": "The event exactly as delivered"},
}

_FILTER_DOCS = {
    "stream": ({"type": "string", "enum": list(Stream.values)}, "Only this stream."),
    "source": ({"type": "integer", "format": "int64"}, "Only this source (id)."),
    "activity_type_id": ({"type": "integer", "format": "int32"}, "Only this Marketo activity type."),
    "type": ({"type": "string"}, "Only this event type (e.g. com.adobe.platform.marketo.activity.standard.newlead)."),
    "lead_id": ({"type": "string"}, "Only this lead."),
    "since": ({"type": "string", "format": "date-time"}, "Received at or after (ISO 8601; no zone is UTC)."),
    "until": ({"type": "string", "format": "date-time"}, "Received before (ISO 8601; no zone is UTC)."),
    "after": ({"type": "integer", "format": "int64"}, "Only events with a greater id (keyset paging)."),
}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas():
    event = {
        "type": "object",
        "required": list(export.FIELDS),
        "additionalProperties": False,
        "properties": {name: _EVENT_TYPES.get(name, {"type": "string"}) for name in export.FIELDS},
    }
    return {
        "Event": event,
        "Page": {
            "type": "object",
            "required": ["results", "next"],
            "additionalProperties": False,
            "properties": {
                "results": {"type": "array", "items": _ref("Event")},
                "next": {"type": ["string", "null"], "format": "uri", "description": "The next page; null on the last"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "description": "Short and machine-readable, e.g. bad_parameter"},
                "detail": {"type": "string"},
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted", "duplicates"],
            "additionalProperties": False,
            "properties": {
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
            },
        },
        "Challenge": {"type": "object", "required": ["challenge"], "properties": {"challenge": {"type": "string"}}},
        "ValidationReceived": {
            "type": "object",
            "required": ["validation"],
            "properties": {"validation": {"const": "received"}},
        },
        "PushStatus": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    }


def _json(schema, description):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description, **headers):
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = {
            name: {"schema": {"type": "string"}, "description": text} for name, text in headers.items()
        }
    return response


_READ_ERRORS = {
    "400": _error("An unknown parameter or a bad value (error: unknown_parameter, bad_parameter, bad_range)"),
    "401": _error("No token or session, or an unknown, revoked or expired token", **{"WWW-Authenticate": "Bearer"}),
    "405": _error("A method other than GET"),
    "503": _error("The database is unavailable; retry", **{"Retry-After": "Seconds to wait"}),
}


def _parameters(names, required=()):
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _FILTER_DOCS[name][0],
            "description": _FILTER_DOCS[name][1],
        }
        for name in names
    ]


def _limit():
    return {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": api.MAX_LIMIT, "default": api.DEFAULT_LIMIT},
        "description": "Events per page.",
    }


def _read_operation(summary, response, parameters):
    return {
        "get": {
            "tags": ["read API"],
            "summary": summary,
            "security": [{"token": []}, {"session": []}],
            "parameters": parameters,
            "responses": {"200": response, **_READ_ERRORS},
        }
    }


def _file(media, description):
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _read_paths():
    filters = list(_FILTER_DOCS)
    days = api_exports.MAX_RANGE.days
    ranged = f"For a time range: since and until are required, at most {days} days apart."
    return {
        "/api/v1/events": _read_operation(
            "One page of events, oldest first by id", _json(_ref("Page"), "A page"), [*_parameters(filters), _limit()]
        ),
        "/api/v1/events.ndjson": _read_operation(
            "Every matching event, one JSON document (an Event) a line, streamed",
            _file("application/x-ndjson", "One Event a line"),
            _parameters(filters),
        ),
        "/api/v1/events.csv": _read_operation(
            f"Every matching event as CSV, streamed. {ranged} Cells starting with = + - @ tab, CR or ' get a "
            "leading ' (remove one leading ' to undo).",
            _file("text/csv", "A header, then one event a line"),
            _parameters(filters, required=("since", "until")),
        ),
        "/api/v1/events.parquet": _read_operation(
            f"Every matching event as one Parquet file (typed columns, zstd). {ranged}",
            _file(export.CONTENT_TYPES["parquet"], "A Parquet file"),
            _parameters(filters, required=("since", "until")),
        ),
    }


_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}, "description": "The source's key"}
_RECEIVER_ERRORS = {
    "400": _error("Not JSON, or not the stream's shape (error: malformed); nothing of it is stored"),
    "401": _error("Missing or failing signature, wrong recipient client id, or a missing or wrong token"),
    "404": _error("No source has this URL (error: unknown_source)"),
    "405": {"description": "A method other than GET or POST"},
    "413": _error("The body is over FLUXO_MAX_BODY_BYTES (error: too_large)"),
    "503": _error(
        "Database, Adobe's key host or the identity provider unavailable; nothing acknowledged",
        **{"Retry-After": "Seconds to wait"},
    ),
}
_STORED = _json(_ref("Accepted"), "Committed, or already stored (a redelivery gets the same answer)")


def _receiver_paths():
    batch = {"content": {"application/json": {"schema": {}}}, "required": True}
    return {
        "/ingest/{key}/adobe-io/": {
            "parameters": [_KEY],
            "get": {
                "tags": ["receivers"],
                "summary": "Adobe I/O's challenge, echoed",
                "parameters": [{"name": "challenge", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(_ref("Challenge"), "The challenge"),
                    "400": _error("No or a bad challenge (error: bad_challenge)"),
                    "404": _RECEIVER_ERRORS["404"],
                },
            },
            "post": {
                "tags": ["receivers"],
                "summary": "A batch of Adobe I/O events (signed), or Adobe's validation POST",
                "security": [{"adobeSignature": []}],
                "requestBody": batch,
                "responses": {
                    "200": {
                        "description": "Stored (or a validation request kept)",
                        "content": {
                            "application/json": {"schema": {"oneOf": [_ref("Accepted"), _ref("ValidationReceived")]}}
                        },
                    },
                    **_RECEIVER_ERRORS,
                },
            },
        },
        "/ingest/{key}/marketo-push/": {
            "parameters": [_KEY],
            "get": {
                "tags": ["receivers"],
                "summary": "Marketo's reachability check: 200, nothing looked up",
                "responses": {"200": _json(_ref("PushStatus"), "Reachable")},
            },
            "post": {
                "tags": ["receivers"],
                "summary": "The legacy Marketo activity push: {munchkinId, activities: [...]}",
                "security": [{"pushToken": []}, {"pushOAuth": []}, {"pushQueryToken": []}],
                "requestBody": batch,
                "responses": {"200": _STORED, **_RECEIVER_ERRORS},
            },
        },
    }


def _self_path():
    return {
        "get": {
            "tags": ["read API"],
            "summary": "This document (public)",
            "security": [],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
        }
    }


@functools.cache
def document():
    """The OpenAPI document as a dict (built once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fluxo",
            "version": "1",
            "description": "Marketo's streams received, stored exactly once, and read back. See the README.",
        },
        "paths": {**_read_paths(), **_receiver_paths(), "/api/v1/openapi.json": _self_path()},
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "A personal API token"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "sessionid",
                    "description": "A logged-in browser",
                },
                "adobeSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-adobe-digital-signature-1",
                    "description": "Adobe I/O's RSA signatures of the body (-1, -2) and their key paths",
                },
                "pushToken": {"type": "http", "scheme": "bearer", "description": "The source's push token"},
                "pushQueryToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The push token as ?token=, only for a source that allows it",
                },
                "pushOAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An OAuth 2 token",
                },
            },
        },
    }


def document_view(request):
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    response = HttpResponse(orjson.dumps(document(), option=orjson.OPT_INDENT_2), content_type="application/json")
    response["Cache-Control"] = "public, max-age=300"
    return response
