"""The evaluator on events posted to the real receivers: every rule kind, exactly once, with its deliveries."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import evaluate, presets, preview
from alerts.models import (
    Alert,
    Deadline,
    Delivery,
    Destination,
    EvaluatedBatch,
    Rule,
    WatchList,
    WindowCount,
)
from streams import announce
from streams.models import Batch
from tests.ingest import activity, audit, io_post, legacy_push, notification

pytestmark = pytest.mark.django_db

ADD_TO_LIST, DELETE_LEAD, BOUNCE, VISIT = 24, 37, 8, 1


def make_rule(kind="match", destinations=(), sources=(), **fields):
    rule = Rule.objects.create(name=fields.pop("name", f"rule {Rule.objects.count() + 1}"), kind=kind, **fields)
    rule.destinations.set(destinations)
    rule.sources.set(sources)
    return rule


def from_preset(key, **overrides):
    values = {k: v for k, v in presets.PRESETS[key].items() if k not in ("watch_list", "watch_list_needed")}
    values.update(overrides)
    return make_rule(**values)


@pytest.fixture
def slack(db):
    return Destination.objects.create(name="ops channel", kind="slack", url="https://hooks.example.com/x")


def test_a_burst_of_list_adds_becomes_one_alert_that_counts_them_all(client, source, api_token, slack):
    WatchList.objects.create(name="Watched lists", entries="VIP prospects\nBoard members")
    rule = from_preset("list-add", destinations=[slack])
    adds = [activity(ADD_TO_LIST, lead=str(2000 + i), primary="VIP prospects") for i in range(300)]
    other_list = [activity(ADD_TO_LIST, lead="9", primary="Newsletter") for _ in range(5)]
    legacy_push(client, source, api_token, adds[:150] + other_list)
    legacy_push(client, source, api_token, adds[150:])

    assert evaluate.evaluate() == 2
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.hits, len(alert.samples)) == ("firing", 300, 20)
    assert alert.samples[-1]["value"] == "VIP prospects"
    assert re.fullmatch(r"Add To List, lead 2\d{3}, VIP prospects \(the latest of 300 events\)", alert.summary)
    delivery = Delivery.objects.get()
    first_due = alert.started_at + timedelta(seconds=rule.group_wait_seconds)  # the grouping wait
    assert (delivery.destination, delivery.reason, delivery.due_at) == (slack, "firing", first_due)
    assert evaluate.evaluate() == 0  # nothing evaluated twice
    assert Alert.objects.get(rule=rule).hits == 300


def test_matches_join_the_open_alert_until_it_is_quiet_for_the_window_then_a_new_one_opens(client, source, api_token):
    rule = from_preset("delete-lead", group_wait_seconds=60, window_minutes=5)
    start = timezone.now()
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    evaluate.evaluate(now=start)
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    evaluate.evaluate(now=start + timedelta(minutes=2))
    assert list(Alert.objects.filter(rule=rule).values_list("state", "hits")) == [("firing", 2)]
    evaluate.tick(now=start + timedelta(minutes=8))  # quiet for more than 5 minutes: closes
    assert Alert.objects.get(rule=rule).state == "resolved"
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    evaluate.evaluate(now=start + timedelta(minutes=9))
    assert list(Alert.objects.filter(rule=rule).order_by("id").values_list("state", "hits")) == [
        ("resolved", 2),
        ("firing", 1),
    ]


def test_notification_and_audit_templates_fire_on_their_streams(client, source, key_server, signed_headers):
    quota = from_preset("quota-80")
    aborted = from_preset("campaign-abort-notification")
    audit_abort = from_preset("campaign-abort-audit")
    login = from_preset("login-failure")
    io_post(
        client,
        source,
        signed_headers,
        [
            notification("web_services", "dailyQuota", {"dailyQuota": 1000, "percent": 50}),
            notification("web_services", "dailyQuota", {"dailyQuota": 1000, "percent": 80}),
            notification("campaign_abort", "user_campaign_abort", {"campaignId": 7, "userId": "a@example.com"}),
            audit("Smart Campaign", "abort"),
            audit("Smart Campaign", "activate"),
            audit("Login", "login failure", user_id="intruder@example.com"),
            audit("Login", "login success"),
        ],
    )
    evaluate.evaluate()
    fired = {a.rule_id: a for a in Alert.objects.all()}
    assert fired[quota.id].hits == 1 and fired[quota.id].labels == {"source": "Acme"}
    assert fired[aborted.id].hits == 1
    assert fired[audit_abort.id].hits == 1
    assert fired[login.id].labels == {"user": "intruder@example.com"}
    assert len(fired) == 4
    # Each summary names what happened, not "1 matching event".
    assert fired[quota.id].summary == "Web-service quota at 80 % of the daily limit"
    assert fired[aborted.id].summary == "Campaign aborted: campaign 7 by a@example.com"
    assert fired[login.id].summary.startswith("intruder@example.com login failure Login")


def test_a_watched_lead_that_stays_busy_is_reported_again_as_a_digest(client, source, api_token, slack):
    watched = WatchList.objects.create(name="VIP leads", entries="1001")
    rule = from_preset(
        "watched-leads", watch_list=watched, group_by="lead", destinations=[slack], group_wait_seconds=60
    )
    start = timezone.now()
    legacy_push(client, source, api_token, [activity(VISIT, lead="1001", primary="/pricing")])
    evaluate.evaluate(now=start)
    (first,) = Delivery.objects.all()
    Delivery.objects.update(status="sent")  # as the delivery task would, and then:
    Alert.objects.update(last_notified_at=start + timedelta(minutes=1))
    legacy_push(client, source, api_token, [activity(VISIT, lead="1001", primary="/contact")])
    evaluate.evaluate(now=start + timedelta(minutes=1, seconds=10))
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.hits) == ("firing", 2)
    assert alert.summary == "Visit Webpage, lead 1001, /contact (the latest of 2 events)"
    digest = Delivery.objects.exclude(pk=first.pk).get()
    assert digest.reason == "firing" and digest.due_at == start + timedelta(minutes=2)  # one grouping wait later
    legacy_push(client, source, api_token, [activity(VISIT, lead="1001", primary="/demo")])
    evaluate.evaluate(now=start + timedelta(minutes=1, seconds=20))
    assert Delivery.objects.count() == 2  # the waiting digest will carry it
    assert Alert.objects.get(rule=rule).hits == 3


def test_a_watched_lead_fires_on_any_activity_by_id_or_e_mail(client, source, api_token):
    watched = WatchList.objects.create(name="VIP leads", entries="1001\nBoss@Example.com")
    rule = from_preset("watched-leads", watch_list=watched, group_by="lead")
    legacy_push(
        client,
        source,
        api_token,
        [
            activity(VISIT, lead="1001"),
            activity(VISIT, lead="555", attributes=[{"name": "Email Address", "value": "boss@example.com"}]),
            activity(VISIT, lead="777"),
        ],
    )
    evaluate.evaluate()
    assert sorted(Alert.objects.filter(rule=rule).values_list("group_key", flat=True)) == ["lead:1001", "lead:555"]


def test_a_rule_for_one_source_ignores_the_others(client, source, other_source, api_token):
    from streams.auth import issue_api_token

    rule = from_preset("delete-lead", sources=[other_source])
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    evaluate.evaluate()
    assert not Alert.objects.filter(rule=rule).exists()
    legacy_push(client, other_source, issue_api_token(other_source), [activity(DELETE_LEAD)])
    evaluate.evaluate()
    assert Alert.objects.get(rule=rule).source == other_source


def test_a_threshold_fires_above_n_in_the_window_and_resolves_when_the_window_passes(client, source, api_token, slack):
    rule = from_preset("bounce-surge", threshold=3, destinations=[slack], group_wait_seconds=0)
    legacy_push(client, source, api_token, [activity(BOUNCE) for _ in range(3)])
    evaluate.evaluate()
    assert not Alert.objects.exists()  # 3 is not more than 3
    legacy_push(client, source, api_token, [activity(BOUNCE)])
    evaluate.evaluate()
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.value, alert.group_key) == ("firing", 4, f"source:{source.id}")
    Delivery.objects.filter(reason="firing").update(status="sent", sent_at=timezone.now())

    evaluate.tick(now=timezone.now() + timedelta(minutes=2))
    assert Alert.objects.get(pk=alert.pk).state == "firing"  # still inside the 5 minutes
    evaluate.tick(now=timezone.now() + timedelta(minutes=6))
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert list(Delivery.objects.filter(reason="resolved").values_list("destination", flat=True)) == [slack.id]
    assert [e.kind for e in alert.timeline.all()] == ["firing", "resolved"]


def test_a_threshold_summary_counts_in_the_singular_and_the_plural(client, source, api_token):
    rule = from_preset("bounce-surge", threshold=0, window_minutes=1)
    legacy_push(client, source, api_token, [activity(BOUNCE)])
    evaluate.evaluate()
    alert = Alert.objects.get(rule=rule)
    assert "1 matching event in 1 minute" in alert.summary
    legacy_push(client, source, api_token, [activity(BOUNCE)])
    evaluate.evaluate()
    alert.refresh_from_db()
    assert "2 matching events in 1 minute" in alert.summary


def test_a_threshold_that_clears_before_its_message_went_out_sends_nothing(client, source, api_token, slack):
    from_preset("bounce-surge", threshold=1, destinations=[slack], group_wait_seconds=30)
    legacy_push(client, source, api_token, [activity(BOUNCE), activity(BOUNCE)])
    evaluate.evaluate()
    evaluate.tick(now=timezone.now() + timedelta(minutes=6))
    assert list(Delivery.objects.values_list("reason", "status")) == [("firing", "cancelled")]


def test_for_keeps_an_alert_pending_until_the_condition_has_held_that_long(client, source, api_token):
    rule = from_preset("bounce-surge", threshold=1, for_minutes=1, window_minutes=10)
    legacy_push(client, source, api_token, [activity(BOUNCE), activity(BOUNCE)])
    evaluate.evaluate()
    assert Alert.objects.get(rule=rule).state == "pending"
    evaluate.tick(now=timezone.now() + timedelta(seconds=30))
    assert Alert.objects.get(rule=rule).state == "pending"
    evaluate.tick(now=timezone.now() + timedelta(seconds=70))
    assert Alert.objects.get(rule=rule).state == "firing"


def test_a_pending_alert_whose_condition_clears_never_fires(client, source, api_token):
    rule = from_preset("bounce-surge", threshold=1, for_minutes=10, window_minutes=1)
    legacy_push(client, source, api_token, [activity(BOUNCE), activity(BOUNCE)])
    evaluate.evaluate()
    evaluate.tick(now=timezone.now() + timedelta(minutes=3))
    assert Alert.objects.get(rule=rule).state == "inactive"
    assert not Delivery.objects.exists()


def test_late_deliveries_count_on_received_time_unless_occurred_time_is_chosen(client, source, api_token):
    received = from_preset("bounce-surge", name="received", threshold=1)
    occurred = from_preset("bounce-surge", name="occurred", threshold=1, basis="occurred")
    old = (timezone.now() - timedelta(hours=20)).isoformat()
    legacy_push(client, source, api_token, [activity(BOUNCE, activityDate=old) for _ in range(3)])
    evaluate.evaluate()
    assert Alert.objects.filter(rule=received).exists()
    assert not Alert.objects.filter(rule=occurred).exists()


def test_a_silent_source_fires_an_absence_alert_and_resolves_when_events_return(client, source, api_token, slack):
    rule = from_preset("stream-silent", window_minutes=10, destinations=[slack])
    evaluate.tick()
    deadline = Deadline.objects.get(rule=rule)
    assert deadline.group_key == f"source:{source.id}"
    evaluate.tick(now=timezone.now() + timedelta(minutes=5))
    assert not Alert.objects.exists()
    evaluate.tick(now=timezone.now() + timedelta(minutes=11))
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "firing" and "no matching event for 10 minutes" in alert.summary
    evaluate.tick(now=timezone.now() + timedelta(minutes=12))
    assert Alert.objects.count() == 1  # fired once, not once per tick
    Delivery.objects.update(status="sent", sent_at=timezone.now())

    legacy_push(client, source, api_token, [activity(VISIT)])
    evaluate.evaluate()
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert Delivery.objects.filter(reason="resolved").count() == 1


def test_an_absence_is_not_judged_while_batches_wait_to_be_evaluated(client, source, api_token, monkeypatch):
    rule = from_preset("stream-silent", window_minutes=10)
    evaluate.tick()
    legacy_push(client, source, api_token, [activity(VISIT)])
    monkeypatch.setattr(evaluate, "TICK_RUNS", 0)  # a backlog bigger than one tick evaluates
    evaluate.tick(now=timezone.now() + timedelta(minutes=11))
    assert not Alert.objects.filter(rule=rule).exists()


def test_signature_failures_counted_by_the_receivers_fire_a_health_alert(
    client, source, key_server, signed_headers, redis_client
):
    rule = from_preset("signature-failures", threshold=2)
    evaluate.tick()  # the first look only marks where the counters stand
    body = b'[{"eventid": "x", "type": "com.adobe.platform.marketo.activity.standard.visitwebpage"}]'
    for _ in range(3):
        response = client.post(
            f"/ingest/{source.ingest_key}/adobe-io/",
            body,
            content_type="application/json",
            **signed_headers(body, first=False, second=False),
        )
        assert response.status_code == 401
    evaluate.tick()
    alert = Alert.objects.get(rule=rule)
    assert (alert.state, alert.value) == ("firing", 3)


def test_health_rules_wait_while_redis_is_unreachable(source, monkeypatch):
    rule = from_preset("unavailable-run", threshold=0)
    monkeypatch.setattr(announce, "client", lambda: (_ for _ in ()).throw(OSError("down")))
    assert evaluate.tick()["health"] == 0
    assert not WindowCount.objects.filter(rule=rule).exists()


def test_a_batch_that_commits_after_a_later_one_was_evaluated_is_still_evaluated(client, source, api_token):
    rule = from_preset("delete-lead")
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    first, second = Batch.objects.order_by("id").values_list("id", flat=True)
    EvaluatedBatch.objects.create(batch_id=second)  # as if the later one had been seen first
    assert evaluate.evaluate() == 1
    assert Alert.objects.get(rule=rule).hits == 1
    assert set(EvaluatedBatch.objects.values_list("batch_id", flat=True)) == {first, second}


def test_an_evaluation_that_fails_leaves_nothing_behind(client, source, api_token, monkeypatch):
    rule = from_preset("delete-lead")
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])

    def broken(*args):
        raise RuntimeError("worker died")

    monkeypatch.setitem(evaluate._HANDLERS, Rule.Kind.MATCH, broken)
    with pytest.raises(RuntimeError):
        evaluate.evaluate()
    assert not EvaluatedBatch.objects.exists() and not Alert.objects.exists()
    monkeypatch.undo()
    assert evaluate.evaluate() == 1
    assert Alert.objects.get(rule=rule).hits == 1


def test_a_rule_is_compiled_again_after_it_changes(client, source, api_token):
    rule = from_preset("delete-lead")
    legacy_push(client, source, api_token, [activity(VISIT)])
    evaluate.evaluate()
    rule.conditions = [{"path": "activity_type_id", "op": "eq", "value": VISIT}]
    rule.save()
    assert rule.version == 2
    legacy_push(client, source, api_token, [activity(VISIT)])
    evaluate.evaluate()
    assert Alert.objects.get(rule=rule).hits == 1


def test_the_preview_finds_what_live_evaluation_fires(client, source, api_token):
    live = from_preset("bounce-surge", threshold=2, group_wait_seconds=0)
    legacy_push(client, source, api_token, [activity(BOUNCE) for _ in range(4)])
    legacy_push(client, source, api_token, [activity(DELETE_LEAD), activity(DELETE_LEAD)])
    evaluate.evaluate()
    deletes = from_preset("delete-lead")
    evaluate.evaluate()  # nothing new: the delete rule came after the events

    unsaved = Rule(**{k: v for k, v in presets.PRESETS["bounce-surge"].items()})
    unsaved.threshold = 2
    result = preview.preview(unsaved, hours=1, now=timezone.now())
    fired = Alert.objects.get(rule=live)
    assert [(f.group_key, f.value) for f in result.firings] == [(fired.group_key, fired.value)]

    unsaved_deletes = Rule(**{k: v for k, v in presets.PRESETS["delete-lead"].items()})
    assert [f.hits for f in preview.preview(unsaved_deletes, hours=1, now=timezone.now()).firings] == [2]
    assert not Alert.objects.filter(rule=deletes).exists()


@pytest.mark.django_db(transaction=True)
def test_a_second_evaluator_does_not_wait_for_the_first_and_the_first_takes_its_batches(client, source, api_token):
    import threading

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        pytest.skip("concurrent evaluators need PostgreSQL")
    rule = from_preset("delete-lead")
    holding, release = threading.Event(), threading.Event()

    def first_run():
        with transaction.atomic(), connection.cursor() as cursor:
            evaluate._lock_floor(cursor)
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=first_run)
    thread.start()
    holding.wait(10)
    legacy_push(client, source, api_token, [activity(DELETE_LEAD)])
    assert evaluate.evaluate() is None  # busy: this worker slot is free again at once
    assert evaluate.catch_up() is False
    release.set()
    thread.join()
    assert evaluate.catch_up() is True
    assert Alert.objects.get(rule=rule).hits == 1


def test_a_firing_alert_is_repeated_every_repeat_interval_until_acknowledged(
    client, source, api_token, slack, admin_user
):
    from alerts import lifecycle

    rule = from_preset("bounce-surge", threshold=0, window_minutes=60, repeat_minutes=30, destinations=[slack])
    legacy_push(client, source, api_token, [activity(BOUNCE)])
    evaluate.evaluate()
    alert = Alert.objects.get(rule=rule)
    sent_at = timezone.now()
    Delivery.objects.update(status="sent", sent_at=sent_at)
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=sent_at)

    assert evaluate.tick(now=sent_at + timedelta(minutes=20))["reminders"] == 0
    assert evaluate.tick(now=sent_at + timedelta(minutes=31))["reminders"] == 1
    assert Delivery.objects.filter(reason="reminder", status="pending").count() == 1
    assert evaluate.tick(now=sent_at + timedelta(minutes=32))["reminders"] == 0  # one waiting already

    Delivery.objects.update(status="sent")
    assert lifecycle.acknowledge(alert, admin_user, timezone.now(), "on it")
    assert evaluate.tick(now=sent_at + timedelta(minutes=59))["reminders"] == 0
    assert {"reminder", "acknowledged"} <= {e.kind for e in alert.timeline.all()}
    assert Alert.objects.get(pk=alert.pk).acknowledged_by == admin_user
