"""A deleted source's alerting rows (streams.signals.source_erasing).

What was chosen, per model that names a source:
- its alerts go, with their timelines and deliveries (an alert about a source nobody can see any
  more is noise, and its samples hold that source's event data);
- absence deadlines of the source go (the source will never send again: no false "silent" alert);
- a rule scoped to it loses it; a rule whose only source it was is disabled (an empty scope means
  "every source", so merely unlinking would widen it to all of them), and the change is recorded in
  the rule's history like any other. Rules are kept: an admin may point one at another source.
"""

from django.db import transaction

from alerts import history
from alerts.models import Alert, Deadline, Rule
from streams.signals import source_erasing

# Alerts go through Django's collector (timelines, deliveries, attempts): fewer at a time.
ALERT_CHUNK = 500


def delete_rows(source_id, chunk, **_kwargs):
    """One chunk of each kind for the source; returns how many rows changed (0 when none is left)."""
    alerts = _delete_alerts(source_id, min(chunk, ALERT_CHUNK))
    return alerts + _delete_deadlines(source_id, chunk) + _unscope_rules(source_id)


def _delete_alerts(source_id, chunk):
    ids = list(Alert.objects.filter(source_id=source_id).values_list("id", flat=True)[:chunk])
    if ids:
        with transaction.atomic():
            Alert.objects.filter(id__in=ids).delete()
    return len(ids)


def _delete_deadlines(source_id, chunk):
    ids = list(Deadline.objects.filter(source_id=source_id).values_list("id", flat=True)[:chunk])
    return Deadline.objects.filter(id__in=ids).delete()[0] if ids else 0


def _unscope_rules(source_id):
    rule_ids = list(Rule.sources.through.objects.filter(source_id=source_id).values_list("rule_id", flat=True))
    for rule in Rule.objects.filter(pk__in=rule_ids):
        with transaction.atomic():
            before = history.snapshot(rule)
            if set(rule.sources.values_list("id", flat=True)) == {source_id}:
                rule.enabled = False
            rule.sources.remove(source_id)
            rule.save()  # a new version: compiled rules are cached by (id, version)
            history.record(rule, None, "changed", before)
    return len(rule_ids)


def connect():
    source_erasing.connect(delete_rows, dispatch_uid="alerts.deletion.delete_rows")
