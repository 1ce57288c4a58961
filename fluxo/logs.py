"""Logs: plain text or one JSON object per line (FLUXO_LOG_FORMAT), each with its request id.

A request id comes from the request's ``X-Request-Id`` when it is sane (at most 64 of
``A-Za-z0-9._-``), else is made here; it is echoed in the response, added to every record logged
while the request (or a Celery task it caused, see fluxo.celery) runs, and ends the request with one
access line on the logger ``fluxo.request``. Paths are logged without their query string, which can
carry a token.

A leaf module: it imports no app and no setting (settings.py's LOGGING names its classes).
"""

import contextvars
import ipaddress
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime

REQUEST_ID = contextvars.ContextVar("fluxo_request_id", default=None)
# What the code handling a request learnt that the access line should say (e.g. the source).
_NOTES = contextvars.ContextVar("fluxo_request_notes", default=None)
HEADER = b"x-request-id"
# The scope key Observed sets: the TCP peer is loopback and sent no forwarding header.
LOCAL_PEER = "fluxo.local_peer"
_FORWARDING = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"forwarded"}
_SANE_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
# Extra record attributes a JSON line carries when a record has them.
_EXTRA_FIELDS = ("source", "status", "latency_ms", "method", "path", "task", "task_id")
# Probes and scrapes: logged at DEBUG, not one INFO line every few seconds.
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
_ERROR_BODY_BYTES = 4096

access_log = logging.getLogger("fluxo.request")


def request_id_from(value):
    """The sender's id when it is sane, else a new one."""
    if value and _SANE_ID.match(value):
        return value
    return secrets.token_hex(16)


def note(**fields):
    """Tell the access line of the current request something (e.g. ``source=<id>``); no-op outside one."""
    notes = _NOTES.get()
    if notes is not None:
        notes.update(fields)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request or task) to every record a handler emits."""

    def filter(self, record):
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id and the extras it has."""

    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class Observed:
    """ASGI wrapper for every HTTP request, the receivers' included (they bypass Django's middleware):
    the request id and the access line; ``on_ingest(path, status, error, seconds)`` is told of every
    receiver answer (fluxo.metrics counts them). Outermost, it also records in the scope
    (``LOCAL_PEER``) whether the connection comes from this host directly, before any proxy-trust layer
    replaces the client with the one a proxy names."""

    def __init__(self, app, on_ingest=None):
        self.app, self.on_ingest = app, on_ingest

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope = {**scope, LOCAL_PEER: _local_peer(scope)}
        request_id = request_id_from(_header(scope, HEADER))
        id_token, notes_token = REQUEST_ID.set(request_id), _NOTES.set({})
        answer = _Answer(request_id, scope["path"].startswith("/ingest/"))
        started = time.perf_counter()

        async def send_observed(message):
            await send(answer.observe(message))

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._finished(scope, answer, time.perf_counter() - started, _NOTES.get())
            REQUEST_ID.reset(id_token)
            _NOTES.reset(notes_token)

    def _finished(self, scope, answer, seconds, notes):
        path = scope["path"]
        if answer.ingest and answer.status is not None and self.on_ingest is not None:
            self.on_ingest(path, answer.status, answer.error(), seconds)
        level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
        latency_ms = round(seconds * 1000, 1)
        access_log.log(
            level,
            "%s %s %s %.1f ms",
            scope.get("method"),
            path,
            answer.status,
            latency_ms,
            extra={"method": scope.get("method"), "path": path, "status": answer.status, "latency_ms": latency_ms}
            | {"source": (notes or {}).get("source")},
        )


class _Answer:
    """What a response said: its status, and for a receiver's refusal its JSON body's start."""

    def __init__(self, request_id, ingest):
        self.request_id, self.ingest = request_id, ingest
        self.status = None
        self._body = b""

    def observe(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
            return {**message, "headers": [*headers, (HEADER, self.request_id.encode())]}
        refused = self.ingest and (self.status or 0) >= 400
        if message["type"] == "http.response.body" and refused and len(self._body) < _ERROR_BODY_BYTES:
            self._body += message.get("body", b"")[:_ERROR_BODY_BYTES]
        return message

    def error(self):
        """The refusal's ``error`` field (the receivers' machine-readable reason), or None."""
        if not self._body:
            return None
        try:
            value = json.loads(self._body)
        except ValueError:
            return None
        return value.get("error") if isinstance(value, dict) else None


def _local_peer(scope):
    """The TCP peer is a loopback address and no forwarding header came: not a request through a proxy."""
    if any(name.lower() in _FORWARDING for name, _value in scope.get("headers", ())):
        return False
    host = (scope.get("client") or (None,))[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except (TypeError, ValueError):
        return False


def _header(scope, name):
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
