"""An erased lead's e-mail addresses leave the alerts' stored copies (streams.signals.lead_erased).

Alert samples and timeline lines are copies of event fields (alerts.lifecycle.sample, describe). In the
samples of the erased events themselves every e-mail address is replaced; elsewhere the addresses found
in the erased events are. Messages already sent (e-mail, Slack, webhooks) are beyond reach.
"""

from django.db import transaction
from django.db.models import Q

from alerts.models import Alert, AlertEvent
from streams.erasure import scrub_text
from streams.signals import lead_erased


def scrub(source_id, lead_id, event_ids, emails, since, **_kwargs):
    """Scrub the alerts that may hold the lead's data; returns how many samples and lines changed."""
    if since is None and not emails:
        return 0
    # An alert of several sources has none; one that collected an event was saved after it arrived.
    candidates = Alert.objects.filter(Q(source_id=source_id) | Q(source__isnull=True))
    if since is not None:
        candidates = candidates.filter(updated_at__gte=since)
    changed = 0
    for alert_id in candidates.values_list("id", flat=True).iterator():
        changed += _scrub_alert(alert_id, lead_id, event_ids, emails)
    return changed


def _scrub_alert(alert_id, lead_id, event_ids, emails):
    with transaction.atomic():  # the evaluator adds samples under the same row lock
        alert = Alert.objects.select_for_update().filter(pk=alert_id).first()
        if alert is None:
            return 0
        samples, changed = [], 0
        for sample in alert.samples or []:
            scrubbed = _scrub_sample(sample, emails, isinstance(sample, dict) and sample.get("id") in event_ids)
            changed += scrubbed != sample
            samples.append(scrubbed)
        if changed:
            alert.samples = samples
            alert.save(update_fields=["samples"])
        return changed + _scrub_timeline(alert_id, lead_id, emails)


def _scrub_sample(sample, emails, own):
    if not isinstance(sample, dict):
        return sample
    return {key: scrub_text(value, emails, everything=own) for key, value in sample.items()}


def _scrub_timeline(alert_id, lead_id, emails):
    """Timeline lines quote the first matching event ("first match: …, lead 1001, a@b.com")."""
    changed = 0
    for line in AlertEvent.objects.filter(alert_id=alert_id, detail__contains="@"):
        detail = scrub_text(line.detail, emails, everything=f"lead {lead_id}," in line.detail + ",")
        if detail != line.detail:
            line.detail = detail
            line.save(update_fields=["detail"])
            changed += 1
    return changed


def connect():
    lead_erased.connect(scrub, dispatch_uid="alerts.erasure.scrub")
