"""What an alert message says, in each form a destination takes: e-mail (text and HTML), Slack Block Kit,
and the generic webhook's JSON.

Everything an event carries is untrusted text: the HTML template autoescapes it, Slack mrkdwn gets
``&``, ``<`` and ``>`` escaped (so no ``<!channel>`` or disguised link can be smuggled in), and the
webhook JSON carries it as plain JSON strings. Builders are plain functions returning dicts and strings,
tested without sending anything.
"""

from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from alerts import silencing
from alerts.models import Alert, Delivery

WEBHOOK_VERSION = "1"
SHOWN_SAMPLES = 10  # in e-mail and Slack; the webhook carries every stored sample

# Slack's limits (Block Kit reference): 50 blocks, 3000 characters of section text, 2000 per field,
# 150 per header, 75 per button label; a message's top-level text is for notifications only.
SLACK_MAX_BLOCKS = 50
SLACK_TEXT = 3000
SLACK_FIELD = 2000
SLACK_HEADER = 150
SLACK_FALLBACK = 500

_ICONS = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_LABELS = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "REMINDER", "test": "TEST"}


@dataclass
class Message:
    status: str  # firing, resolved, reminder, test
    subject: str
    text: str
    html: str
    slack: dict  # {"text": …, "blocks": [...]}
    webhook: dict


def build(delivery):
    """The message a Delivery sends (its alert, or for a test its rule or destination)."""
    if delivery.reason == Delivery.Reason.TEST:
        if delivery.rule_id is not None:
            return render(rule_test_context(delivery.rule))
        return render(destination_test_context(delivery.destination))
    return render(alert_context(delivery.alert, delivery.reason))


def render(context):
    return Message(
        status=context["status"],
        subject=subject(context),
        text=render_to_string("alerts/email/alert.txt", context),
        html=render_to_string("alerts/email/alert.html", context),
        slack=slack_payload(context),
        webhook=webhook_payload(context),
    )


# --- Contexts ---------------------------------------------------------------------------------------------


def alert_context(alert, status, note=""):
    """The facts every form of the message is built from."""
    rule = alert.rule
    samples = [_sample_view(s) for s in (alert.samples or [])]
    shown = samples[:SHOWN_SAMPLES]
    return {
        "status": status,
        "status_label": _LABELS[status],
        "alert_id": alert.pk,
        "rule": rule.name,
        "rule_id": rule.pk,
        "description": rule.description,
        "severity": alert.severity,
        "summary": alert.summary or f"{rule.name} is {alert.state}",
        "state": alert.state,
        "group_key": alert.group_key,
        "labels": silencing.labels_of(alert),
        "value": alert.value,
        "hits": alert.hits,
        "samples": samples,
        "shown": shown,
        "more": max(alert.hits, len(samples)) - len(shown),
        "started_at": alert.started_at,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "acknowledged_by": _who(alert) if alert.acknowledged_at else "",
        "url": alert_url(alert.pk),
        "note": note,
    }


def rule_test_context(rule):
    """What the rule's real message would look like, with a sample made from its conditions."""
    now = _now()
    alert = Alert(
        rule=rule,
        state=Alert.State.FIRING if rule.resolves else Alert.State.FIRED,
        severity=rule.severity,
        started_at=now,
        fired_at=now,
        hits=1,
        samples=[sample_from_conditions(rule, now)],
        summary=f"Test of the rule “{rule.name}”: 1 matching event (made up)",
    )
    note = "This is a test: no event fired this rule. A real message looks like this one."
    return alert_context(alert, "test", note)


def destination_test_context(destination):
    now = _now()
    return {
        "status": "test",
        "status_label": _LABELS["test"],
        "alert_id": None,
        "rule": "Test message",
        "rule_id": None,
        "description": "",
        "severity": "info",
        "summary": f"A test message from Fluxo to the destination “{destination.name}”.",
        "state": "test",
        "group_key": "",
        "labels": {},
        "value": 0,
        "hits": 0,
        "samples": [],
        "shown": [],
        "more": 0,
        "started_at": now,
        "fired_at": None,
        "resolved_at": None,
        "acknowledged_by": "",
        "url": None,
        "note": "If you can read this, alerts will reach this destination.",
    }


def sample_from_conditions(rule, now):
    """A made-up event sample that satisfies the obvious parts of a rule's conditions."""
    sample = {"id": None, "source": "(a source)", "stream": "activity", "type": "(an event)", "lead": "12345"}
    sample.update({"received_at": now.isoformat(), "occurred_at": now.isoformat()})
    extra = []
    for condition in rule.conditions if isinstance(rule.conditions, list) else []:
        if not isinstance(condition, dict) or condition.get("negate"):
            continue
        value = condition.get("value")
        value = value[0] if isinstance(value, list) and value else value
        key = _SAMPLE_KEYS.get(condition.get("path"))
        if condition.get("op") in ("eq", "in", "contains") and key:
            sample[key] = value
        elif condition.get("op") != "present":
            extra.append(f"{condition.get('path')} {condition.get('op')} {value}")
    if extra:
        sample["value"] = "; ".join(str(e) for e in extra)[:200]
    return sample


_SAMPLE_KEYS = {
    "stream": "stream",
    "type": "type",
    "activity_type": "type",
    "activity_type_id": "type",
    "source": "source",
    "lead_id": "lead",
    "campaign_name": "campaign",
    "campaign_id": "campaign",
    "user": "user",
    "user_email": "user",
    "action": "action",
    "primary_attribute": "value",
}


def alert_url(alert_id):
    """The alert's page, or None when FLUXO_PUBLIC_URL is unset (no request to build it from; `make run`
    sets it to the address it serves, http://127.0.0.1:8000, unless one is given)."""
    base = getattr(settings, "FLUXO_PUBLIC_URL", None)
    if not base or alert_id is None:
        return None
    return f"{base.rstrip('/')}/alerts/{alert_id}/"


def _sample_view(sample):
    """A sample with a one-line description (untrusted text: escape where shown)."""
    sample = dict(sample) if isinstance(sample, dict) else {"value": str(sample)}
    parts = [sample.get("type") or sample.get("stream")]
    if sample.get("lead"):
        parts.append(f"lead {sample['lead']}")
    if sample.get("value"):
        parts.append(sample["value"])
    if sample.get("campaign"):
        parts.append(f"campaign {sample['campaign']}")
    if sample.get("user"):
        parts.append(f"by {sample['user']}")
    if sample.get("action"):
        parts.append(str(sample["action"]))
    if sample.get("source"):
        parts.append(f"({sample['source']})")
    sample["line"] = " · ".join(str(p) for p in parts if p not in (None, ""))[:400]
    return sample


def _who(alert):
    user = alert.acknowledged_by
    return user.get_username() if user is not None else "someone"


def _now():
    return timezone.now()


def when(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


# --- E-mail -------------------------------------------------------------------------------------------------


def subject(context):
    text = f"[{context['status_label']}] [{context['severity']}] {context['rule']}"
    if context["status"] != "resolved":
        text += f": {context['summary']}"
    # A header: one line, and short enough for every mail client.
    return clip(" ".join(text.split()), 200)


# --- Slack --------------------------------------------------------------------------------------------------


def mrkdwn(text):
    """Escape untrusted text for Slack mrkdwn: only &, < and > are control characters there."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text, limit):
    """Cut ``text`` to ``limit`` characters with an ellipsis, never through an HTML entity."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def slack_payload(context):
    """A Block Kit message: header, summary, up to SHOWN_SAMPLES samples, the rest counted, a link."""
    blocks = [_slack_header(context), _slack_summary(context)]
    if context["shown"]:
        fields = [{"type": "mrkdwn", "text": clip(mrkdwn(s["line"]), SLACK_FIELD)} for s in context["shown"]]
        blocks.append({"type": "section", "fields": fields})
    if context["more"] > 0:
        more = f"and {context['more']} more matching event" + ("" if context["more"] == 1 else "s")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(_slack_times(context), 3000)}]})
    if context["url"]:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open in Fluxo"}, "url": context["url"]}
        blocks.append({"type": "actions", "elements": [{**button, "action_id": "open-alert"}]})
    fallback = f"[{context['status_label']}] {context['rule']}: {context['summary']}"
    return {"text": clip(mrkdwn(fallback), SLACK_FALLBACK), "blocks": blocks[:SLACK_MAX_BLOCKS]}


def _slack_header(context):
    if context["status"] == "resolved":
        title = f"✅ RESOLVED: {context['rule']}"
    else:
        icon = _ICONS.get(context["severity"], "⚪")
        prefix = "" if context["status"] == "firing" else f"{context['status_label']} "
        title = f"{icon} {prefix}[{context['severity'].upper()}] {context['rule']}"
    # plain_text: Slack shows it as is, nothing to escape; only one line fits a header.
    return {"type": "header", "text": {"type": "plain_text", "text": clip(" ".join(title.split()), SLACK_HEADER)}}


def _slack_summary(context):
    lines = [f"*{mrkdwn(context['summary'])}*"]
    if context["note"]:
        lines.append(f"_{mrkdwn(context['note'])}_")
    if context["description"]:
        lines.append(mrkdwn(context["description"]))
    labels = ", ".join(f"{k}: {v}" for k, v in context["labels"].items() if k not in ("rule", "severity"))
    if labels:
        lines.append(f"*Labels:* {mrkdwn(labels)}")
    if context["acknowledged_by"]:
        lines.append(f"Acknowledged by {mrkdwn(context['acknowledged_by'])}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SLACK_TEXT)}}


def _slack_times(context):
    parts = [f"Severity {context['severity']}"]
    for label, key in (("started", "started_at"), ("fired", "fired_at"), ("resolved", "resolved_at")):
        if context[key]:
            parts.append(f"{label} {when(context[key])}")
    return "Fluxo · " + " · ".join(parts)


# --- Generic webhook ------------------------------------------------------------------------------------------


def webhook_payload(context):
    """The generic webhook's JSON (``version`` changes only when a field changes meaning or goes away)."""
    return {
        "version": WEBHOOK_VERSION,
        "status": context["status"],
        "alert_id": context["alert_id"],
        "rule": {"id": context["rule_id"], "name": context["rule"], "description": context["description"]},
        "severity": context["severity"],
        "state": context["state"],
        "labels": context["labels"],
        "group_key": context["group_key"],
        "summary": context["summary"],
        "value": context["value"],
        "hits": context["hits"],
        "samples": [{k: v for k, v in s.items() if k != "line"} for s in context["samples"]],
        "started_at": _iso(context["started_at"]),
        "fired_at": _iso(context["fired_at"]),
        "resolved_at": _iso(context["resolved_at"]),
        "acknowledged_by": context["acknowledged_by"] or None,
        "url": context["url"],
        "note": context["note"] or None,
    }


def _iso(moment):
    return moment.astimezone(UTC).isoformat() if moment else None
