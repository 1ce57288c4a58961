"""The JSON answer every API and receiver gives, errors included: one shape, never cached.

An error is ``{"error": a short machine-readable code, "detail": a sentence for people}``, what
streams/openapi.py documents for each endpoint.
"""

import orjson
from django.http import HttpResponse


def json_answer(document, status=200, headers=None):
    response = HttpResponse(orjson.dumps(document), status=status, content_type="application/json")
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def json_error(status, error, detail, headers=None):
    return json_answer({"error": error, "detail": detail}, status, headers)
