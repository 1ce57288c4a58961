"""What each kind of destination receives: e-mail on a real SMTP server, Slack Block Kit checked with
slack_sdk's models (webhook and bot token, with the resolved message edited in place), the generic webhook's
JSON; untrusted text escaped everywhere and Slack's limits respected."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import delivery, messages
from alerts.models import Alert, Delivery, Destination, Rule
from tests.alerts_receivers import Answer, check_block_kit, receiving, smtp_serving

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    yield from receiving(settings)


@pytest.fixture
def smtp(settings):
    yield from smtp_serving(settings)


HOSTILE = '<script>alert("x")</script> & <!channel> <https://evil.example|click me>'


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def rule(db):
    return Rule.objects.create(
        name="Watched leads", kind="watch", severity="critical", description="VIPs doing anything at all"
    )


def sample(i, value="Spring <launch>"):
    return {
        "id": i,
        "source": "Acme",
        "stream": "activity",
        "type": "Add to List",
        "lead": str(1000 + i),
        "campaign": None,
        "user": None,
        "action": None,
        "value": value,
        "received_at": "2026-03-03T10:00:00+00:00",
        "occurred_at": "2026-03-03T09:59:58+00:00",
    }


def make_alert(rule, now, **fields):
    values = {
        "rule": rule,
        "state": "fired",
        "severity": rule.severity,
        "started_at": now - timedelta(seconds=30),
        "fired_at": now - timedelta(seconds=30),
        "collecting_until": now,
        "hits": 25,
        "samples": [sample(i) for i in range(20)],
        "summary": "25 matching events",
        "labels": {"lead": "1000"},
    }
    values.update(fields)
    return Alert.objects.create(**values)


def send(alert, destination, now, reason="firing"):
    one = Delivery.objects.create(alert=alert, rule=alert.rule, destination=destination, reason=reason, due_at=now)
    outcome = delivery.send(one.pk, now)
    one.refresh_from_db()
    return outcome, one


# --- E-mail -------------------------------------------------------------------------------------------------------


def test_an_alert_email_reaches_a_real_smtp_server_with_text_and_html_parts(rule, smtp, receiver, now):
    team = Destination.objects.create(name="team", kind="email", email_to="ops@example.com, oncall@example.com")
    alert = make_alert(rule, now, summary=f"25 matching events {HOSTILE}")

    outcome, one = send(alert, team, now)

    assert outcome == "sent", one.outcome
    ((sender, recipients, mail),) = smtp.messages
    assert (sender, sorted(recipients)) == ("fluxo@example.com", ["oncall@example.com", "ops@example.com"])
    assert mail["Subject"].startswith("[FIRING] [critical] Watched leads: 25 matching events")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert HOSTILE in text  # plain text carries it as is
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Spring &lt;launch&gt;" in html and "Spring <launch>" in text
    for part in (text, html):  # ten samples shown, the rest counted
        assert "lead 1009" in part and "lead 1010" not in part
    assert "and 15 more" in text and "and 15 more" in html
    link = f"https://fluxo.example.com/alerts/{alert.pk}/"
    assert link in text and f'href="{link}"' in html


def test_a_resolved_email_says_resolved(rule, smtp, now):
    team = Destination.objects.create(name="team", kind="email", email_to="ops@example.com")
    alert = make_alert(rule, now, state="resolved", resolved_at=now)
    Delivery.objects.create(alert=alert, destination=team, reason="firing", due_at=now, status="sent", sent_at=now)
    outcome, _ = send(alert, team, now, reason="resolved")
    assert outcome == "sent"
    ((_, _, mail),) = smtp.messages
    assert mail["Subject"] == "[RESOLVED] [critical] Watched leads"
    assert "Resolved:" in mail.get_body(("plain",)).get_content()


def test_refused_recipients_fail_for_good_and_busy_ones_are_retried(rule, smtp, now):
    refused = Destination.objects.create(name="refused", kind="email", email_to="nobody@example.com")
    busy = Destination.objects.create(name="busy", kind="email", email_to="busy@example.com")
    alert = make_alert(rule, now)

    outcome, one = send(alert, refused, now)
    assert (outcome, one.status) == ("failed", "failed")
    assert one.attempt_log.get().status_code == 550 and "no such user" in one.outcome

    outcome, one = send(alert, busy, now)
    assert (outcome, one.status) == ("retry", "pending")
    assert smtp.messages == []


def test_an_unreachable_smtp_server_is_retried(rule, settings, now):
    from tests.processes import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    team = Destination.objects.create(name="team", kind="email", email_to="ops@example.com")
    outcome, one = send(make_alert(rule, now), team, now)
    assert outcome == "retry" and "SMTP server unreachable" in one.outcome


# --- Slack --------------------------------------------------------------------------------------------------------


def test_a_slack_webhook_gets_block_kit_that_slack_sdk_accepts_with_untrusted_text_escaped(rule, receiver, now):
    slack = Destination.objects.create(name="ops", kind="slack", url=receiver.url + "/services/T0/B0/s3cr3t")
    alert = make_alert(
        rule, now, summary=f"25 matching events {HOSTILE}", samples=[sample(i, HOSTILE) for i in range(12)]
    )

    outcome, _ = send(alert, slack, now)

    assert outcome == "sent"
    (request,) = receiver.requests
    assert request.path == "/services/T0/B0/s3cr3t"
    payload = request.json()
    blocks = check_block_kit(payload)
    header, summary, samples, more = blocks[0], blocks[1], blocks[2], blocks[3]
    assert header["type"] == "header" and "CRITICAL" in header["text"]["text"]
    assert "Watched leads" in header["text"]["text"]
    assert "&lt;script&gt;" in summary["text"]["text"] and "&lt;!channel&gt;" in summary["text"]["text"]
    assert "&amp;" in summary["text"]["text"]
    assert len(samples["fields"]) == 10
    assert all("<" not in f["text"] and "&lt;https://evil.example|click me&gt;" in f["text"] for f in samples["fields"])
    assert more["elements"][0]["text"] == "and 15 more matching events"
    assert blocks[-1]["elements"][0]["url"] == f"https://fluxo.example.com/alerts/{alert.pk}/"
    assert "<" not in payload["text"]


def test_slack_limits_hold_for_oversized_text(receiver, now):
    rule = Rule.objects.create(name="R" * 150, kind="match", severity="warning", description="<d>" * 2000)
    slack = Destination.objects.create(name="ops", kind="slack", url=receiver.url + "/services/x")
    alert = make_alert(rule, now, summary="&" * 5000, samples=[sample(i, "<" * 3000) for i in range(20)])
    outcome, _ = send(alert, slack, now)
    assert outcome == "sent"
    blocks = check_block_kit(receiver.requests[0].json())
    assert len(blocks[0]["text"]["text"]) <= 150
    assert len(blocks[1]["text"]["text"]) <= 3000
    assert not blocks[1]["text"]["text"].rstrip("…").endswith(("&", "&a", "&am", "&amp"))


def test_without_a_public_url_the_message_has_no_link(rule, receiver, settings, now):
    settings.FLUXO_PUBLIC_URL = None
    slack = Destination.objects.create(name="ops", kind="slack", url=receiver.url + "/services/x")
    hook = Destination.objects.create(name="hook", kind="webhook", url=receiver.url + "/hook")
    alert = make_alert(rule, now)
    send(alert, slack, now)
    send(alert, hook, now)
    blocks = check_block_kit(receiver.requests[0].json())
    assert all(b["type"] != "actions" for b in blocks)
    assert receiver.requests[1].json()["url"] is None


def test_with_a_bot_token_the_resolved_message_edits_the_firing_one_in_place(receiver, now):
    rule = Rule.objects.create(name="Bounces surge", kind="threshold", severity="warning", threshold=10)
    bot = Destination.objects.create(name="bot", kind="slack", slack_bot_token="xoxb-s3cr3t", slack_channel="#ops")
    alert = make_alert(rule, now, state="firing", collecting_until=None, samples=[], hits=0, summary="42 bounces")

    outcome, firing = send(alert, bot, now)
    assert outcome == "sent"
    assert firing.external_id == "C0FLUXO/1700000000.000001"
    post = receiver.requests[0]
    assert post.path == "/api/chat.postMessage"
    assert post.headers["Authorization"] == "Bearer xoxb-s3cr3t"
    assert post.json()["channel"] == "#ops"
    check_block_kit(post.json())

    Alert.objects.filter(pk=alert.pk).update(state="resolved", resolved_at=now + timedelta(minutes=5))
    outcome, resolved = send(alert, bot, now + timedelta(minutes=5), reason="resolved")
    assert outcome == "sent"
    update = receiver.requests[1]
    assert update.path == "/api/chat.update"
    assert (update.json()["channel"], update.json()["ts"]) == ("C0FLUXO", "1700000000.000001")
    assert "RESOLVED" in update.json()["blocks"][0]["text"]["text"]
    assert resolved.external_id == firing.external_id


def test_a_firing_message_slack_no_longer_has_gets_a_new_resolved_message(receiver, now):
    rule = Rule.objects.create(name="Bounces surge", kind="threshold", severity="warning", threshold=10)
    bot = Destination.objects.create(name="bot", kind="slack", slack_bot_token="xoxb-1", slack_channel="C1")
    alert = make_alert(rule, now, state="resolved", resolved_at=now)
    Delivery.objects.create(
        alert=alert, destination=bot, reason="firing", due_at=now, status="sent", sent_at=now, external_id="C1/1.2"
    )
    receiver.answer(Answer(200, {"ok": False, "error": "message_not_found"}))
    outcome, _ = send(alert, bot, now, reason="resolved")
    assert outcome == "sent"
    assert [r.path for r in receiver.requests] == ["/api/chat.update", "/api/chat.postMessage"]


@pytest.mark.parametrize(
    ("answer", "outcome", "enabled"),
    [
        (Answer(200, {"ok": False, "error": "invalid_auth"}), "failed", False),
        (Answer(200, {"ok": False, "error": "channel_not_found"}), "failed", False),
        (Answer(200, {"ok": False, "error": "invalid_blocks"}), "failed", True),
        (Answer(200, {"ok": False, "error": "internal_error"}), "retry", True),
        (Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "30"}), "retry", True),
        (Answer(503, "unavailable"), "retry", True),
    ],
)
def test_slack_api_errors_are_told_apart(rule, receiver, now, answer, outcome, enabled):
    bot = Destination.objects.create(name="bot", kind="slack", slack_bot_token="xoxb-s3cr3t", slack_channel="C1")
    receiver.answer(answer)
    result, one = send(make_alert(rule, now), bot, now)
    assert result == outcome
    bot.refresh_from_db()
    assert bot.enabled is enabled
    assert "xoxb" not in one.outcome and "xoxb" not in bot.disabled_reason


# --- Generic webhook ----------------------------------------------------------------------------------------------


def test_the_generic_webhook_gets_the_documented_json(rule, receiver, source, now):
    hook = Destination.objects.create(name="hook", kind="webhook", url=receiver.url + "/hook")
    alert = make_alert(rule, now, source=source, summary=HOSTILE)
    outcome, _ = send(alert, hook, now)
    assert outcome == "sent"
    (request,) = receiver.requests
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    body = request.json()
    assert body["version"] == "1" and body["status"] == "firing"
    assert body["rule"] == {"id": rule.pk, "name": "Watched leads", "description": "VIPs doing anything at all"}
    assert body["severity"] == "critical"
    assert body["labels"] == {
        "rule": "Watched leads",
        "severity": "critical",
        "kind": "watch",
        "source": "Acme",
        "lead": "1000",
    }
    assert body["summary"] == HOSTILE  # JSON carries text as is
    assert body["hits"] == 25 and len(body["samples"]) == 20 and body["samples"][0]["lead"] == "1000"
    assert body["started_at"] == alert.started_at.isoformat() and body["resolved_at"] is None
    assert body["url"] == f"https://fluxo.example.com/alerts/{alert.pk}/"


def test_reminders_and_tests_say_what_they_are(rule, receiver, now):
    hook = Destination.objects.create(name="hook", kind="webhook", url=receiver.url + "/hook")
    outcome, _ = send(make_alert(rule, now), hook, now, reason="reminder")
    assert outcome == "sent"
    assert receiver.requests[0].json()["status"] == "reminder"
    message = messages.build(Delivery(destination=hook, reason="test"))
    assert message.status == "test" and message.subject.startswith("[TEST]")
    check_block_kit(message.slack)


def test_a_rule_test_message_builds_a_sample_from_the_conditions(now):
    rule = Rule(
        name="Campaign aborted",
        kind="match",
        severity="critical",
        conditions=[
            {"path": "stream", "op": "eq", "value": "notification"},
            {"path": "type", "op": "in", "value": ["campaign_abort", "campaign_failure"]},
            {"path": "data.eventAction.percent", "op": "ge", "value": 80},
        ],
    )
    context = messages.rule_test_context(rule)
    (made_up,) = context["samples"]
    assert (made_up["stream"], made_up["type"]) == ("notification", "campaign_abort")
    assert "data.eventAction.percent ge 80" in made_up["value"]
    assert context["status"] == "test" and "test" in context["note"]
    check_block_kit(messages.slack_payload(context))
