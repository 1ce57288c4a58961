"""Alerts on what the journal brings: backfilled batches are late, and two new conditions with preset rules."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import evaluate
from alerts.models import Alert, Deadline, Rule
from streams import journal
from streams.models import AdobeRegistration
from streams.simulator.generators import Generator
from tests.journal_sandbox import CLIENT_ID, adobe, backfill, clock, registration
from tests.test_alerts_evaluate import from_preset, make_rule

__all__ = ["adobe", "clock", "registration"]  # fixtures

pytestmark = pytest.mark.django_db


def journal_now(adobe, source, count):
    """``count`` events that occurred just now (the generator's origin), journaled."""
    generator = Generator(source.munchkin_id, 5, CLIENT_ID, streams=("activity",), rate=1000.0)
    for event in generator.take(count):
        adobe.journal.append(event.io)


def test_received_time_thresholds_skip_backfilled_events(registration, source, adobe):
    received = make_rule("threshold", threshold=10, window_minutes=5)
    occurred = make_rule("threshold", threshold=10, window_minutes=5, basis=Rule.Basis.OCCURRED)
    journal_now(adobe, source, 50)

    backfill(registration)
    evaluate.evaluate()

    assert not Alert.objects.filter(rule=received).exists()  # 50 arriving at once is no burst of today
    assert Alert.objects.get(rule=occurred).value == 50  # where they occurred (just now), they count


def test_backfilled_events_do_not_end_an_absence(registration, source, adobe):
    rule = from_preset("stream-silent")
    journal_now(adobe, source, 5)

    backfill(registration)
    evaluate.evaluate()

    assert not Deadline.objects.filter(rule=rule, last_seen__isnull=False).exists()


def test_match_rules_fire_on_backfilled_events_marked_late(registration, source, adobe):
    rule = make_rule("match", conditions=[{"path": "stream", "op": "eq", "value": "activity"}])
    journal_now(adobe, source, 5)

    backfill(registration)
    evaluate.evaluate()

    alert = Alert.objects.get(rule=rule)
    assert alert.hits == 5 and "late" in alert.summary and all(s["late"] for s in alert.samples)


def test_a_webhook_batch_is_not_late(client, source, key_server, signed_headers):
    from tests.ingest import io_post

    rule = make_rule("threshold", threshold=2, window_minutes=5)
    elements = [event.io for event in Generator(source.munchkin_id, 9, CLIENT_ID, streams=("activity",)).take(5)]
    io_post(client, source, signed_headers, elements)
    evaluate.evaluate()
    assert Alert.objects.get(rule=rule).value == 5


def test_a_stopped_journal_fires_its_preset_and_resolves_when_resumed(registration, source, adobe):
    rule = from_preset("journal-stopped")
    registration.client_secret_encrypted = ""
    registration.save()
    backfill(registration)  # no credentials: stopped

    evaluate.tick()
    alert = Alert.objects.get(rule=rule)
    journal.resume(registration.id)
    evaluate.tick(now=timezone.now() + timedelta(minutes=2))

    assert alert.state == Alert.State.FIRING and alert.source_id == source.id
    alert.refresh_from_db()
    assert alert.state == Alert.State.RESOLVED


def test_a_registration_adobe_reports_disabled_fires_the_at_risk_preset(registration, source, adobe):
    rule = from_preset("registration-at-risk")
    AdobeRegistration.objects.filter(pk=registration.pk).update(
        adobe_enabled=False, adobe_webhook_status="DISABLED", adobe_checked_at=timezone.now()
    )

    evaluate.tick()

    assert Alert.objects.get(rule=rule).state == Alert.State.FIRING
