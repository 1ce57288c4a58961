"""Adobe's Journaling API: every event of a registration, kept 7 days, pulled through the ingest path.

Reference: /work/shared/reference/marketo-streams.md section 3.7. The contract kept here:

- A page's events and the cursor after them are committed in ONE transaction (``_commit_page``), so a
  worker killed mid-page resumes from the last committed page: nothing lost, nothing stored twice
  (and an event the webhook already brought is a duplicate the store skips, as ever).
- Adobe's ``Link rel=next`` is followed as given, but only on the configured journal host
  (settings.ADOBE_JOURNAL_URL): the Bearer token is never sent anywhere else. No redirect is followed.
- 204: the end of the journal; its retry-after is kept on the cursor and honoured by the poller.
- 410: the position expired (older than 7 days). Reading restarts from the oldest kept position and a
  JournalGap records what may have been lost in between.
- IMS tokens are cached per process until shortly before they expire. A 401/403 renews the token once;
  a second one (or IMS refusing the credentials) stops that registration's journal with a reason.
- 429, 5xx and timeouts are retried with backoff (a few times, then the run ends and the next resumes).
- One job per registration at a time: a lease on the registration row, taken by a conditional update
  and checked again inside every page's transaction (a job that lost its lease commits nothing). The
  lease is short (45 s by default) and renewed as the job runs: with each page, and every third of it
  while a page is awaited. A killed job's registration is free again within the lease.
"""

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from streams import announce, secretbox, wire
from streams.models import AdobeRegistration, JournalCursor, JournalGap, Stream
from streams.store import FOREIGN_FLAG, store

log = logging.getLogger(__name__)

PROTOCOL = "journal"
TIMEOUT = 30.0
PAGE_LIMIT = 500  # events per page asked for (Adobe also caps a page at 1.5 MB)
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)  # then the run gives up; the next run resumes from the cursor
TOKEN_MARGIN = timedelta(minutes=5)  # a token is renewed this long before it expires
# A continuous poll's events that occurred longer ago than this are marked late, as backfilled ones are.
LATE_AFTER = timedelta(minutes=5)
MALFORMED_FLAG = "journal_malformed"
MAX_GAPS_PER_RUN = 2  # a 410 from the oldest position itself would otherwise loop


class Stopped(Exception):
    """The registration's journal cannot go on until someone acts (credentials, URL): the reason says what."""


class Transient(Exception):
    """Adobe or the network failed after the retries: the next run resumes from the cursor."""


class Expired(Exception):
    """410: the position is older than the journal keeps."""


class LeaseLost(Exception):
    """Another job took the registration over (this one was presumed dead): commit nothing more."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx comes back as an HTTPError: never followed, the token stays on its host


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes


def _send(method, url, headers, data=None):
    """One request; an Answer for any HTTP status, Transient for no answer at all."""
    # Only the configured http(s) hosts reach here: on_journal_host() and the settings' URLs.
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with _opener.open(request, timeout=TIMEOUT) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read() or b"")
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets
        raise Transient(f"no answer from {urllib.parse.urlsplit(url).netloc} ({exc.__class__.__name__})") from exc


def retrying(method, url, headers, data=None):
    """The first answer that is neither 429 nor 5xx, retrying those and timeouts with backoff and jitter."""
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        try:
            answer = _send(method, url, headers, data)
        except Transient:
            if delay is None:
                raise
        else:
            if answer.status != 429 and not 500 <= answer.status <= 599:
                return answer
            if delay is None:
                raise Transient(f"{urllib.parse.urlsplit(url).netloc} answered {answer.status} {attempt + 1} times")
            delay = max(delay, _retry_after(answer.headers, 0))
        time.sleep(min(delay, 60.0) * (1 + random.random() / 4))
    raise AssertionError("unreachable")


def _retry_after(headers, default):
    try:
        return max(0.0, float(headers.get("retry-after", default)))
    except ValueError:
        return default


# --- IMS tokens ---------------------------------------------------------------------------------------------


_tokens = {}  # (registration id, client id, sealed secret) -> (token, expires at, monotonic)
_tokens_lock = threading.Lock()


def token(registration, renew=False):
    """A Bearer token for the registration's credentials, from the cache unless it is near expiry."""
    cache_key = (registration.id, registration.ims_client_id, registration.client_secret_encrypted)
    with _tokens_lock:
        cached = _tokens.get(cache_key)
    if cached and not renew and time.monotonic() < cached[1]:
        return cached[0]
    value, lifetime = _fetch_token(registration)
    with _tokens_lock:
        _tokens[cache_key] = (value, time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN.total_seconds()))
    return value


def forget_tokens():
    with _tokens_lock:
        _tokens.clear()


def _fetch_token(registration):
    """(access token, seconds it lives) from Adobe IMS' client-credentials grant; Stopped if refused."""
    if not registration.has_credentials:
        raise Stopped("no Adobe credentials: set the IMS client id, client secret and journal URL")
    try:
        secret = secretbox.unseal(registration.client_secret_encrypted)
    except (secretbox.NoKey, secretbox.Unreadable) as exc:
        raise Stopped(str(exc)) from None
    form = {"grant_type": "client_credentials", "client_id": registration.ims_client_id, "client_secret": secret}
    if registration.scopes:
        form["scope"] = registration.scopes
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    answer = retrying("POST", settings.ADOBE_IMS_URL + "/ims/token/v3", headers, urllib.parse.urlencode(form).encode())
    document = json_object(answer.body)
    if answer.status != 200 or not isinstance(document.get("access_token"), str):
        # IMS' error code only (e.g. invalid_client): its description could echo what was sent.
        error = wire.text(document.get("error"))[:100] or "no token"
        raise Stopped(f"Adobe IMS refused the credentials ({answer.status}, {error}): check the client id and secret")
    lifetime = document.get("expires_in")
    return document["access_token"], float(lifetime) if isinstance(lifetime, (int, float)) else 3600.0


def json_object(body):
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- URLs -------------------------------------------------------------------------------------------------------


def on_journal_host(url):
    """True when ``url`` is on the configured journal host (scheme, host and port alike)."""
    allowed, given = urllib.parse.urlsplit(settings.ADOBE_JOURNAL_URL), urllib.parse.urlsplit(url)
    return (given.scheme, given.hostname, given.port) == (allowed.scheme, allowed.hostname, allowed.port)


def check_journal_url(url):
    """Stopped unless the registration's journal URL is an /events/organizations/… URL on the journal host."""
    if not url or not on_journal_host(url):
        raise Stopped(f"the journal URL must be on {settings.ADOBE_JOURNAL_URL} (see ADOBE_JOURNAL_URL)")
    if "/events/organizations/" not in urllib.parse.urlsplit(url).path:
        raise Stopped("the journal URL should look like …/events/organizations/{org}/integrations/{credential}/{id}")


def first_url(registration, start):
    """Where a cursor with no position begins: ``oldest`` (no parameter), ``latest``, or ``seek=-PT…S``."""
    base = registration.journal_url.split("?", 1)[0]
    query = {"limit": str(PAGE_LIMIT)}
    if start == "latest":
        query["latest"] = "true"
    elif start.startswith("seek="):
        query["seek"] = start[len("seek=") :]
    return f"{base}?{urllib.parse.urlencode(query)}"


def since_url(registration, position):
    base = registration.journal_url.split("?", 1)[0]
    return f"{base}?{urllib.parse.urlencode({'since': position, 'limit': str(PAGE_LIMIT)})}"


def seek_since(moment, now=None):
    """The ``seek`` start that reaches back to ``moment`` (Adobe takes a negative ISO-8601 duration)."""
    seconds = max(1, int(((now or timezone.now()) - moment).total_seconds()))
    return f"seek=-PT{seconds}S"


def links(header, base):
    """{rel: absolute URL} from a Link header: ``<url>; rel="next", <url>; rel="validate"``."""
    found = {}
    for part in (header or "").split(","):
        target, _, params = part.strip().partition(">")
        if not target.startswith("<"):
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "rel":
                found[value.strip().strip('"')] = urllib.parse.urljoin(base, target[1:])
    return found


# --- Pages ------------------------------------------------------------------------------------------------------


@dataclass
class Page:
    entries: list = field(default_factory=list)
    last: str = ""  # _page.last, else the last entry's position
    next_url: str = ""
    retry_after: float = 0.0
    at_end: bool = False


def read_page(registration, url):
    """One journal page; Expired on 410, Stopped on refused credentials, Transient after retries."""
    if not on_journal_host(url):
        raise Stopped(f"Adobe's next link left the journal host ({urllib.parse.urlsplit(url).netloc}): not followed")
    answer = _get_journal(registration, url, token(registration))
    if answer.status in (401, 403):
        answer = _get_journal(registration, url, token(registration, renew=True))  # expired mid-run: renew once
    if answer.status in (401, 403):
        raise Stopped(f"Adobe answered {answer.status} to the journal: the credentials lack access to it")
    if answer.status == 410:
        raise Expired(url)
    next_url = links(answer.headers.get("link"), url).get("next", "")
    if answer.status == 204:
        return Page(next_url=next_url, retry_after=_retry_after(answer.headers, 10.0), at_end=True)
    if answer.status != 200:
        raise Transient(f"the journal answered {answer.status}")
    return _parse_page(answer.body, next_url)


def _get_journal(registration, url, bearer):
    headers = {
        "Authorization": f"Bearer {bearer}",
        "x-api-key": registration.ims_client_id,
        "x-ims-org-id": registration.ims_org_id,
        "Accept": "application/json",
    }
    return retrying("GET", url, headers)


def _parse_page(body, next_url):
    try:
        document = wire.parse_json(body)
    except wire.Malformed as exc:
        raise Transient("the journal's page is not JSON") from exc
    if not isinstance(document, dict):
        raise Transient("the journal's page is not an object")
    entries = document.get("events")
    entries = entries if isinstance(entries, list) else []
    page_info = document.get("_page") if isinstance(document.get("_page"), dict) else {}
    last = wire.text(page_info.get("last"))
    if not last:
        positions = [wire.text(e.get("position")) for e in entries if isinstance(e, dict)]
        last = next((p for p in reversed(positions) if p), "")
    return Page(entries=entries, last=last, next_url=next_url)


# --- Entries as rows -------------------------------------------------------------------------------------------


def entry_row(entry, registration_id):
    """The row the webhook receiver would store for the entry's event; an unreadable one as ``other``, flagged.

    Adobe does not show what ``event`` holds for Marketo (reference 3.7): the delivered payload or the bare
    CloudEvent, both of which normalise_io reads. With no eventid, the entry's position keys it, so
    reading the journal twice stores it once.
    """
    element = entry.get("event") if isinstance(entry, dict) else None
    if not isinstance(element, dict) and isinstance(entry, dict) and ("type" in entry or "data" in entry):
        element = {k: v for k, v in entry.items() if k != "position"}  # a bare CloudEvent, not wrapped
    position = wire.text(entry.get("position")) if isinstance(entry, dict) else ""
    if isinstance(element, dict):
        try:
            row = wire.normalise_io(element)
        except (wire.Malformed, TypeError, ValueError, AttributeError):
            row = None
        if row is not None:
            if row["event_uid"] is None and position:
                row["event_uid"] = wire.key(f"journal:{registration_id}:{position}")
            return row
    return _malformed_row(entry, position, registration_id)


def _malformed_row(entry, position, registration_id):
    flags = {MALFORMED_FLAG}
    row = wire._row(Stream.OTHER, "", None, flags)
    row["event_uid"] = wire.key(f"journal:{registration_id}:{position}") if position else None
    try:
        raw = wire.dump_json(entry)
    except wire.Malformed:
        raw = json.dumps({"unreadable": repr(entry)[:10000]})
    row["raw"], row["flags"] = raw, sorted(flags)
    return row


# --- Runs --------------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    pages: int = 0
    entries: int = 0
    stored: int = 0
    duplicates: int = 0
    malformed: int = 0
    gaps: int = 0
    at_end: bool = False
    busy: bool = False
    stopped: str = ""
    error: str = ""
    newest_event_at: object = None

    def as_json(self):
        done = {k: v for k, v in self.__dict__.items() if k != "newest_event_at"}
        done["newest_event_at"] = self.newest_event_at.isoformat() if self.newest_event_at else None
        return done


def start_backfill(registration_id, start="oldest"):
    """Reset the registration's backfill cursor to begin at ``start`` (oldest, latest, seek=-PT…S)."""
    JournalCursor.objects.update_or_create(
        registration_id=registration_id,
        kind=JournalCursor.Kind.BACKFILL,
        defaults={
            "position": "",
            "next_url": "",
            "start": start,
            "started_at": timezone.now(),
            "updated_at": None,
            "caught_up_at": None,
            "finished_at": None,
            "entries_read": 0,
            "events_stored": 0,
            "malformed": 0,
            "newest_event_at": None,
            "not_before": None,
        },
    )


def run(registration_id, kind, max_pages=None, on_page=None, budget_seconds=None):
    """Read the registration's journal on its ``kind`` cursor until its end (or ``max_pages``); a Progress.

    Returns at once with ``busy`` when another job holds the registration. Stopped is recorded on the
    registration (its Setup page shows the reason) and reported in ``stopped``; Transient in ``error``.
    """
    owner = uuid.uuid4().hex
    progress = Progress()
    if not _take_lease(registration_id, owner):
        progress.busy = True
        return progress
    try:
        _read(registration_id, kind, owner, progress, max_pages, on_page, budget_seconds)
    except Stopped as exc:
        progress.stopped = str(exc)
        _stop(registration_id, str(exc))
    except Transient as exc:
        progress.error = str(exc)
        log.warning("journal of registration %s: %s; the next run resumes", registration_id, exc)
    except LeaseLost as exc:
        progress.busy, progress.error = True, str(exc)  # the page was rolled back; the other job goes on
    finally:
        _release_lease(registration_id, owner)
    return progress


def _read(registration_id, kind, owner, progress, max_pages, on_page, budget_seconds):
    registration = AdobeRegistration.objects.select_related("source").get(pk=registration_id)
    check_journal_url(registration.journal_url)
    cursor, _ = JournalCursor.objects.get_or_create(registration=registration, kind=kind, defaults={"start": "oldest"})
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    # The next page is fetched while this one is stored: Adobe's time and the database's overlap. Only
    # the fetch runs ahead; the cursor still moves with each committed page, in order.
    with futures.ThreadPoolExecutor(1, thread_name_prefix="journal-fetch") as fetcher:
        ahead = None  # (url, future)
        while max_pages is None or progress.pages < max_pages:
            if deadline and time.monotonic() > deadline:
                return
            url = cursor.next_url or (since_url(registration, cursor.position) if cursor.position else None)
            url = url or first_url(registration, cursor.start or "oldest")
            fetched = ahead[1] if ahead and ahead[0] == url else fetcher.submit(_fetch, registration, url)
            try:
                page, rows = _await(fetched, registration.id, owner)
            except Expired:
                if progress.gaps >= MAX_GAPS_PER_RUN:
                    raise Transient("the journal keeps answering 410, even from its oldest position") from None
                _record_gap(registration, cursor, owner)
                progress.gaps += 1
                ahead = None
                continue
            more = max_pages is None or progress.pages + 1 < max_pages
            ahead = (
                (page.next_url, fetcher.submit(_fetch, registration, page.next_url))
                if (more and page.next_url and not page.at_end)
                else None
            )
            _commit_page(registration, cursor, page, rows, owner, progress)
            progress.pages += 1
            if on_page:
                on_page(progress)
            if page.at_end:
                progress.at_end = True
                return


def _await(fetched, registration_id, owner):
    """The fetched page, the lease renewed while it is awaited: a slow Adobe (retries, backoff, timeouts)
    does not make a live job look dead, and a killed one stops renewing, so its lease runs out soon."""
    while True:
        done, _pending = futures.wait([fetched], timeout=_renew_every())
        if done:
            return fetched.result()
        _renew_lease(registration_id, owner, timezone.now())


def _fetch(registration, url):
    """A page and its rows: parsed and normalised on the fetch thread, while the previous page is stored."""
    page = read_page(registration, url)
    return page, [entry_row(entry, registration.id) for entry in page.entries]


def _commit_page(registration, cursor, page, rows, owner, progress):
    """The page's events and the cursor after them, in one transaction; announced after commit."""
    now = timezone.now()
    malformed = sum(1 for row in rows if MALFORMED_FLAG in row["flags"])
    newest = max((row["occurred_at"] for row in rows if row["occurred_at"]), default=None)
    meta = _batch_meta(registration, cursor, rows, now)
    with transaction.atomic():
        _renew_lease(registration.id, owner, now)
        stored = store(rows, registration.source, PROTOCOL, now, meta) if rows else None
        _advance(cursor, page, rows, stored, malformed, newest, now)
    progress.entries += len(rows)
    progress.malformed += malformed
    progress.newest_event_at = max(filter(None, (progress.newest_event_at, newest)), default=None)
    if stored is not None:
        progress.stored += stored.accepted
        progress.duplicates += stored.duplicates
        _announce(stored, registration.source, rows, now)


def _advance(cursor, page, rows, stored, malformed, newest, now):
    if page.last:
        cursor.position = page.last
    # Adobe's next link carries the position and limit; on a page without one, since= is built from it.
    cursor.next_url = page.next_url
    cursor.entries_read += len(rows)
    cursor.events_stored += stored.accepted if stored else 0
    cursor.malformed += malformed
    if newest and (cursor.newest_event_at is None or newest > cursor.newest_event_at):
        cursor.newest_event_at = newest
    cursor.updated_at = now
    if page.at_end:
        cursor.caught_up_at = now
        cursor.not_before = now + timedelta(seconds=page.retry_after)
        if cursor.kind == JournalCursor.Kind.BACKFILL:
            cursor.finished_at = now
    cursor.save()


def _batch_meta(registration, cursor, rows, now):
    """Backfilled batches are late: received-time rules skip them, occurred-time and match rules see them."""
    oldest = min((row["occurred_at"] for row in rows if row["occurred_at"]), default=None)
    late = cursor.kind == JournalCursor.Kind.BACKFILL or (oldest is not None and now - oldest > LATE_AFTER)
    meta = {"journal": {"registration": registration.id, "cursor": cursor.kind}}
    if late:
        meta["late"] = True
    return meta


def _announce(stored, source, rows, received_at):
    duplicates = {source.id: stored.duplicates} if stored.duplicates else {}
    foreign = sum(1 for row in rows if FOREIGN_FLAG in row["flags"])
    announce.batch_committed(stored, received_at, duplicates, {source.id: foreign} if foreign else {})


def _record_gap(registration, cursor, owner):
    """410: restart from the oldest kept position, noting what may have expired unread in between."""
    with transaction.atomic():
        _renew_lease(registration.id, owner, timezone.now())
        JournalGap.objects.create(
            registration=registration,
            kind=cursor.kind,
            expired_position=cursor.position,
            last_read_at=cursor.updated_at,
            detail=(
                "the journal no longer held the position read last (older than its 7 days): events between "
                f"{cursor.updated_at:%Y-%m-%d %H:%M} UTC and the oldest kept one may be lost"
                if cursor.updated_at
                else "the journal no longer held the starting position: reading restarted from the oldest kept one"
            ),
        )
        cursor.position, cursor.next_url, cursor.start = "", "", "oldest"
        cursor.save(update_fields=["position", "next_url", "start"])


# --- The lease and the stop ---------------------------------------------------------------------------------------


def _lease():
    """How long a job may go without renewing its lease before another may take over (a killed worker).

    A live job renews it with each page it commits and, while it awaits a page, every third of it."""
    return timedelta(seconds=settings.FLUXO_JOURNAL_LEASE_SECONDS)


def _renew_every():
    return max(0.2, settings.FLUXO_JOURNAL_LEASE_SECONDS / 3)


def lease_seconds():
    return settings.FLUXO_JOURNAL_LEASE_SECONDS


def is_stopped(registration_id):
    return AdobeRegistration.objects.filter(
        pk=registration_id, journal_state=AdobeRegistration.Journal.STOPPED
    ).exists()


def _take_lease(registration_id, owner):
    now = timezone.now()
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    taken = (
        AdobeRegistration.objects.filter(free, pk=registration_id)
        .exclude(journal_state=AdobeRegistration.Journal.STOPPED)
        .update(leased_until=now + _lease(), lease_owner=owner, journal_state=AdobeRegistration.Journal.RUNNING)
    )
    return taken == 1


def _renew_lease(registration_id, owner, now):
    """Inside the page's transaction: a job presumed dead (its lease taken over) commits nothing."""
    renewed = AdobeRegistration.objects.filter(pk=registration_id, lease_owner=owner).update(
        leased_until=now + _lease()
    )
    if renewed != 1:
        raise LeaseLost(f"registration {registration_id}: another journal job holds it now")


def _release_lease(registration_id, owner):
    AdobeRegistration.objects.filter(pk=registration_id, lease_owner=owner).exclude(
        journal_state=AdobeRegistration.Journal.STOPPED
    ).update(leased_until=None, lease_owner="", journal_state=AdobeRegistration.Journal.IDLE)
    AdobeRegistration.objects.filter(pk=registration_id, lease_owner=owner).update(leased_until=None, lease_owner="")


def _stop(registration_id, reason):
    log.warning("journal of registration %s stopped: %s", registration_id, reason)
    AdobeRegistration.objects.filter(pk=registration_id).update(
        journal_state=AdobeRegistration.Journal.STOPPED, stopped_reason=reason, stopped_at=timezone.now()
    )


def resume(registration_id):
    """After the admin fixed what stopped it: the journal may run again (its cursors are where they were)."""
    AdobeRegistration.objects.filter(pk=registration_id).update(
        journal_state=AdobeRegistration.Journal.IDLE, stopped_reason="", stopped_at=None
    )


# --- The poller and the state for /metrics ---------------------------------------------------------------------


def poll_due(budget_seconds=40):
    """One continuous run for each registration polled continuously whose retry-after has passed, all of
    them within ``budget_seconds`` (the rest wait for the next tick)."""
    now = timezone.now()
    deadline = time.monotonic() + budget_seconds
    polled = {}
    registrations = AdobeRegistration.objects.filter(
        mode__in=[AdobeRegistration.Mode.SAFETY_NET, AdobeRegistration.Mode.ONLY]
    ).exclude(journal_state=AdobeRegistration.Journal.STOPPED)
    for registration in registrations:
        cursor = JournalCursor.objects.filter(registration=registration, kind=JournalCursor.Kind.CONTINUOUS).first()
        if cursor and cursor.not_before and cursor.not_before > now:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        polled[registration.id] = run(registration.id, JournalCursor.Kind.CONTINUOUS, budget_seconds=left)
    return {rid: progress.as_json() for rid, progress in polled.items()}


def state(now=None):
    """Per registration and cursor: the journal's state and how far behind it is (for /metrics).

    ``lag_seconds``: 0 when the cursor reached the journal's end at its last read, else the age of the
    newest event it has read (None before it read any).
    """
    now = now or timezone.now()
    found = []
    for cursor in JournalCursor.objects.select_related("registration").order_by("registration_id", "kind"):
        registration = cursor.registration
        caught_up = cursor.caught_up_at is not None and cursor.caught_up_at == cursor.updated_at
        lag = None
        if caught_up:
            lag = 0.0
        elif cursor.newest_event_at:
            lag = max(0.0, (now - cursor.newest_event_at).total_seconds())
        found.append(
            {
                "registration": registration.name,
                "registration_id": registration.id,
                "cursor": cursor.kind,
                "state": registration.journal_state,
                "lag_seconds": lag,
                "entries_read": cursor.entries_read,
                "events_stored": cursor.events_stored,
                "malformed": cursor.malformed,
                "gaps": registration.gaps.filter(kind=cursor.kind).count(),
            }
        )
    return found
