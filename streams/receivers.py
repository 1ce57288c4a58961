"""The two ingest endpoints: Adobe I/O Events webhooks and the legacy Marketo activity push.

Checks run cheapest first, each with its exact status and a short machine-readable error:
404 unknown source, 413 too large, 401 authentication, 400 malformed (nothing of it stored),
then one transaction, then 200 with counts. The database unavailable at any step: 503 with
Retry-After and nothing acknowledged. Everything else (unknown types, odd timestamps, missing
optional fields) is stored and answered 200, because Adobe drops an event answered with a 4xx.
"""

import logging
import re
import time  # noqa: F401 (tests stand in for time.monotonic, the source cache's clock, through it)

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.http import HttpResponseNotAllowed, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from fluxo.answers import json_error
from fluxo.ttlcache import TTLCache
from streams import announce, refused, signatures, uptime, validation, wire
from streams.auth import AuthUnavailable, authenticate_push
from streams.models import Source
from streams.store import FOREIGN_FLAG, store

log = logging.getLogger(__name__)

CHALLENGE_RE = re.compile(r"\A[A-Za-z0-9._~-]{1,256}\Z")
RETRY_AFTER_SECONDS = "30"
# How long a process reuses a Source row it looked up by ingest key. A change saved in this process
# takes effect at once (the signals below); one saved elsewhere (another web process, a shell)
# within this many seconds: the Adobe client id, pinned keys, legacy auth and OAuth settings, the
# Munchkin ID, and a deleted source (whose pushes meanwhile get a 503, never a 200). API tokens are
# not cached: a revoked one is refused at once.
SOURCE_CACHE_SECONDS = 5.0
# Where _body() leaves the raw bytes it read on the request, for _record_refusal().
RAW_BODY_ATTRIBUTE = "fluxo_raw_body"

# Many sources, or keys of deleted ones: the ones looked up longest ago make room.
_sources = TTLCache(SOURCE_CACHE_SECONDS, max_size=10_000)  # ingest key -> Source


class Refusal(Exception):
    """A request answered with a 4xx; ``reason`` feeds the per-source rejection counters. With a
    ``source`` (the URL was a known source's), the request is counted and kept for its Setup page."""

    def __init__(self, status, error, detail, reason=None, source=None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.reason = status, error, detail, reason
        self.source = source


def _unavailable(ingest_key, why):
    announce.unavailable(ingest_key)
    log.warning("503 for source %s: %s", ingest_key, why)
    return json_error(503, "unavailable", "temporarily unable to store; retry", {"Retry-After": RETRY_AFTER_SECONDS})


def _guarded(handler, request, ingest_key):
    """Run a handler; a refusal becomes its 4xx, an unavailable database or provider a 503."""
    uptime.mark()  # this web process runs this minute (at most one Redis write a minute)
    try:
        return handler(request, ingest_key)
    except Refusal as refusal:
        if refusal.source is not None:
            _record_refusal(request, refusal)
        return json_error(refusal.status, refusal.error, refusal.detail)
    except (OperationalError, InterfaceError) as exc:
        return _unavailable(ingest_key, f"database: {exc.__class__.__name__}")
    except IntegrityError as exc:
        # Only a source deleted meanwhile (its cached row outlived it) breaks a foreign key here:
        # nothing was committed; the retry finds no source and gets its 404.
        forget_source(ingest_key)
        return _unavailable(ingest_key, f"database: {exc.__class__.__name__}")
    except (signatures.KeyUnavailable, AuthUnavailable) as exc:
        return _unavailable(ingest_key, str(exc))


def _source(ingest_key):
    """The source of a receiver URL, from this process's cache for SOURCE_CACHE_SECONDS; else 404."""
    source = _sources.get(ingest_key)
    if source is not None:
        return source
    source = Source.objects.live().filter(ingest_key=ingest_key).first()  # a deleted one is gone
    if source is None:
        raise Refusal(404, "unknown_source", "no source has this URL")  # unknown keys are not cached
    _sources.set(ingest_key, source)
    return source


def forget_source(ingest_key=None):
    """Drop one cached source (or all): the next request reads it from the database."""
    if ingest_key is None:
        _sources.clear()
    else:
        _sources.pop(ingest_key)


@receiver(post_save, sender=Source, dispatch_uid="streams.receivers.source_saved")
@receiver(post_delete, sender=Source, dispatch_uid="streams.receivers.source_deleted")
def _source_changed(sender, instance, **kwargs):
    forget_source(instance.ingest_key)


@receiver(m2m_changed, sender=Source.delivers_for.through, dispatch_uid="streams.receivers.links_changed")
def _links_changed(sender, **kwargs):
    forget_source()  # either end of a link may be cached


def _refuse(source, status, error, detail, reason):
    raise Refusal(status, error, detail, reason, source)


def _record_refusal(request, refusal):
    """Count the refusal and keep what the request looked like (redacted, at most 4 KB of its body),
    after the decision and off the 200 path: one Redis round trip, nothing in the database."""
    described = refused.describe_request(request, getattr(request, RAW_BODY_ATTRIBUTE, None))
    announce.request_refused(
        refusal.source.id, refusal.reason, refusal.status, refusal.detail, timezone.now(), described
    )


def _body(request, source):
    """The raw body, refused over the configured limit (declared or actual length)."""
    limit = settings.FLUXO_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        _refuse(source, 413, "too_large", f"the body is over {limit} bytes", "too_large")
    # read(), not .body: .body calls int() on Content-Length again, a 500 for one that is not a number.
    body = request.read(limit + 1)
    setattr(request, RAW_BODY_ATTRIBUTE, body)  # for a refusal's record: the stream is read once
    if len(body) > limit:
        _refuse(source, 413, "too_large", f"the body is over {limit} bytes", "too_large")
    return body


def _parse(source, body):
    try:
        return wire.parse_json(body)
    except wire.Malformed as exc:
        _refuse(source, 400, "malformed", str(exc), "malformed")


def _normalised(source, normalise, items, *args):
    """Rows for ``items``; an element too deeply nested to be kept is a malformed body (400)."""
    try:
        return [normalise(item, *args) for item in items]
    except wire.Malformed as exc:
        _refuse(source, 400, "malformed", str(exc), "malformed")


def _commit(rows, source, protocol, meta=None):
    received_at = timezone.now()
    stored = store(rows, source, protocol, received_at, meta)
    # store() has returned, so the transaction is committed: only now announce and acknowledge.
    duplicates = {}
    if stored.duplicates:
        duplicates[source.id] = stored.duplicates
    foreign = sum(1 for row in rows if FOREIGN_FLAG in row["flags"])
    foreign_by_source = {source.id: foreign} if foreign else {}
    announce.batch_committed(stored, received_at, duplicates, foreign_by_source, protocol=protocol)
    return JsonResponse({"accepted": stored.accepted, "duplicates": stored.duplicates})


# --- Adobe I/O Events ---------------------------------------------------------------------------------


@csrf_exempt
def adobe_io(request, ingest_key):
    if request.method == "GET":
        return _guarded(_challenge, request, ingest_key)
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    return _guarded(_receive_io, request, ingest_key)


def _challenge(request, ingest_key):
    """Adobe's synchronous challenge, echoed as JSON; no signature is needed (none can be relied on)."""
    _source(ingest_key)
    challenge = request.GET.get("challenge", "")
    if not CHALLENGE_RE.match(challenge):
        raise Refusal(400, "bad_challenge", "expected ?challenge= with letters, digits, '-', '.', '_' or '~'")
    return JsonResponse({"challenge": challenge})


def _receive_io(request, ingest_key):
    source = _source(ingest_key)
    body = _body(request, source)
    if not signatures.has_signature(request.META):
        return _unsigned_io(source, body)
    if not signatures.verify(body, request.META, source.pinned_public_keys, source.id):
        _refuse(source, 401, "bad_signature", "no Adobe I/O signature verifies", "signature")
    payload = _parse(source, body)
    if wire.is_validation_post(payload):
        return _validation_post(source, payload)
    elements = _io_elements(source, payload)
    silent = _check_recipients(source, elements)
    rows = _normalised(source, wire.normalise_io, elements)
    _flag_missing_recipients(rows, silent)
    response = _commit(rows, source, "io")
    if request.headers.get("x-adobe-retry-count"):
        announce.redelivered(source.id)  # for the registration's health (streams.registration_health)
    return response


def _unsigned_io(source, body):
    """Only Adobe's asynchronous validation POST is accepted without a signature."""
    try:
        payload = wire.parse_json(body) if len(body) < 4096 else None
    except wire.Malformed:
        payload = None
    if wire.is_validation_post(payload):
        return _validation_post(source, payload)
    _refuse(source, 401, "missing_signature", "x-adobe-digital-signature-1/-2 are required", "signature")


def _io_elements(source, payload):
    try:
        return wire.io_elements(payload)
    except wire.Malformed as exc:
        _refuse(source, 400, "malformed", str(exc), "malformed")


def _check_recipients(source, elements):
    """Every client id an element states must be this source's (when it has one): one mismatch, or an
    empty or non-string value, refuses the whole batch (401). Returns the elements that state none."""
    if not source.adobe_client_id:
        return []
    silent = []
    for index, element in enumerate(elements):
        stated = wire.recipients_of(element)
        if not stated:
            silent.append(index)
        elif any(not isinstance(value, str) or value != source.adobe_client_id for value in stated):
            _refuse(source, 401, "wrong_recipient", "an event is addressed to another client id", "auth")
    return silent


def _flag_missing_recipients(rows, silent):
    """Stored all the same (Adobe drops what a 4xx answers), but flagged."""
    for index in silent:
        rows[index]["flags"] = sorted({*rows[index]["flags"], "no_recipient_client_id"})


def _validation_post(source, payload):
    url = wire.text(payload["validationUrl"])[:2000]
    validation.keep(source, url)
    # The row is the outbox: the beat's open_validation_urls task opens it (no network call here).
    log.info("Adobe validation request kept for source %s", source.id)
    return JsonResponse({"validation": "received"})


# --- The legacy Marketo activity push -----------------------------------------------------------------


@csrf_exempt
def marketo_push(request, ingest_key):
    if request.method == "GET":
        # As Marketo's sample consumer does: 200, no authentication, nothing revealed (no lookup either).
        return JsonResponse({"status": "ok"})
    if request.method != "POST":
        return HttpResponseNotAllowed(["GET", "POST"])
    return _guarded(_receive_push, request, ingest_key)


def _receive_push(request, ingest_key):
    source = _source(ingest_key)
    body = _body(request, source)
    if not authenticate_push(request, source):
        _refuse(source, 401, "unauthorized", "missing or invalid token", "auth")
    payload = _parse(source, body)
    try:
        activities = wire.legacy_activities(payload)
    except wire.Malformed as exc:
        _refuse(source, 400, "malformed", str(exc), "malformed")
    munchkin = payload.get("munchkinId")
    rows = _normalised(source, wire.normalise_legacy, activities, munchkin)
    return _commit(rows, source, "legacy", {"push": wire.legacy_envelope(payload)})
