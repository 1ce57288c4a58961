"""Alert state changes, their timeline, and the deliveries they call for.

Every function here runs inside the evaluator's (or a person's) transaction and writes through the
ORM; what must happen outside the database (the live announcement, waking the delivery task) is
collected in Effects and done after commit.
"""

import logging
from datetime import timedelta

import orjson
from django.db import transaction
from django.db.models import Q

from alerts import announce, queue
from alerts.models import Alert, AlertEvent, Delivery, Rule
from streams.models import Event

log = logging.getLogger(__name__)

MAX_SAMPLES = 20


class Effects:
    """What a transaction did that others must hear of once it commits."""

    def __init__(self):
        self.alerts = {}
        self.due = {}  # delivery id → due time

    def changed(self, alert):
        self.alerts[alert.pk] = alert

    def deliveries_due(self, deliveries):
        self.due.update((d.pk, d.due_at) for d in deliveries)

    def after_commit(self):
        if self.alerts:
            announce.alerts_changed(self.alerts.values())
        if self.due:
            _wake_delivery(self.due)


def _wake_delivery(due):
    """Queue each delivery's task at its due time (no wait in between). A lost one is harmless: the beat
    dispatches due rows every few seconds."""
    try:
        for delivery_id, moment in sorted(due.items(), key=lambda item: item[1])[:100]:
            queue.deliver(delivery_id, eta=moment)
    except Exception as exc:  # the broker is down: the beat dispatches them later
        log.warning("could not queue deliveries (%s)", exc.__class__.__name__)


def open_alert(rule_id, group_key):
    """The pending or firing alert of a rule and group, locked, or None."""
    return (
        Alert.objects.select_for_update()
        .filter(rule_id=rule_id, group_key=group_key, state__in=Alert.OPEN)
        .order_by("-id")
        .first()
    )


def timeline(alert, kind, detail="", user=None, at=None):
    kwargs = {"at": at} if at else {}
    AlertEvent.objects.create(alert=alert, kind=kind, detail=detail, user=user, **kwargs)


# --- Event alerts (match, watch) -------------------------------------------------------------------------
#
# One open alert per rule and group: matches join it (a count, the latest samples) until it is
# acknowledged, resolved by hand, or quiet for the rule's window (``collecting_until`` holds when it
# closes if nothing more matches). Its first message waits the grouping wait, so a burst is one
# message; matches after a message go out as a digest, at most once per grouping wait, so a watched
# lead that stays busy keeps being reported.

EVENT_KINDS = (Rule.Kind.MATCH, Rule.Kind.WATCH)


def collect(rule, group_key, labels, events, now, effects):
    """Add matching events to the group's open alert, opening one (and its first message) if none is."""
    alert = (
        Alert.objects.select_for_update()
        .filter(rule_id=rule.id, group_key=group_key, state=Alert.State.FIRING)
        .order_by("-id")
        .first()
    )
    if alert is None:
        alert = Alert.objects.create(
            rule_id=rule.id,
            group_key=group_key,
            labels=labels,
            source_id=events[0].get("source_id"),
            state=Alert.State.FIRING,
            severity=rule.severity,
            started_at=now,
            fired_at=now,
        )
        late = " (late: backfilled from Adobe's journal)" if events[0].get("late") else ""
        timeline(alert, "firing", f"first match: {describe(events[0])}{late}", at=now)
        _schedule(alert, rule.id, Delivery.Reason.FIRING, now + rule.group_wait, effects)
    elif alert.last_notified_at is not None and not _waiting(alert):
        due = max(now, alert.last_notified_at + rule.group_wait)
        timeline(alert, "digest", f"{len(events)} new: {describe(events[-1])}", at=now)
        _schedule(alert, rule.id, Delivery.Reason.FIRING, due, effects)
    sources = {e.get("source_id") for e in events}
    if alert.source_id is not None and sources != {alert.source_id}:
        alert.source_id = None  # events from several sources: the alert belongs to none of them alone
    alert.hits += len(events)
    alert.samples = ((alert.samples or []) + [sample(e) for e in events])[-MAX_SAMPLES:]  # the latest
    alert.summary = summary_of(events[-1], alert.hits)
    if any(e.get("late") for e in events):
        alert.summary += ", some late (backfilled from Adobe's journal)"
    alert.collecting_until = now + rule.window  # closes when quiet this long
    alert.save(update_fields=["source", "hits", "samples", "summary", "collecting_until", "updated_at"])
    effects.changed(alert)
    return alert


def _waiting(alert):
    return alert.deliveries.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.CLAIMED]).exists()


def summary_of(event, hits):
    """What happened, in words, from the latest event: the campaign, the lead, the user, the quota percent."""
    text = what_happened(event)
    return text if hits == 1 else f"{text} (the latest of {hits} events)"


def what_happened(event):
    kind = event.get("kind") or ""
    campaign = _campaign(event)
    user = event.get("user_email") or (f"user #{event.get('user_numeric')}" if event.get("user_numeric") else "")
    by = f" by {user}" if user else ""
    if kind in ("campaign_abort", "campaign_failure"):
        verb = "aborted" if kind == "campaign_abort" else "failed"
        return f"Campaign {verb}: {campaign or 'a campaign'}{by}"
    if kind == "web_services":
        percent = _quota_percent(event)
        return "Web-service quota" + (f" at {percent:g} % of the daily limit" if percent is not None else " notice")
    if event.get("stream") == "audit":
        what = " ".join(str(p) for p in (event.get("component_type"), event.get("component_id")) if p)
        return f"{user or 'someone'} {event.get('action') or 'changed'} {what}".strip()
    parts = [event.get("activity_type_name") or event.get("type") or event.get("stream") or "event"]
    if event.get("lead_id"):
        parts.append(f"lead {event.get('lead_id')}")
    if campaign:
        parts.append(campaign)
    if event.get("primary_attribute"):
        parts.append(str(event.get("primary_attribute"))[:80])
    return ", ".join(str(p) for p in parts)


def _campaign(event):
    name, number = event.get("campaign_name"), event.get("campaign_id")
    if name:
        return f"“{name}”"
    return f"campaign {number}" if number else ""


def _quota_percent(event):
    """The percent a web-service quota notification carries (in its details, which rules do not read)."""

    details = None
    if event.get("id"):
        found = Event.objects.filter(id=event.get("id"))
        if event.get("received_at"):
            found = found.filter(received_at=event.get("received_at"))  # the one partition that holds it
        details = found.values_list("details", flat=True).first()
    try:
        found = orjson.loads(details) if details else {}
        action = found.get("eventAction", found) if isinstance(found, dict) else {}
        value = action.get("percent") if isinstance(action, dict) else None
        return float(str(value).rstrip("% ")) if value is not None and not isinstance(value, bool) else None
    except (ValueError, TypeError):
        return None


def close_quiet(rules, now, effects):
    """Event alerts with no match for their rule's window resolve; how many."""
    closed = 0
    quiet = Alert.objects.select_for_update().filter(
        state=Alert.State.FIRING, rule__kind__in=EVENT_KINDS, collecting_until__lt=now
    )
    for alert in quiet:
        rule = rules.by_id.get(alert.rule_id)
        minutes = int(rule.window.total_seconds() // 60) if rule else 0
        resolve(alert, rule, now, effects, f"no new match for {minutes} minutes")
        closed += 1
    return closed


def sample(event):
    """What a message shows of one event (all of it untrusted text, escaped where shown)."""
    received, occurred = event.get("received_at"), event.get("occurred_at")
    return {
        "id": event.get("id"),
        "source": event.get("source_name"),
        "stream": event.get("stream"),
        "type": event.get("activity_type_name") or event.get("type"),
        "lead": event.get("lead_id"),
        "campaign": event.get("campaign_name") or event.get("campaign_id"),
        "user": event.get("user_email") or event.get("user_numeric"),
        "action": event.get("action") or event.get("subtype"),
        "value": (event.get("primary_attribute") or "")[:200],
        "received_at": received.isoformat() if received else None,
        "occurred_at": occurred.isoformat() if occurred else None,
        "late": bool(event.get("late")),
    }


def describe(event):
    parts = [event.get("activity_type_name") or event.get("type") or event.get("stream")]
    if event.get("lead_id"):
        parts.append(f"lead {event.get('lead_id')}")
    if event.get("primary_attribute"):
        parts.append(str(event.get("primary_attribute"))[:80])
    return ", ".join(str(p) for p in parts if p)


# --- State alerts (threshold, absence, health) ----------------------------------------------------------


def start(rule, group_key, labels, source_id, now, value, detail, effects, started=None):
    """Open an alert: pending if the rule has a "for" duration, otherwise firing at once."""
    pending = rule.hold_for > timedelta(0) and rule.kind != Rule.Kind.ABSENCE
    alert = Alert.objects.create(
        rule_id=rule.id,
        group_key=group_key,
        labels=labels,
        source_id=source_id,
        state=Alert.State.PENDING if pending else Alert.State.FIRING,
        severity=rule.severity,
        started_at=started or now,
        value=value,
        summary=detail,
    )
    if pending:
        timeline(alert, "pending", detail, at=now)
        effects.changed(alert)
    else:
        fire(alert, rule, now, effects, detail)
    return alert


def fire(alert, rule, now, effects, detail):
    alert.state, alert.fired_at, alert.summary = Alert.State.FIRING, now, detail
    alert.save(update_fields=["state", "fired_at", "summary", "updated_at"])
    timeline(alert, "firing", detail, at=now)
    _schedule(alert, rule.id, Delivery.Reason.FIRING, now + rule.group_wait, effects)
    effects.changed(alert)


def set_value(alert, value, detail):
    if alert.value != value:
        alert.value, alert.summary = value, detail
        alert.save(update_fields=["value", "summary", "updated_at"])


def resolve(alert, rule, now, effects, detail):
    """Close an open alert. A pending one just clears; a firing one resolves and may say so.

    A resolved message goes only to destinations that were told it fired (as Alertmanager does); a
    firing message still waiting for its grouping wait is cancelled instead, so a flap sends nothing.
    """
    if alert.state == Alert.State.PENDING:
        alert.state = Alert.State.INACTIVE
        alert.save(update_fields=["state", "updated_at"])
        timeline(alert, "cleared", f"cleared before firing: {detail}", at=now)
        effects.changed(alert)
        return
    alert.state, alert.resolved_at = Alert.State.RESOLVED, now
    alert.save(update_fields=["state", "resolved_at", "updated_at"])
    timeline(alert, "resolved", detail, at=now)
    alert.deliveries.filter(status=Delivery.Status.PENDING).exclude(reason=Delivery.Reason.TEST).update(
        status=Delivery.Status.CANCELLED, outcome="the alert resolved before this was sent"
    )
    told = alert.deliveries.filter(
        Q(status=Delivery.Status.SENT) | Q(status=Delivery.Status.CLAIMED),
        reason__in=[Delivery.Reason.FIRING, Delivery.Reason.REMINDER],
        destination__send_resolved=True,
    )
    destinations = set(told.values_list("destination_id", flat=True))
    effects.deliveries_due(
        Delivery.objects.create(
            alert=alert, rule_id=alert.rule_id, destination_id=d, reason=Delivery.Reason.RESOLVED, due_at=now
        )
        for d in destinations
    )
    effects.changed(alert)


def remind(rules, now, effects):
    """Firing alerts not acknowledged, last told more than the rule's repeat interval ago, get a reminder;
    event alerts that went quiet close first (close_quiet)."""
    close_quiet(rules, now, effects)
    reminded = 0
    firing = Alert.objects.filter(state=Alert.State.FIRING, acknowledged_at=None, last_notified_at__isnull=False)
    firing = firing.exclude(rule__kind__in=EVENT_KINDS)  # they send digests of new matches instead
    waiting = Delivery.objects.filter(status__in=[Delivery.Status.PENDING, Delivery.Status.CLAIMED])
    for alert in firing.exclude(deliveries__in=waiting):
        rule = rules.by_id.get(alert.rule_id)
        if rule is None or rule.repeat is None or alert.last_notified_at + rule.repeat > now:
            continue
        timeline(alert, "reminder", f"still firing: {alert.summary}", at=now)
        _schedule(alert, rule.id, Delivery.Reason.REMINDER, now, effects)
        reminded += 1
    return reminded


def _schedule(alert, rule_id, reason, due_at, effects):
    destinations = Rule.destinations.through.objects.filter(rule_id=rule_id, destination__enabled=True)
    ids = list(destinations.values_list("destination_id", flat=True))
    effects.deliveries_due(
        Delivery.objects.create(alert=alert, rule_id=rule_id, destination_id=d, reason=reason, due_at=due_at)
        for d in ids
    )


# --- People ---------------------------------------------------------------------------------------------------


def acknowledge(alert, user, now, comment=""):
    """Acknowledge a firing alert: no reminders until it resolves; an event alert closes (the next match
    opens a new one). Returns False if it was not firing."""
    updated = Alert.objects.filter(pk=alert.pk, state=Alert.State.FIRING, acknowledged_at=None).update(
        acknowledged_at=now, acknowledged_by=user
    )
    if updated:
        timeline(alert, "acknowledged", comment, user=user, at=now)
        alert.refresh_from_db()
        if alert.rule.kind in EVENT_KINDS:
            _close_by(alert, user, now, f"acknowledged by {user.get_username()}")
        else:
            transaction.on_commit(lambda: announce.alerts_changed([alert]))
    return bool(updated)


def resolve_by_hand(alert, user, now):
    """Close a firing event alert now (its matches stop joining it). False if it was not one."""
    locked = Alert.objects.select_for_update().filter(pk=alert.pk, state=Alert.State.FIRING).first()
    if locked is None or locked.rule.kind not in EVENT_KINDS:
        return False
    _close_by(locked, user, now, f"resolved by hand by {user.get_username()}")
    return True


def _close_by(alert, user, now, detail):
    effects = Effects()
    resolve(alert, alert.rule, now, effects, detail)
    transaction.on_commit(effects.after_commit)
