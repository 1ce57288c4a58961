"""Delivering alerts: claims, retries and backoff, permanent errors, silences, mute windows, acknowledgement,
rate limits, the sweeper, history pruning and test messages, against real local servers."""

import base64
import datetime as dt
import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import delivery, evaluate, silencing
from alerts.models import (
    Alert,
    AlertEvent,
    Delivery,
    DeliveryAttempt,
    Destination,
    MuteWindow,
    Rule,
    Silence,
)
from streams import announce
from tests.alerts_receivers import Answer, receiving
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    yield from receiving(settings)


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def rule(db):
    return Rule.objects.create(name="Bounces surge", kind="threshold", severity="critical", threshold=10)


@pytest.fixture
def hook(receiver):
    return Destination.objects.create(name="ops webhook", kind="webhook", url=receiver.url + "/hook/s3cr3t")


@pytest.fixture
def slack(receiver):
    return Destination.objects.create(name="ops channel", kind="slack", url=receiver.url + "/services/T0/B0/s3cr3t")


def make_alert(rule, now, **fields):
    values = {
        "rule": rule,
        "state": "firing",
        "severity": rule.severity,
        "started_at": now - timedelta(minutes=5),
        "fired_at": now - timedelta(minutes=1),
        "value": 42,
        "summary": "42 bounces in 5 minutes (over 10)",
        "labels": {"campaign": "Spring launch"},
    }
    values.update(fields)
    return Alert.objects.create(**values)


def make_delivery(alert, destination, now, reason="firing", **fields):
    return Delivery.objects.create(
        alert=alert, rule=alert.rule, destination=destination, reason=reason, due_at=now, **fields
    )


def reload(obj):
    obj.refresh_from_db()
    return obj


# --- Sending and claiming -----------------------------------------------------------------------------------------


def test_a_sent_delivery_records_its_attempt_and_tells_the_alert_timeline(rule, hook, receiver, now):
    alert = make_alert(rule, now)
    one = make_delivery(alert, hook, now)

    assert delivery.send(one.pk, now) == "sent"

    assert [r.path for r in receiver.requests] == ["/hook/s3cr3t"]
    one = reload(one)
    assert (one.status, one.attempts, one.sent_at, one.claim) == ("sent", 1, now, "")
    attempt = one.attempt_log.get()
    assert (attempt.outcome, attempt.status_code) == ("sent", 200)
    assert reload(alert).last_notified_at == now
    event = AlertEvent.objects.get(alert=alert, kind="notified")
    assert "ops webhook" in event.detail


def test_a_delivery_is_sent_once_however_often_it_is_asked_for(rule, hook, receiver, now):
    one = make_delivery(make_alert(rule, now), hook, now)
    assert delivery.send(one.pk, now) == "sent"
    assert delivery.send(one.pk, now) == "skipped"
    assert len(receiver.requests) == 1


def test_a_delivery_not_yet_due_is_not_claimed(rule, hook, receiver, now):
    one = make_delivery(make_alert(rule, now), hook, now + timedelta(seconds=30))
    assert delivery.send(one.pk, now) == "skipped"
    assert reload(one).status == "pending"
    assert receiver.requests == []


def test_dispatch_queues_the_due_deliveries_oldest_first_and_bounded(rule, hook, now):
    broker, queue = announce.client(), "deliveries"  # the deliveries queue, a Redis list (LPUSH, BRPOP)
    before = broker.llen(queue)
    alert = make_alert(rule, now)
    late = make_delivery(alert, hook, now - timedelta(seconds=5))
    early = make_delivery(alert, hook, now - timedelta(seconds=50))
    make_delivery(alert, hook, now + timedelta(minutes=1))  # not due
    make_delivery(alert, hook, now - timedelta(minutes=9), status="sent")  # done

    assert delivery.dispatch_due(now) == [early.pk, late.pk]
    raw = broker.lrange(queue, 0, broker.llen(queue) - before - 1)  # the newest are at the head
    try:
        queued = [json.loads(m) for m in raw]
        assert [json.loads(base64.b64decode(m["body"]))[0] for m in reversed(queued)] == [[early.pk], [late.pk]]
        assert {m["headers"]["task"] for m in queued} == {"alerts.deliver"}
        assert delivery.dispatch_due(now) == []  # queued a moment ago: not again on the next tick
        later = now + delivery.REQUEUE_AFTER + timedelta(seconds=1)  # a task lost with a broker restart
        assert delivery.dispatch_due(later, limit=1) == [early.pk]
        raw.append(broker.lindex(queue, 0))
    finally:
        for message in raw:  # no worker here: take back what this test queued
            broker.lrem(queue, 1, message)


# --- Transient errors: retried with backoff -----------------------------------------------------------------------


def test_a_slack_500_is_retried_later_with_a_growing_backoff(rule, slack, receiver, now):
    receiver.answer(Answer(500, "rollup_error"), Answer(500, "rollup_error"))
    one = make_delivery(make_alert(rule, now), slack, now)

    assert delivery.send(one.pk, now) == "retry"
    one = reload(one)
    assert (one.status, one.attempts, one.claim) == ("pending", 1, "")
    assert now + timedelta(seconds=10) <= one.due_at <= now + timedelta(seconds=11)
    assert delivery.send(one.pk, now) == "skipped"  # not due yet

    later = one.due_at
    assert delivery.send(one.pk, later) == "retry"
    one = reload(one)
    assert one.attempts == 2
    assert later + timedelta(seconds=30) <= one.due_at <= later + timedelta(seconds=33)

    assert delivery.send(one.pk, one.due_at) == "sent"
    one = reload(one)
    assert (one.status, one.attempts) == ("sent", 3)
    outcomes = list(one.attempt_log.values_list("outcome", "status_code"))
    assert outcomes == [("retry", 500), ("retry", 500), ("sent", 200)]
    assert len(receiver.requests) == 3


def test_a_429_is_retried_no_sooner_than_its_retry_after(rule, slack, receiver, now):
    receiver.answer(Answer(429, "rate_limited", {"Retry-After": "120"}))
    one = make_delivery(make_alert(rule, now), slack, now)
    assert delivery.send(one.pk, now) == "retry"
    one = reload(one)
    assert now + timedelta(seconds=120) <= one.due_at <= now + timedelta(seconds=133)
    assert one.attempt_log.get().status_code == 429


def test_an_unreachable_server_is_retried(rule, settings, now):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True
    from tests.processes import free_port

    nowhere = Destination.objects.create(name="down", kind="webhook", url=f"http://127.0.0.1:{free_port()}/x")
    one = make_delivery(make_alert(rule, now), nowhere, now)
    assert delivery.send(one.pk, now) == "retry"
    assert "could not reach" in reload(one).attempt_log.get().detail


def test_it_gives_up_after_the_last_attempt(rule, slack, receiver, now):
    receiver.answer(Answer(503, "busy"))
    one = make_delivery(make_alert(rule, now), slack, now, attempts=delivery.MAX_ATTEMPTS - 1)
    assert delivery.send(one.pk, now) == "failed"
    one = reload(one)
    assert (one.status, one.attempts) == ("failed", delivery.MAX_ATTEMPTS)
    assert "gave up" in one.outcome
    assert reload(slack).enabled  # a server having a bad day does not turn the destination off


# --- Permanent errors ---------------------------------------------------------------------------------------------


def test_a_slack_404_fails_the_delivery_and_disables_the_destination(rule, slack, receiver, now, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answer(Answer(404, "no_service"))
    alert = make_alert(rule, now)
    first, second = make_delivery(alert, slack, now), make_delivery(alert, slack, now)

    assert delivery.send(first.pk, now) == "failed"
    first, slack = reload(first), reload(slack)
    assert (first.status, first.attempts) == ("failed", 1)
    assert first.attempt_log.get().outcome == "permanent"
    assert (slack.enabled, slack.disabled_at) == (False, now)
    assert "404" in slack.disabled_reason and "no_service" in slack.disabled_reason

    assert delivery.send(second.pk, now) == "cancelled"
    assert len(receiver.requests) == 1
    # The webhook URL is a secret: not in what is stored or logged.
    texts = [first.outcome, slack.disabled_reason, caplog.text, *first.attempt_log.values_list("detail", flat=True)]
    assert not any("s3cr3t" in text for text in texts)


def test_a_slack_403_invalid_token_disables_but_a_bad_payload_does_not(rule, slack, receiver, now):
    receiver.answer(Answer(400, "invalid_payload"), Answer(403, "invalid_token"))
    alert = make_alert(rule, now)
    assert delivery.send(make_delivery(alert, slack, now).pk, now) == "failed"
    assert reload(slack).enabled
    assert delivery.send(make_delivery(alert, slack, now).pk, now) == "failed"
    assert not reload(slack).enabled


@pytest.mark.parametrize(("status", "disabled"), [(400, False), (401, False), (404, True), (410, True)])
def test_webhook_4xx_answers_fail_for_good_and_404_410_disable(rule, hook, receiver, now, status, disabled):
    receiver.answer(Answer(status, "nope"))
    one = make_delivery(make_alert(rule, now), hook, now)
    assert delivery.send(one.pk, now) == "failed"
    assert reload(hook).enabled is not disabled


def test_a_webhook_408_is_temporary(rule, hook, receiver, now):
    receiver.answer(Answer(408, "slow"))
    one = make_delivery(make_alert(rule, now), hook, now)
    assert delivery.send(one.pk, now) == "retry"


def test_a_private_address_is_refused_unless_allowed(rule, hook, receiver, settings, now):
    settings.FLUXO_ALLOW_PRIVATE_URLS = False
    one = make_delivery(make_alert(rule, now), hook, now)
    assert delivery.send(one.pk, now) == "failed"
    assert receiver.requests == []
    assert "private" in reload(one).outcome and "s3cr3t" not in reload(one).outcome
    assert reload(hook).enabled


def test_a_redirect_is_not_followed(rule, hook, receiver, now):
    receiver.answer(Answer(302, "", {"Location": receiver.url + "/elsewhere"}))
    one = make_delivery(make_alert(rule, now), hook, now)
    assert delivery.send(one.pk, now) == "failed"
    assert [r.path for r in receiver.requests] == ["/hook/s3cr3t"]
    assert "redirect" in reload(one).outcome


# --- What holds a message back ------------------------------------------------------------------------------------


def test_a_matching_silence_suppresses_the_message_and_says_so_on_the_timeline(rule, hook, receiver, now):
    alert = make_alert(rule, now)
    Silence.objects.create(
        matchers=[
            {"label": "rule", "op": "=", "value": "Bounces surge"},
            {"label": "severity", "op": "=~", "value": "crit.*"},
        ],
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        comment="planned send of the spring campaign",
    )
    one = make_delivery(alert, hook, now)

    assert delivery.send(one.pk, now) == "suppressed"
    assert receiver.requests == []
    assert reload(one).status == "suppressed"
    assert reload(alert).last_notified_at == now  # reminders keep their rhythm
    event = AlertEvent.objects.get(alert=alert, kind="silenced")
    assert "spring campaign" in event.detail


def test_silences_that_do_not_match_or_are_over_let_the_message_through(rule, hook, receiver, now):
    alert = make_alert(rule, now)
    window = {"starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(hours=1)}
    Silence.objects.create(matchers=[{"label": "severity", "op": "=~", "value": "crit"}], **window)  # anchored
    Silence.objects.create(matchers=[{"label": "campaign", "op": "!=", "value": "Spring launch"}], **window)
    Silence.objects.create(
        matchers=[{"label": "rule", "op": "=", "value": "Bounces surge"}],
        starts_at=now - timedelta(hours=2),
        ends_at=now - timedelta(hours=1),
    )
    one = make_delivery(alert, hook, now)
    assert delivery.send(one.pk, now) == "sent"


def test_matchers_follow_alertmanager():
    labels = {"rule": "Bounces surge", "severity": "critical", "source": "Acme EMEA"}
    assert silencing.matches([{"label": "source", "op": "=~", "value": "Acme.*"}], labels)
    assert not silencing.matches([{"label": "source", "op": "=~", "value": "Acme"}], labels)
    assert silencing.matches([{"label": "source", "op": "!~", "value": "Acme"}], labels)
    assert silencing.matches([{"label": "team", "op": "=", "value": ""}], labels)  # missing is empty
    assert not silencing.matches([{"label": "team", "op": "!=", "value": ""}], labels)
    assert silencing.matches([{"label": "rule", "op": "!=", "value": "Other"}], labels)
    assert not silencing.matches([{"label": "rule", "op": "=~", "value": "("}], labels)  # malformed: nothing
    assert not silencing.matches([], labels)
    with pytest.raises(silencing.MatcherError):
        silencing.check_matchers([{"label": "rule", "op": "~=", "value": "x"}])


def test_the_labels_include_rule_severity_kind_source_and_the_alerts_own(rule, source, now):
    alert = make_alert(rule, now, source=source, labels={"campaign": "Spring"})
    assert silencing.labels_of(alert) == {
        "rule": "Bounces surge",
        "severity": "critical",
        "kind": "threshold",
        "source": "Acme",
        "campaign": "Spring",
    }


def test_an_acknowledged_alerts_reminder_is_suppressed(rule, hook, receiver, now, django_user_model):
    alert = make_alert(rule, now, acknowledged_at=now - timedelta(minutes=1))
    reminder = make_delivery(alert, hook, now, reason="reminder")
    assert delivery.send(reminder.pk, now) == "suppressed"
    assert receiver.requests == []
    assert reload(alert).last_notified_at == now


def test_a_firing_message_for_an_alert_that_resolved_meanwhile_is_cancelled(rule, hook, receiver, now):
    alert = make_alert(rule, now, state="resolved", resolved_at=now)
    one = make_delivery(alert, hook, now)
    assert delivery.send(one.pk, now) == "cancelled"
    assert receiver.requests == []


def _mute(rule, start, end, zone="UTC", weekdays=()):
    window = MuteWindow.objects.create(
        name=f"mute {MuteWindow.objects.count()}",
        time_zone=zone,
        weekdays=list(weekdays),
        start_time=start,
        end_time=end,
    )
    rule.mute_windows.add(window)
    return window


def test_a_mute_window_postpones_the_message_to_its_end(rule, hook, receiver):
    # Tuesday 2026-03-03 01:30 in Paris (00:30 UTC), in a Monday-night window 22:00 → 06:00.
    now = dt.datetime(2026, 3, 3, 0, 30, tzinfo=dt.UTC)
    _mute(rule, dt.time(22), dt.time(6), "Europe/Paris", weekdays=[0])
    one = make_delivery(make_alert(rule, now), hook, now)

    assert delivery.send(one.pk, now) == "postponed"
    one = reload(one)
    assert (one.status, one.claim, one.attempts) == ("pending", "", 0)
    assert one.due_at == dt.datetime(2026, 3, 3, 5, 0, tzinfo=dt.UTC)  # 06:00 in Paris
    assert receiver.requests == []
    assert delivery.send(one.pk, one.due_at) == "sent"


def test_a_resolved_message_whose_firing_was_never_sent_is_cancelled(rule, hook, receiver):
    now = dt.datetime(2026, 3, 3, 0, 30, tzinfo=dt.UTC)
    _mute(rule, dt.time(0), dt.time(1))
    alert = make_alert(rule, now, state="resolved", resolved_at=now)
    make_delivery(alert, hook, now, status="cancelled")
    resolved = make_delivery(alert, hook, now, reason="resolved")
    assert delivery.send(resolved.pk, now) == "cancelled"
    assert receiver.requests == []


def test_a_resolved_message_waits_for_its_firing_message_then_follows_it(rule, hook, receiver, now):
    alert = make_alert(rule, now, state="resolved", resolved_at=now)
    firing = make_delivery(alert, hook, now, status="claimed", claimed_at=now, claim="x")
    resolved = make_delivery(alert, hook, now, reason="resolved")
    assert delivery.send(resolved.pk, now) == "postponed"
    Delivery.objects.filter(pk=firing.pk).update(status="sent", sent_at=now)
    later = reload(resolved).due_at
    assert delivery.send(resolved.pk, later) == "sent"
    assert receiver.requests[0].json()["status"] == "resolved"


@pytest.mark.parametrize(
    ("local", "open_until"),
    [
        (dt.datetime(2026, 3, 2, 23, 0), dt.datetime(2026, 3, 3, 6, 0)),  # Monday night: open
        (dt.datetime(2026, 3, 3, 5, 59), dt.datetime(2026, 3, 3, 6, 0)),  # Tuesday morning, from Monday
        (dt.datetime(2026, 3, 3, 6, 0), None),  # closed at its end
        (dt.datetime(2026, 3, 3, 23, 0), None),  # Tuesday night: not a weekday of the window
        (dt.datetime(2026, 3, 2, 21, 59), None),
    ],
)
def test_mute_windows_cross_midnight_on_their_weekdays_in_their_zone(local, open_until):
    window = MuteWindow(time_zone="America/New_York", weekdays=[0], start_time=dt.time(22), end_time=dt.time(6))
    zone = dt.timezone(timedelta(hours=-5))  # New York in March before the change
    end = silencing.window_end(window, local.replace(tzinfo=zone))
    assert end == (open_until.replace(tzinfo=zone) if open_until else None)


def test_a_daytime_window_every_day_and_a_whole_day_window():
    daily = MuteWindow(time_zone="UTC", weekdays=[], start_time=dt.time(12), end_time=dt.time(13))
    noon = dt.datetime(2026, 3, 7, 12, 30, tzinfo=dt.UTC)
    assert silencing.window_end(daily, noon) == dt.datetime(2026, 3, 7, 13, tzinfo=dt.UTC)
    assert silencing.window_end(daily, noon + timedelta(hours=1)) is None
    whole = MuteWindow(time_zone="UTC", weekdays=[5], start_time=dt.time(0), end_time=dt.time(0))  # Saturday
    assert silencing.window_end(whole, noon) == dt.datetime(2026, 3, 8, tzinfo=dt.UTC)


def test_the_rate_limit_postpones_until_a_slot_frees(rule, hook, receiver, now):
    Destination.objects.filter(pk=hook.pk).update(rate_limit_per_minute=2)
    alert = make_alert(rule, now)
    make_delivery(alert, hook, now, status="sent", sent_at=now - timedelta(seconds=50))
    make_delivery(alert, hook, now, status="sent", sent_at=now - timedelta(seconds=20))
    make_delivery(alert, hook, now, status="sent", sent_at=now - timedelta(seconds=70))  # out of the window
    third = make_delivery(alert, hook, now)

    assert delivery.send(third.pk, now) == "postponed"
    due = reload(third).due_at
    assert now + timedelta(seconds=11) <= due <= now + timedelta(seconds=15)  # the oldest + 60 s, jittered
    assert "rate limit" in reload(third).outcome
    assert receiver.requests == []
    assert delivery.send(third.pk, due) == "sent"


# --- The sweeper --------------------------------------------------------------------------------------------------


def test_the_sweeper_puts_a_stale_claim_back_and_the_old_claimant_cannot_finish(rule, hook, receiver, now):
    alert = make_alert(rule, now)
    one = make_delivery(alert, hook, now)
    stale_token = delivery.claim(one.pk, now)
    assert delivery.sweep(now + timedelta(minutes=2)) == 0  # not stale yet

    assert delivery.sweep(now + timedelta(minutes=4)) == 1
    one = reload(one)
    assert (one.status, one.claim) == ("pending", "")
    assert list(one.attempt_log.values_list("outcome", flat=True)) == ["abandoned"]

    fresh_token = delivery.claim(one.pk, now + timedelta(minutes=4))
    # The first worker was only slow: its message goes out, but it cannot finish the delivery.
    assert delivery.send_claimed(one.pk, stale_token, now + timedelta(minutes=4)) == "lost"
    assert (reload(one).status, reload(one).claim) == ("claimed", fresh_token)
    assert delivery.send_claimed(one.pk, fresh_token, now + timedelta(minutes=4)) == "sent"
    assert reload(one).status == "sent"
    assert len(receiver.requests) == 2  # at least once: it arrived twice, it was not lost
    assert AlertEvent.objects.filter(alert=alert, kind="notified").count() == 1


# --- Event alerts still collecting --------------------------------------------------------------------------------


def test_an_event_alert_still_collecting_is_frozen_before_its_message_is_built(hook, receiver, now):
    rule = Rule.objects.create(name="Deletes", kind="match", severity="warning")
    alert = make_alert(
        rule, now, state="fired", collecting_until=now + timedelta(seconds=20), hits=3, summary="3 matching events"
    )
    one = make_delivery(alert, hook, now)
    assert delivery.send(one.pk, now) == "sent"
    assert reload(alert).collecting_until == now
    assert receiver.requests[0].json()["hits"] == 3


def test_a_burst_evaluated_from_real_ingest_reaches_the_webhook_as_one_message(client, source, api_token, receiver):
    hook = Destination.objects.create(name="hook", kind="webhook", url=receiver.url + "/hook")
    rule = Rule.objects.create(
        name="Deleted leads",
        kind="match",
        severity="warning",
        group_wait_seconds=0,
        conditions=[{"path": "activity_type_id", "op": "eq", "value": 37}],
    )
    rule.destinations.add(hook)
    legacy_push(client, source, api_token, [activity(37, lead=str(500 + i)) for i in range(25)])
    evaluate.evaluate()

    (one,) = Delivery.objects.all()
    assert delivery.send(one.pk, timezone.now()) == "sent"
    (request,) = receiver.requests
    body = request.json()
    assert (body["status"], body["hits"], len(body["samples"])) == ("firing", 25, 20)
    assert body["labels"]["rule"] == "Deleted leads"
    assert body["url"] == f"https://fluxo.example.com/alerts/{one.alert_id}/"


# --- History ------------------------------------------------------------------------------------------------------


def test_prune_history_deletes_closed_alerts_and_tests_older_than_the_setting(rule, hook, settings, now):
    settings.FLUXO_ALERT_HISTORY_DAYS = 30
    old = now - timedelta(days=31)
    gone = [
        make_alert(rule, old, state="resolved", resolved_at=old),
        make_alert(rule, old, state="fired", collecting_until=old),
        make_alert(rule, old, state="inactive"),
    ]
    Alert.objects.filter(pk=gone[2].pk).update(updated_at=old)
    for alert in gone:
        sent = make_delivery(alert, hook, old, status="sent", sent_at=old)
        DeliveryAttempt.objects.create(delivery=sent, at=old, outcome="sent")
    kept = [
        make_alert(rule, old, state="firing"),  # still open
        make_alert(rule, now, state="resolved", resolved_at=now - timedelta(days=29)),
    ]
    retrying = make_alert(rule, old, state="resolved", resolved_at=old)
    make_delivery(retrying, hook, now, reason="resolved")
    old_test = Delivery.objects.create(destination=hook, reason="test", due_at=old, created_at=old, status="sent")
    new_test = Delivery.objects.create(destination=hook, reason="test", due_at=now, status="sent")

    assert delivery.prune_history(now, chunk=2) == {"alerts": 3, "tests": 1}
    assert set(Alert.objects.values_list("pk", flat=True)) == {kept[0].pk, kept[1].pk, retrying.pk}
    assert not DeliveryAttempt.objects.exists()
    assert set(Delivery.objects.filter(reason="test").values_list("pk", flat=True)) == {new_test.pk}
    assert not Delivery.objects.filter(pk=old_test.pk).exists()


def test_prune_history_stops_after_its_chunk_budget(rule, settings, now):
    settings.FLUXO_ALERT_HISTORY_DAYS = 1
    old = now - timedelta(days=2)
    for _ in range(5):
        make_alert(rule, old, state="resolved", resolved_at=old)
    assert delivery.prune_history(now, chunk=2, max_chunks=1)["alerts"] == 2
    assert delivery.prune_history(now, chunk=2)["alerts"] == 3


# --- Test messages ------------------------------------------------------------------------------------------------


def test_a_destination_test_is_sent_at_once_and_its_outcome_returned(hook, receiver, django_user_model):
    admin = django_user_model.objects.create_user("ops", password="pw-ops-1")
    sent = delivery.send_test(hook, admin)
    assert (sent.status, sent.reason, sent.created_by, sent.alert) == ("sent", "test", admin, None)
    assert receiver.requests[0].json()["status"] == "test"


def test_a_failing_destination_test_is_not_retried_and_does_not_disable_it(hook, receiver, django_user_model):
    receiver.answer(Answer(500, "down"), Answer(404, "gone"))
    assert delivery.send_test(hook, None).status == "failed"
    assert delivery.send_test(hook, None).status == "failed"
    assert reload(hook).enabled
    assert len(receiver.requests) == 2


def test_a_rule_test_goes_to_each_destination_of_the_rule_with_a_made_up_sample(rule, hook, slack, receiver):
    rule.conditions = [{"path": "campaign_name", "op": "eq", "value": "Spring launch"}]
    rule.save()
    rule.destinations.set([hook, slack])
    deliveries = delivery.send_rule_test(rule, None)
    assert sorted(d.status for d in deliveries) == ["sent", "sent"]
    hook_body = next(r.json() for r in receiver.requests if r.path == "/hook/s3cr3t")
    assert hook_body["status"] == "test" and hook_body["rule"]["name"] == "Bounces surge"
    assert hook_body["samples"][0]["campaign"] == "Spring launch"
