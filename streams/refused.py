"""What a refused request looked like, for a superuser debugging a sender (the Setup page's details).

A refusal is a 4xx the receivers gave a known source (401 bad or missing signature or token, 400
malformed, 413 too large); a 404 for an unknown URL and a 503 for our own trouble are not. The
description keeps the method, the headers and the query string with every credential redacted, and at
most the first BODY_BYTES of the body. It is built only after the refusal was decided, never on the
way to a 200, and it is bounded in size whatever the sender sends: the receivers keep the last
``announce.KEEP_REJECTIONS`` of each source in Redis for ``announce.REJECTIONS_TTL`` (no event is ever
stored from a refused request, and nothing of this description goes to the database).
"""

import re
from urllib.parse import parse_qsl

BODY_BYTES = 4096
MAX_FIELDS = 40  # headers, and query parameters: a sender may send thousands
MAX_VALUE_CHARS = 512
REDACTED = "[redacted]"
_MAX_QUERY_CHARS = 8192

# Names that carry a credential or a signature: Authorization, Proxy-Authorization, Cookie,
# x-adobe-digital-signature-1/-2, x-api-key, ?token=, ?access_token=, anything session- or secret-like.
# Adobe's x-adobe-public-key1-path is kept: it names a public key, and a sender's key path is what a
# signature failure is debugged with.
_SECRET_NAME = re.compile(r"auth|token|secret|signature|passw|cookie|session|api[-_]?key|credential|private|jwt", re.I)
_SCHEME = re.compile(r"\A([A-Za-z][A-Za-z0-9_-]{0,19}) ")


def is_secret(name):
    return bool(_SECRET_NAME.search(name))


def _clip(text):
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def _redacted(value):
    """The value's authentication scheme is kept ("Bearer", "Basic"): a wrong scheme is a common mistake."""
    scheme = _SCHEME.match(value)
    return f"{scheme.group(1)} {REDACTED}" if scheme else REDACTED


def redact_headers(headers):
    """[[name, value]] of at most MAX_FIELDS headers, secret ones redacted, long values clipped."""
    kept = []
    for name, value in list(headers)[:MAX_FIELDS]:
        kept.append([name, _redacted(value) if is_secret(name) else _clip(value)])
    return kept


def redact_query(query_string):
    """[[name, value]] of the query string's parameters, secret ones redacted."""
    pairs = parse_qsl(query_string[:_MAX_QUERY_CHARS], keep_blank_values=True)[:MAX_FIELDS]
    return [[_clip(name), REDACTED if is_secret(name) else _clip(value)] for name, value in pairs]


def body_excerpt(body, declared_length=None):
    """The first BODY_BYTES of ``body`` as text, and how long it was. ``body`` None: not read (a 413
    for a declared length over the limit reads none of it)."""
    if body is None:
        return {"body": None, "body_bytes": declared_length, "body_truncated": False}
    head = body[:BODY_BYTES]
    return {
        "body": head.decode("utf-8", "replace"),
        "body_bytes": len(body),
        "body_truncated": len(body) > BODY_BYTES,
    }


def describe(method, headers, query_string, body, declared_length=None):
    """The JSON-ready description of a refused request (see the module docstring)."""
    return {
        "method": method[:16],
        "headers": redact_headers(headers),
        "query": redact_query(query_string),
        **body_excerpt(body, declared_length),
    }


def describe_request(request, body):
    """describe() for a Django request whose raw body the receiver read (None if it read none)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0) or None
    except ValueError:
        declared = None
    if declared is not None and not -(2**63) <= declared < 2**63:
        declared = None  # the record is JSON (orjson): a length beyond 64 bits made the 413 a 500
    query = request.META.get("QUERY_STRING", "")
    return describe(request.method or "?", request.headers.items(), query, body, declared)
