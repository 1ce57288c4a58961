"""Sending the Delivery rows the lifecycle writes: claim, hold back, send, record, finish.

A delivery is claimed with a conditional UPDATE (pending and due → claimed, with a random claim
token), so two workers handed the same id never both send it. What can hold a message back is
checked in a fixed order, as Alertmanager's pipeline does: a disabled destination (cancelled), an
acknowledged alert's reminder (suppressed), a matching silence (suppressed), a resolved message whose
firing message this destination never got (cancelled), a mute window (postponed to its end), the
destination's rate limit (postponed). Then the message is built and sent, the attempt recorded, and
the delivery finished with an UPDATE conditional on the claim token: a claim the sweeper took back
and gave to another worker cannot be finished by the first.

**At least once.** Nothing holds a transaction or a lock while a message is on the wire. A worker
killed mid-send leaves its delivery claimed; ``sweep()`` (run by the beat) puts claims older than a
few minutes, longer than the task's hard time limit, back to pending and they are sent again. So
after a crash a message can arrive twice, but it is never lost.
"""

import logging
import random
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from alerts import lifecycle, messages, queue, silencing, transports
from alerts.models import Alert, AlertEvent, Delivery, DeliveryAttempt

log = logging.getLogger(__name__)

DISPATCH_LIMIT = 500
# Seconds to wait after the 1st, 2nd, … failed try; the last value repeats.
BACKOFF = (10, 30, 60, 120, 300, 600, 1800, 3600)
MAX_ATTEMPTS = 12
MAX_AGE = timedelta(hours=24)  # from the first try: then the delivery fails for good
# Longer than the deliver task's hard time limit (120 s): an older claim's worker is gone.
STALE_CLAIM = timedelta(minutes=3)
# A resolved message waits while its firing message is still on its way to the same destination.
RESOLVED_WAIT = timedelta(seconds=30)
RATE_WINDOW = timedelta(seconds=60)
# A queued deliver task that has not claimed its row by then was lost (the broker restarted): queue again.
REQUEUE_AFTER = timedelta(minutes=1)

Status = Delivery.Status
Reason = Delivery.Reason


# --- Dispatching and the sweeper ----------------------------------------------------------------------------


def dispatch_due(now=None, limit=DISPATCH_LIMIT):
    """Queue a ``deliver`` task for each pending delivery that is due, oldest first; the ids queued.

    A delivery queued less than REQUEUE_AFTER ago is left alone, so a backlog does not fill the
    broker with a copy per beat tick; queuing one twice would still be harmless (one claim wins).
    The broker being down stops the round; the next beat tick tries again.
    """
    now = now or timezone.now()
    due = Delivery.objects.filter(status=Status.PENDING, due_at__lte=now).filter(
        Q(queued_at__isnull=True) | Q(queued_at__lt=now - REQUEUE_AFTER)
    )
    queued = []
    for delivery_id in due.order_by("due_at", "id").values_list("id", flat=True)[:limit]:
        try:
            queue.deliver(delivery_id)
        except Exception as exc:  # the broker is unreachable: the beat dispatches them later
            log.warning("could not queue deliveries (%s)", exc.__class__.__name__)
            break
        queued.append(delivery_id)
    Delivery.objects.filter(pk__in=queued).update(queued_at=now)
    return queued


def sweep(now=None, older_than=STALE_CLAIM, limit=DISPATCH_LIMIT):
    """Put claims older than ``older_than`` back to pending (their worker died); how many.

    This is what makes delivery at least once: the message a killed worker may or may not have sent
    is sent again, so it can arrive twice but is never lost. Each is recorded as an "abandoned" attempt.
    """
    now = now or timezone.now()
    stale = Delivery.objects.filter(status=Status.CLAIMED, claimed_at__lt=now - older_than)
    swept = 0
    for delivery_id, claim in stale.values_list("id", "claim")[:limit]:
        with transaction.atomic():
            taken = Delivery.objects.filter(pk=delivery_id, status=Status.CLAIMED, claim=claim).update(
                status=Status.PENDING,
                claim="",
                claimed_at=None,
                queued_at=None,
                outcome="its worker stopped mid-send; sending again",
            )
            if taken:
                DeliveryAttempt.objects.create(
                    delivery_id=delivery_id, at=now, outcome="abandoned", detail="claim expired; put back to pending"
                )
                swept += 1
    if swept:
        log.warning("swept %d abandoned deliveries back to pending", swept)
    return swept


# --- Sending one ------------------------------------------------------------------------------------------------


def send(delivery_id, now=None):
    """Claim and send one delivery; what became of it (sent, retry, failed, suppressed, cancelled,
    postponed, lost), or "skipped" when it was not pending and due (someone else has it, or it is done)."""
    token = claim(delivery_id, now or timezone.now())
    if token is None:
        return "skipped"
    return send_claimed(delivery_id, token, now)


def claim(delivery_id, now):
    """Claim a pending, due delivery; the claim token, or None."""
    token = secrets.token_hex(16)
    claimed = Delivery.objects.filter(pk=delivery_id, status=Status.PENDING, due_at__lte=now).update(
        status=Status.CLAIMED, claimed_at=now, claim=token
    )
    return token if claimed else None


def send_claimed(delivery_id, token, now=None):
    """Everything after the claim. ``now`` fixes the clock (tests); None reads it at each step."""
    clock = (lambda: now) if now is not None else timezone.now
    delivery = Delivery.objects.select_related("destination", "alert__rule", "alert__source", "rule").get(
        pk=delivery_id
    )
    if delivery.reason != Reason.TEST:
        held = hold(delivery, token, clock())
        if held:
            return held
        _freeze(delivery.alert, clock())
    try:
        message = messages.build(delivery)
    except Exception as exc:  # a bug or odd stored data: retrying would build the same thing
        log.exception("delivery %s: could not build the message", delivery_id)
        error = transports.SendError(f"could not build the message ({exc.__class__.__name__})", transient=False)
        return _failed(delivery, token, error, clock(), 0)
    started = time.monotonic()
    try:
        result = transports.send(delivery.destination, message, _previous(delivery))
    except transports.SendError as exc:
        return _failed(delivery, token, exc, clock(), _ms(started))
    except Exception as exc:  # an unexpected error in a transport: treat as temporary, logged with its stack
        log.exception("delivery %s: the transport failed", delivery_id)
        error = transports.SendError(f"unexpected error ({exc.__class__.__name__})")
        return _failed(delivery, token, error, clock(), _ms(started))
    return _succeeded(delivery, token, result, clock(), _ms(started))


def _ms(started):
    return max(0, int((time.monotonic() - started) * 1000))


# --- What holds a message back -------------------------------------------------------------------------------


def hold(delivery, token, now):
    """Cancel, suppress or postpone a claimed delivery if something says so; what happened, or None to send."""
    alert, destination = delivery.alert, delivery.destination
    if not destination.enabled:
        return _close(delivery, token, Status.CANCELLED, "the destination is disabled")
    if alert is None:
        return _close(delivery, token, Status.CANCELLED, "its alert is gone")
    if delivery.reason != Reason.RESOLVED and alert.state in (Alert.State.RESOLVED, Alert.State.INACTIVE):
        return _close(delivery, token, Status.CANCELLED, "the alert resolved before this was sent")
    if delivery.reason == Reason.REMINDER and alert.acknowledged_at is not None:
        return _suppress(delivery, token, now, "the alert is acknowledged")
    silence = silencing.silence_for(alert, now)
    if silence is not None:
        _note_silenced(alert, silence, now)
        return _suppress(delivery, token, now, f"silenced until {messages.when(silence.ends_at)}")
    if delivery.reason == Reason.RESOLVED:
        held = _hold_resolved(delivery, token, now)
        if held:
            return held
    until = silencing.mute_end(alert.rule.mute_windows.all(), now)
    if until is not None:
        return _postpone(delivery, token, until, f"in a mute window until {messages.when(until)}")
    until = rate_limited_until(delivery, now)
    if until is not None:
        return _postpone(delivery, token, until, "the destination's rate limit")
    return None


def _hold_resolved(delivery, token, now):
    """A resolved message goes only where the firing (or a reminder) message went, and after it."""
    earlier = Delivery.objects.filter(
        alert_id=delivery.alert_id,
        destination_id=delivery.destination_id,
        reason__in=[Reason.FIRING, Reason.REMINDER],
    )
    if earlier.filter(status=Status.SENT).exists():
        return None
    if earlier.filter(status__in=[Status.PENDING, Status.CLAIMED]).exists():
        return _postpone(delivery, token, now + RESOLVED_WAIT, "waiting for the firing message to go first")
    return _close(delivery, token, Status.CANCELLED, "the firing message was never sent here")


def rate_limited_until(delivery, now):
    """When the destination has room for another message, if it has none now; None when it has.

    Counts messages sent in the last minute and those being sent by other workers right now (so two
    workers do not both take the last slot). A limit of 0 means no limit.
    """
    limit = delivery.destination.rate_limit_per_minute
    if not limit:
        return None
    to_destination = Delivery.objects.filter(destination_id=delivery.destination_id)
    sent = to_destination.filter(status=Status.SENT, sent_at__gt=now - RATE_WINDOW, sent_at__lte=now)
    sending = to_destination.filter(status=Status.CLAIMED, claimed_at__gt=now - STALE_CLAIM).exclude(pk=delivery.pk)
    if sent.count() + sending.count() < limit:
        return None
    oldest = sent.order_by("sent_at").values_list("sent_at", flat=True).first()
    # Jitter, so deliveries held back together do not all come back in the same instant.
    return (oldest + RATE_WINDOW if oldest else now) + timedelta(seconds=random.uniform(1, 5))


def _note_silenced(alert, silence, now):
    detail = f"silence #{silence.pk} until {messages.when(silence.ends_at)}: {silence.comment[:200]}".rstrip(": ")
    if not AlertEvent.objects.filter(alert=alert, kind="silenced", detail=detail).exists():
        lifecycle.timeline(alert, "silenced", detail, at=now)


def _freeze(alert, now):
    """An event alert still collecting stops now, so the message lists what it will ever list.

    The UPDATE waits for the evaluator's row lock (it selects the collecting alert FOR UPDATE), so
    either the evaluator's matches land before it, and are in the reload, or they open a new alert.
    """
    if alert.state == Alert.State.FIRED and alert.collecting_until and alert.collecting_until > now:
        with transaction.atomic():
            Alert.objects.filter(pk=alert.pk, collecting_until__gt=now).update(collecting_until=now)
    alert.refresh_from_db()


def _previous(delivery):
    """Slack bot: the firing message a resolved message edits in place ("channel/ts"), or ""."""
    if delivery.reason != Reason.RESOLVED:
        return ""
    firing = Delivery.objects.filter(
        alert_id=delivery.alert_id, destination_id=delivery.destination_id, reason=Reason.FIRING, status=Status.SENT
    ).exclude(external_id="")
    return firing.order_by("sent_at").values_list("external_id", flat=True).first() or ""


# --- Finishing ------------------------------------------------------------------------------------------------------


def _finish(delivery, token, **fields):
    """Update the delivery only if this worker's claim still holds it; whether it did."""
    fields.setdefault("claim", "")
    if fields.get("status") == Status.PENDING:
        fields["queued_at"] = None  # back in line: the next dispatch after its due time queues it
    return Delivery.objects.filter(pk=delivery.pk, status=Status.CLAIMED, claim=token).update(**fields) == 1


def _close(delivery, token, status, why):
    _finish(delivery, token, status=status, outcome=why)
    return str(status)


def _suppress(delivery, token, now, why):
    with transaction.atomic():
        if _finish(delivery, token, status=Status.SUPPRESSED, outcome=why):
            # A suppressed message counts as told, so reminders keep their rhythm.
            Alert.objects.filter(pk=delivery.alert_id).update(last_notified_at=now)
    return "suppressed"


def _postpone(delivery, token, until, why):
    _finish(delivery, token, status=Status.PENDING, due_at=until, claimed_at=None, outcome=f"postponed: {why}")
    return "postponed"


def _succeeded(delivery, token, result, now, ms):
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            at=now,
            outcome="sent",
            status_code=result.status_code,
            detail=result.detail,
            duration_ms=ms,
        )
        finished = _finish(
            delivery,
            token,
            status=Status.SENT,
            sent_at=now,
            attempts=F("attempts") + 1,
            outcome=result.detail,
            external_id=result.external_id or delivery.external_id,
        )
        if finished and delivery.alert_id is not None:
            Alert.objects.filter(pk=delivery.alert_id).update(last_notified_at=now)
            lifecycle.timeline(
                delivery.alert, "notified", f"{delivery.reason} message sent to {delivery.destination.name}", at=now
            )
    log.info("delivery %s to destination %s sent", delivery.pk, delivery.destination_id)
    return "sent" if finished else "lost"


def _failed(delivery, token, error, now, ms):
    attempts = delivery.attempts + 1
    test = delivery.reason == Reason.TEST
    retry_at = None
    if error.transient and not test:
        retry_at = _retry_at(delivery, attempts, error.retry_after, now)
    outcome = "retry" if retry_at else ("permanent" if not error.transient else "failed")
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery,
            at=now,
            outcome=outcome,
            status_code=error.status_code,
            detail=error.detail,
            duration_ms=ms,
        )
        if retry_at:
            fields = {"status": Status.PENDING, "due_at": retry_at, "claimed_at": None}
            why = f"{error.detail}; trying again at {messages.when(retry_at)}"
        else:
            fields = {"status": Status.FAILED}
            why = error.detail if not error.transient else f"{error.detail}; gave up after {attempts} attempt(s)"
        finished = _finish(delivery, token, attempts=F("attempts") + 1, outcome=why, **fields)
        if finished and error.disable and not test:
            _disable(delivery.destination, error.detail, now)
    log.warning("delivery %s to destination %s: %s (%s)", delivery.pk, delivery.destination_id, outcome, error.detail)
    return ("retry" if retry_at else "failed") if finished else "lost"


def _retry_at(delivery, attempts, retry_after, now):
    """When to try again after ``attempts`` tries, or None when it is time to give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    # What the server asked for, never less; otherwise the backoff schedule.
    delay = max(1, retry_after) if retry_after is not None else BACKOFF[min(attempts, len(BACKOFF)) - 1]
    at = now + timedelta(seconds=delay * random.uniform(1.0, 1.1))
    first = delivery.attempt_log.order_by("at").values_list("at", flat=True).first() or now
    return at if at <= first + MAX_AGE else None


def _disable(destination, why, now):
    """Turn a broken destination off, so the UI shows it and nothing more is sent there until it is fixed."""
    type(destination).objects.filter(pk=destination.pk, enabled=True).update(
        enabled=False, disabled_reason=why[:1000], disabled_at=now
    )
    log.warning("destination %s (%s) disabled after a permanent error", destination.pk, destination.name)


# --- Tests from the UI --------------------------------------------------------------------------------------------


def send_test(destination, user, now=None):
    """Send a test message to ``destination`` now, in this process; the Delivery, with its outcome.

    A test is tried once (the person is waiting for the answer), skips silences, mute windows and
    the rate limit, works on a disabled destination (to check a fix), and never disables one.
    """
    now = now or timezone.now()
    delivery = Delivery.objects.create(
        destination=destination, reason=Reason.TEST, due_at=now, created_at=now, created_by=_person(user)
    )
    send(delivery.pk, now)
    delivery.refresh_from_db()
    return delivery


def send_rule_test(rule, user, destination=None, now=None):
    """Send what ``rule``'s real message would look like (a made-up sample) to each of its destinations,
    or only to ``destination``; the Deliveries, with their outcomes."""
    now = now or timezone.now()
    targets = [destination] if destination is not None else list(rule.destinations.all())
    deliveries = []
    for target in targets:
        delivery = Delivery.objects.create(
            rule=rule, destination=target, reason=Reason.TEST, due_at=now, created_at=now, created_by=_person(user)
        )
        send(delivery.pk, now)
        delivery.refresh_from_db()
        deliveries.append(delivery)
    return deliveries


def _person(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


# --- History ----------------------------------------------------------------------------------------------------------


def prune_history(now=None, chunk=500, max_chunks=20):
    """Delete closed alerts and test deliveries older than FLUXO_ALERT_HISTORY_DAYS, in bounded chunks.

    Deleting an alert takes its timeline, deliveries and attempts with it (cascade). An alert with a
    delivery still pending or being sent is kept. Returns the counts deleted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.FLUXO_ALERT_HISTORY_DAYS)
    closed = (
        Q(state=Alert.State.RESOLVED, resolved_at__lt=cutoff)
        | Q(state=Alert.State.FIRED, collecting_until__lt=cutoff)
        | Q(state=Alert.State.FIRED, collecting_until=None, fired_at__lt=cutoff)
        | Q(state=Alert.State.INACTIVE, updated_at__lt=cutoff)
    )
    busy = Delivery.objects.filter(alert=OuterRef("pk"), status__in=[Status.PENDING, Status.CLAIMED])
    alerts = Alert.objects.filter(closed).exclude(Exists(busy))
    tests = Delivery.objects.filter(reason=Reason.TEST, created_at__lt=cutoff).exclude(
        status__in=[Status.PENDING, Status.CLAIMED]
    )
    return {"alerts": _delete_chunked(alerts, chunk, max_chunks), "tests": _delete_chunked(tests, chunk, max_chunks)}


def _delete_chunked(queryset, chunk, max_chunks):
    deleted = 0
    for _ in range(max_chunks):
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:chunk])
        if not ids:
            break
        with transaction.atomic():
            queryset.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted
