"""Where each Adobe registration stands against Adobe's rules, what to do, and what an outage cost.

Adobe (reference 3.5): a registration with at least 10 delivery attempts in 24 hours, 80 % of them failed,
goes Unstable; 24 hours later, still failing, Disabled, until someone re-enables it in the Developer
Console. Disabled, the webhook gets nothing, but the journal keeps every event for 7 days.

Two sources of truth, the better first:
- Adobe's registration API (``webhook_status``, ``enabled``), polled when credentials allow;
- Fluxo's own view: how long since the webhook last delivered, and whether the journal holds events
  the webhook never brought.
"""

import logging
import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from streams import announce, journal, uptime
from streams.models import AdobeRegistration, Batch, Event, JournalCursor

log = logging.getLogger(__name__)

ACTIVE, AT_RISK, UNSTABLE, DISABLED, UNKNOWN = "active", "at_risk", "unstable", "disabled", "unknown"
PROBABLY_OFF = "probably_unstable_or_disabled"
# Silence that is worth a look, and the silence after which Adobe has most likely marked it unstable.
SILENT_AT_RISK = timedelta(minutes=30)
SILENT_PROBABLY_OFF = timedelta(hours=24)
ADOBE_STATE_FRESH = timedelta(hours=1)
WEBHOOK_PROTOCOLS = ("io",)
# Adobe's registration API (getRegistrationById): its API reference (AdobeDocs/adobe-io-events,
# static/events-api-reference.yaml, RegistrationHalModel) documents ``enabled`` as a boolean ("Indicates if
# the registration is enabled or disabled") and ``webhook_status`` only as a string ("Status of the event
# registration"), with no list of values. The values below are those Adobe's own SDK tests use
# (adobe/aio-lib-events test/mock.js: "verified"; "hook_unreachable" with enabled false), lower case; the
# Console's words (Active, Unstable, Disabled) are accepted too, in any case. ``enabled`` false is the one
# documented sign of Disabled; "hook_unreachable" while still enabled is read as Unstable (an inference).
ADOBE_ACTIVE_STATUSES = {"verified", "active"}
ADOBE_UNSTABLE_STATUSES = {"hook_unreachable", "unstable"}
ADOBE_DISABLED_STATUSES = {"disabled"}
ADOBE_MIN_ATTEMPTS, ADOBE_FAILED_SHARE = 10, 0.8
AT_RISK_FAILED_SHARE = 0.2  # Adobe calls a registration active while at least 20 % of attempts succeed
AT_RISK_REDELIVERIES = 10
RETENTION = timedelta(days=7)
# Adobe's retry schedule (reference 3.5): after the first attempt, 1, 2, 4, 8, then every 15 minutes.
RETRY_OFFSETS_MIN = (0, 1, 3, 7, 15)
RETRY_EVERY_MIN = 15
GAP_MIN = timedelta(minutes=10)

ADVICE = {
    ACTIVE: "Nothing to do.",
    AT_RISK: (
        "Adobe is retrying deliveries Fluxo did not acknowledge. Check that Fluxo's webhook URL is reachable; "
        "Adobe disables a registration after a day of mostly failed deliveries."
    ),
    UNSTABLE: (
        "Adobe marked the registration unstable: it will disable it in 24 hours unless deliveries succeed. "
        "Fix what blocks the webhook now; the journal keeps the events 7 days."
    ),
    DISABLED: (
        "Adobe disabled the registration: re-enable it in the Adobe Developer Console, then run a journal "
        "backfill (manage.py journal_backfill) to bring back what the webhook missed, within 7 days."
    ),
    PROBABLY_OFF: (
        "No webhook delivery for a day: Adobe has probably marked the registration unstable or disabled. Check it "
        "in the Adobe Developer Console (or give Fluxo credentials to check it), then run a journal backfill."
    ),
    UNKNOWN: "No delivery seen yet.",
}


@dataclass
class Health:
    level: str
    reasons: list = field(default_factory=list)

    @property
    def advice(self):
        return ADVICE[self.level]

    @property
    def at_risk(self):
        return self.level in (AT_RISK, UNSTABLE, DISABLED, PROBABLY_OFF)


def estimate(registration, now=None):
    """The registration's Health, from Adobe's reported state when fresh, else from what Fluxo saw."""
    now = now or timezone.now()
    reported = _reported(registration, now)
    seen = _seen(registration, now)
    if reported and reported.level == UNKNOWN:
        return Health(seen.level, reported.reasons + seen.reasons)
    if reported and reported.level != ACTIVE:
        return Health(reported.level, reported.reasons + seen.reasons)
    if reported and seen.level in (AT_RISK, PROBABLY_OFF):
        return Health(AT_RISK, reported.reasons + seen.reasons)
    return reported or seen


def _reported(registration, now):
    checked = registration.adobe_checked_at
    if checked is None or now - checked > ADOBE_STATE_FRESH or registration.adobe_enabled is None:
        return None
    status = registration.adobe_webhook_status.strip().lower()
    when = f"(Adobe, {checked:%H:%M} UTC)"
    shown = f"webhook_status {status!r}" if status else "no webhook_status"
    if registration.adobe_enabled is False or status in ADOBE_DISABLED_STATUSES:
        return Health(DISABLED, [f"disabled, {shown} {when}"])
    if status in ADOBE_UNSTABLE_STATUSES:
        return Health(UNSTABLE, [f"unstable, {shown} {when}"])
    if status and status not in ADOBE_ACTIVE_STATUSES:
        # A value nobody has documented: say what Adobe answered, and let what Fluxo saw decide.
        return Health(UNKNOWN, [f"enabled, {shown} (not a value Fluxo knows) {when}"])
    return Health(ACTIVE, [f"enabled, {shown} {when}"])


def _seen(registration, now):
    last = _last_webhook_batch(registration)
    failed, succeeded, redelivered = _answers_last_day(registration, now)
    down = _while_down(registration, now)
    unseen = sum(n for _start, _end, n in down)
    attempts = failed + unseen + succeeded
    if last is None and not failed:
        return Health(UNKNOWN, ["no webhook delivery yet"])
    reasons = [f"last webhook delivery {_ago(now - last)} ago" if last else "no webhook delivery stored"]
    reasons += [_down_reason(start, end, n) for start, end, n in down]
    if failed:
        reasons.append(f"{failed} of {attempts} webhook requests in 24 h answered with an error (4xx or 503)")
    failed += unseen
    if redelivered:
        reasons.append(f"{redelivered} deliveries in 24 h were Adobe's retries")
    # Adobe's rule, as far as Fluxo can see the attempts: at least 10 in 24 hours, 80 % of them failed.
    if attempts >= ADOBE_MIN_ATTEMPTS and failed >= ADOBE_FAILED_SHARE * attempts:
        return Health(PROBABLY_OFF, reasons)
    if last is None:
        return Health(AT_RISK, reasons)
    silence = now - last
    missed = _journal_ahead_of_webhook(registration, last)
    if missed:
        reasons.append("the journal holds newer events than the webhook delivered")
    if silence >= SILENT_PROBABLY_OFF:
        return Health(PROBABLY_OFF, reasons)
    if (failed and failed >= AT_RISK_FAILED_SHARE * attempts) or redelivered >= AT_RISK_REDELIVERIES:
        return Health(AT_RISK, reasons)
    if silence >= SILENT_AT_RISK and missed:  # a quiet Marketo alone is no risk: the journal says it is not quiet
        return Health(AT_RISK, reasons)
    return Health(ACTIVE, reasons)


def _while_down(registration, now):
    """[(start, end, Adobe's failed attempts then)] of the last 24 h in which no Fluxo process ran.

    Fluxo saw none of those attempts. Their number is estimated from the source's usual webhook rate
    (requests a minute over the last 7 days it was up) and Adobe's retry schedule: a delivery due at
    minute t of an outage of D minutes is tried at each retry offset below D - t, all failing."""
    week = uptime.down_spans(now - RETENTION, now)
    down = [(max(start, now - timedelta(hours=24)), end) for start, end in week if end > now - timedelta(hours=24)]
    if not down:
        return []
    sources = [registration.source_id, *registration.source.delivers_for.values_list("id", flat=True)]
    first = (
        Batch.objects.filter(source_id__in=sources, protocol__in=WEBHOOK_PROTOCOLS, received_at__gte=now - RETENTION)
        .order_by("received_at")
        .values_list("received_at", flat=True)
        .first()
    )
    if first is None:
        return [(start, end, 0) for start, end in down]
    requests = Batch.objects.filter(source_id__in=sources, protocol__in=WEBHOOK_PROTOCOLS, received_at__gte=first)
    up_minutes = (now - first).total_seconds() / 60 - sum(
        (end - max(start, first)).total_seconds() / 60 for start, end in week if end > first
    )
    rate = requests.count() / max(up_minutes, 1.0)
    return [(start, end, round(rate * _attempts_in(int((end - start).total_seconds() // 60)))) for start, end in down]


def _attempts_in(minutes):
    """Adobe's attempts at the deliveries due in each minute of an outage of ``minutes``, summed."""
    total = 0
    for left in range(1, minutes + 1):  # a delivery due with ``left`` minutes of outage still to go
        early = sum(1 for offset in RETRY_OFFSETS_MIN if offset < left)
        late = max(0, (left - RETRY_OFFSETS_MIN[-1] - 1) // RETRY_EVERY_MIN)
        total += early + late
    return total


def _down_reason(start, end, unseen):
    text = f"no Fluxo process ran from {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC ({_ago(end - start)})"
    if unseen:
        return text + f": about {unseen} webhook attempts by Adobe failed then, unseen"
    return text + ": any webhook delivery Adobe tried then failed, unseen"


def _answers_last_day(registration, now):
    """(failed, succeeded, redelivered) webhook requests of the registration's source over 24 hours.

    Succeeded: webhook batch rows (a request whose events were all duplicates writes none: a few are
    missed). Failed: the refusals and 503s the receivers counted per hour in Redis.
    """
    source = registration.source
    counts = announce.last_day(source.id, source.ingest_key, now)
    failed = counts.get("refused", 0) + counts.get("unavailable", 0)
    succeeded = Batch.objects.filter(
        source=source, protocol__in=WEBHOOK_PROTOCOLS, received_at__gte=now - timedelta(hours=24)
    ).count()
    return failed, succeeded, counts.get("redelivered", 0)


def _last_webhook_batch(registration):
    sources = [registration.source_id, *registration.source.delivers_for.values_list("id", flat=True)]
    return (
        Batch.objects.filter(source_id__in=sources, protocol__in=WEBHOOK_PROTOCOLS)
        .order_by("-received_at")
        .values_list("received_at", flat=True)
        .first()
    )


def _journal_ahead_of_webhook(registration, last_webhook):
    newest = (
        JournalCursor.objects.filter(registration=registration, newest_event_at__isnull=False)
        .order_by("-newest_event_at")
        .values_list("newest_event_at", flat=True)
        .first()
    )
    return newest is not None and newest - last_webhook > GAP_MIN


def _ago(delta):
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def at_risk_sources(now=None):
    """{source id: Health} of registrations at risk or worse (alerts' "registration at risk" condition)."""
    found = {}
    for registration in AdobeRegistration.objects.select_related("source"):
        health = estimate(registration, now)
        if health.at_risk:
            found[registration.source_id] = health
    return found


def stopped_sources():
    """{source id: reason} of registrations whose journal is stopped (alerts' "journal stopped" condition)."""
    stopped = AdobeRegistration.objects.filter(journal_state=AdobeRegistration.Journal.STOPPED)
    return dict(stopped.values_list("source_id", "stopped_reason"))


# --- Adobe's registration API ------------------------------------------------------------------------------


def registration_url(registration):
    """GET /events/{consumerOrgId}/{projectId}/{workspaceId}/registrations/{registrationId} on ADOBE_IO_API_URL."""
    parts = [p for p in registration.registration_path.split("/") if p]
    if len(parts) != 4:
        return None
    org, project, workspace, registration_id = (urllib.parse.quote(p, safe="") for p in parts)
    return f"{settings.ADOBE_IO_API_URL}/events/{org}/{project}/{workspace}/registrations/{registration_id}"


def poll_adobe_states():
    """Ask Adobe for each registration with credentials and a registration path; {id: status or error}."""
    done = {}
    for registration in AdobeRegistration.objects.exclude(registration_path="").exclude(client_secret_encrypted=""):
        done[registration.id] = poll_adobe_state(registration)
    return done


def poll_adobe_state(registration):
    url = registration_url(registration)
    if url is None:
        return _checked(registration, error="the registration path must be org/project/workspace/registration")
    try:
        document = _get_registration(registration, url)
    except (journal.Stopped, journal.Transient) as exc:
        return _checked(registration, error=str(exc))
    status = document.get("webhook_status")
    enabled = document.get("enabled")
    return _checked(
        registration,
        status=status if isinstance(status, str) else "",
        enabled=enabled if isinstance(enabled, bool) else None,
    )


def _get_registration(registration, url):
    for renew in (False, True):
        headers = {
            "Authorization": f"Bearer {journal.token(registration, renew=renew)}",
            "x-api-key": registration.ims_client_id,
            "x-ims-org-id": registration.ims_org_id,
            "Accept": "application/json",
        }
        answer = journal.retrying("GET", url, headers)
        if answer.status not in (401, 403):
            break
    if answer.status != 200:
        raise journal.Transient(f"the registration API answered {answer.status}")
    return journal.json_object(answer.body)


def _checked(registration, status="", enabled=None, error=""):
    fields = {"adobe_checked_at": timezone.now(), "adobe_check_error": error[:500]}
    if not error:
        fields.update(adobe_webhook_status=status[:32], adobe_enabled=enabled)
    AdobeRegistration.objects.filter(pk=registration.pk).update(**fields)
    if error:
        log.warning("registration %s: Adobe's state unavailable: %s", registration.pk, error)
    return error or status


# --- The gap report -------------------------------------------------------------------------------------------


@dataclass
class Gap:
    start: object
    end: object
    recovered: int = 0  # events a journal read brought that occurred in the gap
    beyond_journal: bool = False  # older than the journal keeps: what was not recovered cannot come back

    @property
    def duration(self):
        return self.end - self.start


def gap_report(source, days=14, now=None, minimum=GAP_MIN):
    """The periods in which ``source`` received no webhook delivery for longer than ``minimum``.

    Each says how many events journal reads brought back that occurred in it, and whether it lies
    (partly) beyond the journal's 7 days, so that what is still missing cannot come back.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    moments = (
        Batch.objects.filter(source=source, protocol__in=WEBHOOK_PROTOCOLS, received_at__gte=since)
        .order_by("received_at")
        .values_list("received_at", flat=True)
    )
    gaps, previous = [], None
    for moment in moments.iterator(chunk_size=5000):
        if previous is not None and moment - previous > minimum:
            gaps.append(Gap(previous, moment))
        previous = moment
    if previous is not None and now - previous > minimum:
        gaps.append(Gap(previous, now))
    for gap in gaps:
        gap.recovered = _recovered(source, gap)
        gap.beyond_journal = gap.start < now - RETENTION
    return gaps


def error_hours(source, now=None):
    """The hours of the last day in which Fluxo answered the source's webhook with errors (refusals, 503s):
    Adobe retried those deliveries for 24 hours; what it then dropped only a journal read brings back."""
    return announce.error_hours(source.id, source.ingest_key, now or timezone.now())


def _recovered(source, gap):
    return Event.objects.filter(
        source=source, batch__protocol=journal.PROTOCOL, occurred_at__gte=gap.start, occurred_at__lt=gap.end
    ).count()
