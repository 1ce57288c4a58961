"""The alerts pages, the admin and /api/v1/alerts, with Django's test client: who may do what, CSRF,
the preview on events stored by the real receivers against what live evaluation fires, the change
history, acknowledging, secrets never shown back, and untrusted text escaped."""

import http.server
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone

from alerts import compiled, evaluate
from alerts.models import (
    Alert,
    AlertEvent,
    Delivery,
    Destination,
    MuteWindow,
    Rule,
    RuleChange,
    Silence,
    WatchList,
)
from streams import api_tokens
from streams.models import Event
from tests.ingest import april_activity, legacy_push

SLACK_URL = "https://hooks.slack.com/services/T0001/B0002/s3cretHookValueABCD"
BOT_TOKEN = "xoxb-1234-s3cret-bot-tokenWXYZ"
EVIL_NAME = "<script>window.__pwned=1</script>"
EVIL_LEAD = "<img src=x onerror=alert(1)>"


# --- Personas and helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_compiled_rules():
    # Rule ids repeat from one test to the next (the test database rolls back): drop compiled rules.
    compiled._cache.clear()
    yield
    compiled._cache.clear()


@pytest.fixture
def manager(source, django_user_model):
    """Sees Acme through a viewer group and may manage alerting."""
    group = Group.objects.create(name="Acme alerting")
    source.viewer_groups.add(group)
    user = django_user_model.objects.create_user("manager", password="pw-manager-1")
    user.groups.add(group)
    user.user_permissions.add(Permission.objects.get(codename="manage_alerting"))
    return user


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def formset(prefix, rows, fields):
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": "0"}
    data.update({f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
    for i, row in enumerate(rows):
        for name in fields:
            value = row.get(name)
            if value is True:
                data[f"{prefix}-{i}-{name}"] = "on"
            elif value not in (None, False):
                data[f"{prefix}-{i}-{name}"] = value
    return data


def rule_data(conditions=(), **fields):
    """What the rule form posts: every field, conditions as rows (path, op, value as typed, negate)."""
    data = {
        "name": "Spring list adds",
        "description": "",
        "kind": "match",
        "severity": "warning",
        "enabled": "on",
        "group_by": "",
        "threshold": "0",
        "recovery_threshold": "",
        "window_minutes": "5",
        "for_minutes": "0",
        "basis": "received",
        "metric": "",
        "group_wait_seconds": "30",
        "repeat_minutes": "240",
        "preview-hours": "24",
        "tz": "UTC",
        "action": "save",
    }
    data.update(fields)
    data.update(formset("cond", list(conditions), ("path", "op", "value", "negate")))
    return data


def make_rule(**fields):
    values = {"name": "Deletes", "kind": "match", "conditions": [{"path": "activity_type_id", "op": "eq", "value": 37}]}
    values.update(fields)
    return Rule.objects.create(**values)


def make_alert(rule, source=None, state=Alert.State.FIRING, **fields):
    now = timezone.now()
    values = {
        "rule": rule,
        "source": source,
        "state": state,
        "severity": rule.severity,
        "started_at": now,
        "fired_at": now,
        "summary": "3 matching events",
    }
    values.update(fields)
    return Alert.objects.create(**values)


class Receiver:
    """A local HTTP server standing in for a webhook's far end: records posts, answers ``status``."""

    def __init__(self, status=200):
        self.posts, self.status = [], status
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.posts.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver(settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = True  # the far end is on loopback in tests
    server = Receiver()
    yield server
    server.close()


# --- Who may do what --------------------------------------------------------------------------------------


def test_pages_need_a_login_and_the_api_a_token_or_session(db):
    anonymous = Client()
    for path in ("/alerts/", "/alerts/rules/", "/alerts/silences/", "/alerts/destinations/"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    response = anonymous.get("/api/v1/alerts")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_viewer_sees_alerts_but_gets_403_on_every_change(teammate, source):
    rule = make_rule()
    alert = make_alert(rule, source)
    destination = Destination.objects.create(name="Ops", kind="email", email_to="ops@example.com")
    viewer = logged_in(teammate)
    assert viewer.get("/alerts/").status_code == 200
    assert viewer.get(f"/alerts/{alert.pk}/").status_code == 200
    rules_page = viewer.get("/alerts/rules/")
    assert rules_page.status_code == 200 and b"New rule" not in rules_page.content
    forbidden_gets = [
        "/alerts/rules/new/",
        f"/alerts/rules/{rule.pk}/",
        f"/alerts/rules/{rule.pk}/delete/",
        "/alerts/destinations/",
        f"/alerts/destinations/{destination.pk}/",
        "/alerts/silences/new/",
        "/alerts/mute-windows/",
        "/alerts/watch-lists/new/",
    ]
    for path in forbidden_gets:
        assert viewer.get(path).status_code == 403, path
    forbidden_posts = [
        ("/alerts/rules/from-preset/", {"preset": "delete-lead"}),
        ("/alerts/rules/new/", rule_data()),
        (f"/alerts/rules/{rule.pk}/toggle/", {}),
        (f"/alerts/rules/{rule.pk}/test/", {}),
        (f"/alerts/rules/{rule.pk}/delete/", {}),
        (f"/alerts/{alert.pk}/acknowledge/", {"comment": "mine"}),
        (f"/alerts/destinations/{destination.pk}/test/", {}),
        (f"/alerts/destinations/{destination.pk}/enable/", {}),
        ("/alerts/watch-lists/new/", {"name": "x", "entries": "1"}),
    ]
    for path, data in forbidden_posts:
        assert viewer.post(path, data).status_code == 403, path
    rule.refresh_from_db()
    alert.refresh_from_db()
    assert rule.enabled and alert.acknowledged_at is None
    assert Rule.objects.count() == 1 and not WatchList.objects.exists() and not RuleChange.objects.exists()


def test_each_person_sees_the_alerts_of_their_sources(teammate, manager, admin_user, source, other_source):
    rule = make_rule(name="Deletes everywhere")
    mine = make_alert(rule, source, group_key="source:1", summary="acme alert")
    theirs = make_alert(rule, other_source, group_key="source:2", summary="eu alert")
    nobodys = make_alert(rule, None, group_key="", summary="several sources alert")
    expected = {
        teammate: {mine.pk},
        manager: {mine.pk, nobodys.pk},
        admin_user: {mine.pk, theirs.pk, nobodys.pk},
    }
    for user, ids in expected.items():
        client = logged_in(user)
        listed = client.get("/alerts/").content.decode()
        for alert in (mine, theirs, nobodys):
            assert (alert.summary in listed) == (alert.pk in ids), (user, alert.summary)
            assert client.get(f"/alerts/{alert.pk}/").status_code == (200 if alert.pk in ids else 404)
        assert {a["id"] for a in client.get("/api/v1/alerts").json()["alerts"]} == ids


def test_forms_refuse_a_post_without_the_csrf_token(admin_user, source):
    alert = make_alert(make_rule(), source)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post("/alerts/rules/new/", rule_data(name="No token")).status_code == 403
    assert client.post(f"/alerts/{alert.pk}/acknowledge/", {"comment": "x"}).status_code == 403
    assert client.post("/alerts/silences/new/", {"match-TOTAL_FORMS": "0"}).status_code == 403
    assert not Rule.objects.filter(name="No token").exists()
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    page = client.get("/alerts/rules/new/")
    assert b'name="csrfmiddlewaretoken"' in page.content


# --- Rules: presets, validation, history ------------------------------------------------------------------------


def test_a_preset_creates_its_missing_watch_list_and_prefills_the_form(manager):
    client = logged_in(manager)
    response = client.post("/alerts/rules/from-preset/", {"preset": "list-add"}, follow=True)
    assert response.status_code == 200
    watch_list = WatchList.objects.get(name="Watched lists")
    assert watch_list.entries == ""
    html = response.content.decode()
    assert "was created, empty" in html
    assert 'value="Lead added to a watched list"' in html
    assert 'value="primary_attribute"' in html and 'value="Watched lists"' in html
    # A second use finds the list: no second notice, no second list.
    again = client.post("/alerts/rules/from-preset/", {"preset": "list-add"}, follow=True)
    assert "was created, empty" not in again.content.decode()
    assert WatchList.objects.filter(name="Watched lists").count() == 1
    assert client.post("/alerts/rules/from-preset/", {"preset": "nope"}).status_code == 404


def test_creating_and_editing_a_rule_records_who_changed_what(manager, source):
    ops = Destination.objects.create(name="Ops", kind="email", email_to="ops@example.com")
    client = logged_in(manager)
    conditions = [{"path": "activity_type_id", "op": "eq", "value": "37"}]
    response = client.post("/alerts/rules/new/", rule_data(conditions, name="Deleted leads", sources=[source.pk]))
    rule = Rule.objects.get(name="Deleted leads")
    assert response.status_code == 302 and response["Location"] == f"/alerts/rules/{rule.pk}/"
    assert rule.conditions == [{"path": "activity_type_id", "op": "eq", "value": 37}]
    assert list(rule.sources.all()) == [source]
    created = RuleChange.objects.get(rule=rule)
    assert (created.action, created.user) == ("created", manager)
    assert created.changes["name"] == [None, "Deleted leads"]

    edit = rule_data(conditions, name="Deleted leads", severity="critical", sources=[source.pk], destinations=[ops.pk])
    assert client.post(f"/alerts/rules/{rule.pk}/", edit).status_code == 302
    change = RuleChange.objects.filter(rule=rule, action="changed").get()
    assert change.user == manager
    assert change.changes == {"destinations": [[], [str(ops)]], "severity": ["warning", "critical"]}
    rule.refresh_from_db()
    assert rule.version == 2

    page = client.get(f"/alerts/rules/{rule.pk}/").content.decode()
    assert "manager" in page and "warning → critical" in page


def test_saving_an_unchanged_rule_records_nothing(manager):
    client = logged_in(manager)
    conditions = [{"path": "stream", "op": "eq", "value": "audit"}]
    client.post("/alerts/rules/new/", rule_data(conditions, name="Audit"))
    rule = Rule.objects.get(name="Audit")
    client.post(f"/alerts/rules/{rule.pk}/", rule_data(conditions, name="Audit"))
    assert list(RuleChange.objects.values_list("action", flat=True)) == ["created"]


def test_a_condition_that_does_not_compile_is_shown_next_to_its_row(manager):
    client = logged_in(manager)
    rows = [
        {"path": "activity_type_id", "op": "eq", "value": "24"},
        {"path": "nope.deeper", "op": "eq", "value": "x"},
        {"path": "data.eventAction.percent", "op": "ge", "value": "eighty"},
    ]
    response = client.post("/alerts/rules/new/", rule_data(rows, name="Broken"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "a path starts with one of" in html
    assert "ge needs a number" in html
    assert html.count('class="row-error"') == 2
    assert not Rule.objects.filter(name="Broken").exists()
    # Shown at once with the other fields' errors, not one round after them.
    both = client.post("/alerts/rules/new/", rule_data(rows[1:2], name="")).content.decode()
    assert "This field is required." in both and "a path starts with one of" in both


def test_a_watch_rule_needs_a_watch_list_and_a_health_rule_a_metric(manager):
    client = logged_in(manager)
    watch = client.post("/alerts/rules/new/", rule_data(name="Watch", kind="watch")).content.decode()
    assert "A watch-list rule needs a watch list." in watch
    health = client.post("/alerts/rules/new/", rule_data(name="Health", kind="health")).content.decode()
    assert "Say what a health rule counts." in health
    assert not Rule.objects.exists()


def test_enabling_disabling_and_deleting_are_recorded(manager):
    rule = make_rule()
    client = logged_in(manager)
    client.post(f"/alerts/rules/{rule.pk}/toggle/")
    rule.refresh_from_db()
    assert not rule.enabled
    toggled = RuleChange.objects.get(rule=rule)
    assert toggled.changes == {"enabled": [True, False]} and toggled.user == manager
    assert client.get(f"/alerts/rules/{rule.pk}/delete/").status_code == 200  # the confirmation
    assert Rule.objects.filter(pk=rule.pk).exists()
    client.post(f"/alerts/rules/{rule.pk}/delete/")
    assert not Rule.objects.filter(pk=rule.pk).exists()
    deleted = RuleChange.objects.get(action="deleted")
    assert (deleted.rule_name, deleted.user, deleted.rule) == ("Deletes", manager, None)


def test_a_manager_keeps_the_sources_of_a_rule_they_cannot_see(manager, source, other_source):
    rule = make_rule()
    rule.sources.set([source, other_source])
    client = logged_in(manager)
    page = client.get(f"/alerts/rules/{rule.pk}/").content.decode()
    assert other_source.name not in page
    client.post(f"/alerts/rules/{rule.pk}/", rule_data(rule.conditions, name="Deletes", sources=[source.pk]))
    assert set(rule.sources.all()) == {source, other_source}


# --- The preview, against live evaluation on the same stored events -----------------------------------------


def preview_of(client, path, data):
    response = client.post(path, {**data, "action": "preview"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert "error" not in preview, preview
    return preview, response.content.decode()


def test_the_match_preview_agrees_with_what_evaluation_fires(admin_user, source, api_token, client):
    activities = [
        april_activity(24, name="Add to List", lead=1, primary="Spring list"),
        april_activity(24, name="Add to List", lead=2, primary="Spring list"),
        april_activity(24, name="Add to List", lead=2, primary="Spring list"),
        april_activity(24, name="Add to List", lead=3, primary="Other list"),
        april_activity(1, name="Visit Webpage", lead=1, primary="Spring list"),
    ]
    legacy_push(client, source, api_token, activities)
    manager = logged_in(admin_user)
    rows = [
        {"path": "activity_type_id", "op": "eq", "value": "24"},
        {"path": "primary_attribute", "op": "in", "value": '["Spring list"]'},
    ]
    data = rule_data(rows, name="Spring adds", group_by="lead")
    preview, html = preview_of(manager, "/alerts/rules/new/", data)
    assert not Rule.objects.exists()  # a preview saves nothing
    previewed = sorted((f.group_key, f.hits) for f in preview["outcome"].firings)
    assert previewed == [("lead:1", 1), ("lead:2", 2)]
    assert "It would have fired <strong>2</strong> times" in html
    assert 'id="preview-figure-spec"' in html

    assert manager.post("/alerts/rules/new/", data).status_code == 302
    evaluate.evaluate()
    fired = sorted(Alert.objects.values_list("group_key", "hits"))
    assert fired == previewed


def test_the_threshold_preview_agrees_with_what_evaluation_fires(admin_user, source, api_token, client):
    legacy_push(client, source, api_token, [april_activity(8, name="Email Bounced", lead=n) for n in range(4)])
    legacy_push(client, source, api_token, [april_activity(1, name="Visit Webpage")])
    manager = logged_in(admin_user)
    rows = [{"path": "activity_type_id", "op": "in", "value": "8, 27"}]
    data = rule_data(rows, name="Bounces", kind="threshold", threshold="2", window_minutes="5", group_by="source")
    preview, _ = preview_of(manager, "/alerts/rules/new/", data)
    previewed = [(f.group_key, f.value, f.resolved_at) for f in preview["outcome"].firings]
    assert previewed == [(f"source:{source.pk}", 4, None)]

    manager.post("/alerts/rules/new/", data)
    evaluate.evaluate()
    fired = list(Alert.objects.values_list("group_key", "value", "state"))
    assert fired == [(f"source:{source.pk}", 4, "firing")]


def test_the_preview_of_an_existing_rule_uses_the_form_not_the_saved_rule(admin_user, source, api_token, client):
    deleted = april_activity(37, name="Delete Lead", lead=5)
    changed = april_activity(13, name="Change Data Value", lead=6)
    legacy_push(client, source, api_token, [deleted, changed])
    rule = make_rule()
    manager = logged_in(admin_user)
    rows = [{"path": "activity_type_id", "op": "eq", "value": "13"}]
    preview, _ = preview_of(manager, f"/alerts/rules/{rule.pk}/", rule_data(rows, name="Deletes"))
    assert [f.samples[0]["lead"] for f in preview["outcome"].firings] == ["6"]
    rule.refresh_from_db()
    assert rule.conditions == [{"path": "activity_type_id", "op": "eq", "value": 37}]  # unchanged
    assert not RuleChange.objects.exists()


def test_a_manager_previews_only_the_sources_they_see(manager, source, other_source, api_token, client):
    from streams.auth import issue_api_token

    legacy_push(client, source, api_token, [april_activity(37, name="Delete Lead", lead=1)])
    legacy_push(client, other_source, issue_api_token(other_source), [april_activity(37, name="Delete Lead", lead=2)])
    rows = [{"path": "activity_type_id", "op": "eq", "value": "37"}]
    preview, html = preview_of(logged_in(manager), "/alerts/rules/new/", rule_data(rows, name="Deletes"))
    assert [s["lead"] for f in preview["outcome"].firings for s in f.samples] == ["1"]
    assert "only the sources you can see" in html


# --- Alerts: the list, one alert, acknowledging -------------------------------------------------------------


def test_acknowledging_is_recorded_with_who_and_the_comment(manager, source):
    alert = make_alert(make_rule(), source)
    client = logged_in(manager)
    response = client.post(f"/alerts/{alert.pk}/acknowledge/", {"comment": "on it", "next": "/alerts/"})
    assert response.status_code == 302 and response["Location"] == "/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_by == manager and alert.acknowledged_at is not None
    event = AlertEvent.objects.get(alert=alert, kind="acknowledged")
    assert (event.user, event.detail) == (manager, "on it")
    page = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "by manager" in page and "on it" in page
    # Twice is refused, and an outside "next" is not followed.
    again = client.post(f"/alerts/{alert.pk}/acknowledge/", {"next": "https://elsewhere.example/"})
    assert again["Location"] == f"/alerts/{alert.pk}/"
    assert AlertEvent.objects.filter(alert=alert, kind="acknowledged").count() == 1


def test_the_history_is_filtered_and_paginated(admin_user, source, other_source):
    rule, other = make_rule(name="Deletes"), make_rule(name="Quota")
    for n in range(55):
        make_alert(rule, source, state=Alert.State.FIRED, summary=f"deletes {n}")
    make_alert(other, other_source, state=Alert.State.RESOLVED, summary="quota back to normal", severity="critical")
    client = logged_in(admin_user)
    first = client.get("/alerts/").content.decode()
    assert "page 1 of 2" in first and "quota back to normal" in first
    filtered = client.get("/alerts/", {"severity": "critical"}).content.decode()
    assert "quota back to normal" in filtered and "deletes 3" not in filtered
    by_source = client.get("/alerts/", {"source": source.pk, "page": 2}).content.decode()
    assert "quota back to normal" not in by_source and "page 2 of 2" in by_source
    assert f"source={source.pk}&amp;page=1" in by_source  # the pager keeps the filters


def test_an_alert_shows_its_samples_timeline_and_every_delivery_attempt(admin_user, source, api_token, client):
    legacy_push(client, source, api_token, [april_activity(37, name="Delete Lead", lead=42, primary="gone")])
    rule = make_rule()
    evaluate.evaluate()
    alert = Alert.objects.get()
    ops = Destination.objects.create(name="Ops hook", kind="webhook", url="https://example.com/x")
    delivery = Delivery.objects.create(
        alert=alert, rule=rule, destination=ops, reason="firing", status="sent", due_at=alert.started_at
    )
    delivery.attempt_log.create(outcome="retry", status_code=503, detail="far end busy")
    delivery.attempt_log.create(outcome="sent", status_code=200)
    html = logged_in(admin_user).get(f"/alerts/{alert.pk}/").content.decode()
    assert f'href="/leads/{source.pk}/42/"' in html
    event = Event.objects.get(lead_id="42")
    assert f'href="/events/{event.pk}/?at=' in html  # each sample opens its event's page
    assert "Delete Lead" in html and "first match" in html
    assert "far end busy" in html and "(503)" in html and "(200)" in html


def test_untrusted_text_is_shown_escaped(admin_user, source):
    rule = make_rule(name=EVIL_NAME)
    sample = {"id": None, "source": "Acme", "type": EVIL_NAME, "lead": EVIL_LEAD, "value": EVIL_LEAD}
    alert = make_alert(rule, source, samples=[sample], labels={"campaign": EVIL_LEAD}, summary=EVIL_NAME)
    client = logged_in(admin_user)
    for path in ("/alerts/", f"/alerts/{alert.pk}/", "/alerts/rules/", f"/alerts/rules/{rule.pk}/"):
        html = client.get(path).content.decode()
        assert "<script>window.__pwned" not in html, path
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html, path
    detail = client.get(f"/alerts/{alert.pk}/").content.decode()
    assert "<img src=x" not in detail and "&lt;img src=x onerror=alert(1)&gt;" in detail
    assert f'href="/leads/{source.pk}/' not in detail  # a lead id like that is not linked
    assert "script-src 'self'" in client.get("/alerts/")["Content-Security-Policy"]


# --- Destinations ---------------------------------------------------------------------------------------------


def destination_data(**fields):
    data = {"name": "Team Slack", "kind": "slack", "enabled": "on", "email_to": "", "url": SLACK_URL}
    data.update({"slack_bot_token": BOT_TOKEN, "slack_channel": "C123", "send_resolved": "on"})
    data["rate_limit_per_minute"] = "30"
    data.update(fields)
    return data


def test_slack_secrets_are_never_shown_back_and_blank_keeps_them(manager, admin_user):
    client = logged_in(manager)
    response = client.post("/alerts/destinations/new/", destination_data())
    destination = Destination.objects.get(name="Team Slack")
    assert response.status_code == 302
    assert (destination.url, destination.slack_bot_token) == (SLACK_URL, BOT_TOKEN)
    admin = logged_in(admin_user)
    pages = [
        client.get("/alerts/destinations/"),
        client.get(f"/alerts/destinations/{destination.pk}/"),
        admin.get(f"/admin/alerts/destination/{destination.pk}/change/"),
    ]
    for page in pages:
        html = page.content.decode()
        assert page.status_code == 200
        assert "s3cret" not in html, page.wsgi_request.path
    assert "hooks.slack.com …ABCD" in pages[0].content.decode()
    assert "…WXYZ" in pages[1].content.decode()
    client.post(f"/alerts/destinations/{destination.pk}/", destination_data(url="", slack_bot_token="", name="Renamed"))
    destination.refresh_from_db()
    assert (destination.name, destination.url, destination.slack_bot_token) == ("Renamed", SLACK_URL, BOT_TOKEN)


def test_a_destination_url_on_a_private_address_is_refused(manager, settings):
    settings.FLUXO_ALLOW_PRIVATE_URLS = False
    client = logged_in(manager)
    data = destination_data(kind="webhook", name="Internal", url="http://127.0.0.1:9/hook", slack_bot_token="")
    html = client.post("/alerts/destinations/new/", {**data, "slack_channel": ""}).content.decode()
    assert "private or reserved address" in html
    assert "FLUXO_ALLOW_PRIVATE_URLS=1" in html  # how to allow it
    assert "needs a URL" not in html  # the URL was given, not missing
    slack = client.post("/alerts/destinations/new/", destination_data(url="http://hooks.slack.com/x")).content.decode()
    assert "Slack webhook URLs are https." in slack
    assert not Destination.objects.exists()


def test_send_a_test_shows_the_outcome_of_a_real_send(manager, receiver):
    destination = Destination.objects.create(name="Hook", kind="webhook", url=receiver.url)
    client = logged_in(manager)
    page = client.post(f"/alerts/destinations/{destination.pk}/test/", follow=True).content.decode()
    assert "Test to Hook: sent" in page
    assert len(receiver.posts) == 1
    delivery = Delivery.objects.get(reason="test")
    assert delivery.created_by == manager and delivery.status == "sent"
    receiver.status = 500
    failed = client.post(f"/alerts/destinations/{destination.pk}/test/", follow=True).content.decode()
    assert "Test to Hook: failed" in failed


def test_a_rule_test_goes_to_each_destination_of_the_rule(manager, receiver):
    rule = make_rule()
    rule.destinations.add(Destination.objects.create(name="Hook", kind="webhook", url=receiver.url))
    page = logged_in(manager).post(f"/alerts/rules/{rule.pk}/test/", follow=True).content.decode()
    assert "Test to Hook: sent" in page
    assert len(receiver.posts) == 1 and Delivery.objects.get().rule == rule


def test_a_destination_disabled_by_fluxo_says_why_and_can_be_enabled_again(manager):
    destination = Destination.objects.create(
        name="Gone", kind="slack", url=SLACK_URL, enabled=False, disabled_reason="Slack answered 404 no_service"
    )
    client = logged_in(manager)
    listed = client.get("/alerts/destinations/").content.decode()
    assert "disabled by Fluxo: Slack answered 404 no_service" in listed
    assert "Disabled by Fluxo" in client.get(f"/alerts/destinations/{destination.pk}/").content.decode()
    client.post(f"/alerts/destinations/{destination.pk}/enable/")
    destination.refresh_from_db()
    assert destination.enabled and destination.disabled_reason == "" and destination.disabled_at is None


def test_deleting_a_destination_is_recorded_on_the_rules_that_used_it(manager):
    rule = make_rule()
    ops = Destination.objects.create(name="Ops", kind="email", email_to="ops@example.com")
    rule.destinations.add(ops)
    logged_in(manager).post(f"/alerts/destinations/{ops.pk}/delete/")
    assert not Destination.objects.exists()
    change = RuleChange.objects.get(rule=rule)
    assert change.changes == {"destinations": [[str(ops)], []]} and change.user == manager


# --- Silences, mute windows, watch lists -----------------------------------------------------------------------


def matcher_rows(*rows):
    return formset(
        "match", [dict(zip(("label", "op", "value"), row, strict=True)) for row in rows], ("label", "op", "value")
    )


def test_silence_this_alert_prefills_the_matchers_and_expire_ends_it(manager, source):
    alert = make_alert(make_rule(name="Quota"), source, labels={"source": source.name}, group_key="source:1")
    client = logged_in(manager)
    form = client.get(f"/alerts/silences/new/?alert={alert.pk}").content.decode()
    assert 'value="rule"' in form and 'value="Quota"' in form and f'value="{source.name}"' in form
    data = {**matcher_rows(("rule", "=", "Quota"), ("source", "=", source.name)), "duration": "4h", "comment": "deploy"}
    before = timezone.now()
    assert client.post("/alerts/silences/new/", {**data, "tz": "UTC"}).status_code == 302
    silence = Silence.objects.get()
    assert silence.created_by == manager and silence.comment == "deploy"
    assert silence.matchers == [
        {"label": "rule", "op": "=", "value": "Quota"},
        {"label": "source", "op": "=", "value": "Acme"},
    ]
    assert timedelta(hours=4) <= silence.ends_at - before < timedelta(hours=4, minutes=1)
    assert "deploy" in client.get("/alerts/silences/").content.decode()
    client.post(f"/alerts/silences/{silence.pk}/expire/")
    silence.refresh_from_db()
    assert silence.ends_at <= timezone.now()


def test_silence_times_are_read_in_the_viewers_zone_and_matchers_checked(manager):
    client = logged_in(manager)
    data = {**matcher_rows(("rule", "=~", "Quota.*")), "tz": "Asia/Kolkata"}
    data.update({"starts_at": "2026-05-01T10:00", "ends_at": "2026-05-01T12:30", "duration": ""})
    assert client.post("/alerts/silences/new/", data).status_code == 302
    silence = Silence.objects.get()
    assert silence.starts_at == datetime(2026, 5, 1, 4, 30, tzinfo=UTC)
    assert silence.ends_at == datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    bad = client.post("/alerts/silences/new/", {**matcher_rows(("rule", "=~", "(")), "duration": "1h"})
    assert "not a valid pattern" in bad.content.decode()
    empty = client.post("/alerts/silences/new/", {**matcher_rows(), "duration": "1h"})
    assert "at least one matcher" in empty.content.decode()
    assert Silence.objects.count() == 1


def test_mute_windows_are_created_edited_and_deleted_with_the_rules_history(manager):
    client = logged_in(manager)
    data = {"name": "Nights", "time_zone": "Europe/Paris", "weekdays": ["0", "4"], "start_time": "22:00"}
    assert client.post("/alerts/mute-windows/new/", {**data, "end_time": "07:00"}).status_code == 302
    window = MuteWindow.objects.get()
    assert window.weekdays == [0, 4] and str(window.end_time) == "07:00:00"
    assert "Mon, Fri" in client.get("/alerts/mute-windows/").content.decode()
    bad = client.post(f"/alerts/mute-windows/{window.pk}/", {**data, "time_zone": "Mars/Base", "end_time": "07:00"})
    assert "Not an IANA time zone" in bad.content.decode()
    rule = make_rule()
    rule.mute_windows.add(window)
    client.post(f"/alerts/mute-windows/{window.pk}/delete/")
    assert not MuteWindow.objects.exists()
    assert RuleChange.objects.get(rule=rule).changes == {"mute_windows": [["Nights"], []]}


def test_a_watch_list_in_use_is_neither_deleted_nor_renamed(manager):
    client = logged_in(manager)
    assert client.post("/alerts/watch-lists/new/", {"name": "VIP", "entries": "7\nA@Example.com\n"}).status_code == 302
    vip = WatchList.objects.get()
    assert vip.values() == {"7", "a@example.com"}
    make_rule(name="VIP lists", conditions=[{"path": "primary_attribute", "op": "in_watch_list", "value": "VIP"}])
    client.post(f"/alerts/watch-lists/{vip.pk}/delete/", follow=True)
    assert WatchList.objects.filter(pk=vip.pk).exists()
    renamed = client.post(f"/alerts/watch-lists/{vip.pk}/", {"name": "VIPs", "entries": "7"}).content.decode()
    assert "change them first" in renamed
    vip.refresh_from_db()
    assert vip.name == "VIP"


# --- /api/v1/alerts -----------------------------------------------------------------------------------------------


def test_the_api_lists_open_recently_fired_and_recently_resolved_alerts_with_a_token(teammate, source):
    rule = make_rule(name=EVIL_NAME)
    now = timezone.now()
    firing = make_alert(rule, source, group_key="a", labels={"lead": "7"})
    recent = make_alert(rule, source, group_key="b", state="resolved", resolved_at=now - timedelta(minutes=30))
    make_alert(rule, source, group_key="c", state="resolved", resolved_at=now - timedelta(hours=2))
    fired = make_alert(rule, source, group_key="d", state="fired")  # an event alert of the last hour
    _, secret = api_tokens.create(teammate)
    response = Client().get("/api/v1/alerts", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert [a["id"] for a in body["alerts"]] == [firing.pk, fired.pk, recent.pk]
    first = body["alerts"][0]
    assert first["rule"] == EVIL_NAME and first["labels"] == {"lead": "7"} and first["url"] == f"/alerts/{firing.pk}/"
    assert Client().get("/api/v1/alerts", HTTP_AUTHORIZATION="Bearer fxp_wrong").status_code == 401
    client = logged_in(teammate)
    assert client.get("/api/v1/alerts", {"nope": "1"}).status_code == 400
    assert client.get("/api/v1/alerts", {"source": "x"}).status_code == 400
    assert client.post("/api/v1/alerts").status_code == 405


# --- The admin ---------------------------------------------------------------------------------------------


def admin_rule_data(**fields):
    data = {
        "name": "Admin rule",
        "description": "",
        "kind": "match",
        "enabled": "on",
        "severity": "warning",
        "conditions": json.dumps([{"path": "activity_type_id", "op": "eq", "value": 37}]),
        "group_by": "",
        "threshold": "0",
        "recovery_threshold": "",
        "window_minutes": "5",
        "for_minutes": "0",
        "basis": "received",
        "metric": "",
        "group_wait_seconds": "30",
        "repeat_minutes": "240",
        "watch_list": "",
    }
    data.update(fields)
    return data


def test_the_admin_records_rule_changes_with_the_many_to_many_fields(admin_user):
    client = logged_in(admin_user)
    ops = Destination.objects.create(name="Ops", kind="email", email_to="ops@example.com")
    response = client.post("/admin/alerts/rule/add/", admin_rule_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = Rule.objects.get(name="Admin rule")
    client.post(f"/admin/alerts/rule/{rule.pk}/change/", admin_rule_data(severity="critical", destinations=[ops.pk]))
    change = RuleChange.objects.get(action="changed")
    assert change.user == admin_user
    assert change.changes == {"destinations": [[], [str(ops)]], "severity": ["warning", "critical"]}
    bad = client.post(
        f"/admin/alerts/rule/{rule.pk}/change/", admin_rule_data(conditions='[{"path": "x", "op": "eq"}]')
    )
    assert bad.status_code == 200 and "a path starts with one of" in bad.content.decode()
    client.post(f"/admin/alerts/rule/{rule.pk}/delete/", {"post": "yes"})
    assert not Rule.objects.exists()
    assert list(RuleChange.objects.order_by("id").values_list("action", flat=True)) == ["created", "changed", "deleted"]


def test_every_alerts_model_is_in_the_admin(admin_user):
    client = logged_in(admin_user)
    for model in (
        "alert",
        "alertevent",
        "delivery",
        "deliveryattempt",
        "destination",
        "mutewindow",
        "rule",
        "rulechange",
        "silence",
        "watchlist",
        "evaluatedbatch",
        "evaluatorfloor",
        "windowcount",
        "deadline",
    ):
        assert client.get(f"/admin/alerts/{model}/").status_code == 200, model


# --- The preview's figure ------------------------------------------------------------------------------------


def test_the_preview_timeline_escapes_labels_and_draws_spans_only_for_rules_that_resolve():
    from zoneinfo import ZoneInfo

    from alerts import figures
    from alerts.preview import Firing

    since = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    until = since + timedelta(hours=2)
    firings = [
        Firing("campaign:x", {"campaign": EVIL_LEAD}, since, fired_at=since + timedelta(minutes=10), hits=3),
        Firing("", {}, since, fired_at=since + timedelta(minutes=30), resolved_at=since + timedelta(minutes=40)),
    ]
    zone = ZoneInfo("Asia/Kolkata")
    events = figures.preview_timeline(firings, since, until, zone, resolves=False)
    spans, marks = events["data"]
    assert marks["y"] == ["campaign=&lt;img src=x onerror=alert(1)&gt;", "(the rule)"]
    assert marks["x"][0] == "2026-05-01 05:40:00"  # naive local time, as Plotly wants it
    assert spans["x"] == []
    states = figures.preview_timeline(firings, since, until, zone, resolves=True)
    assert states["data"][0]["x"] == [
        "2026-05-01 05:40:00",
        "2026-05-01 07:30:00",  # still open at the end of the preview
        None,
        "2026-05-01 06:00:00",
        "2026-05-01 06:10:00",
        None,
    ]
    assert states["layout"]["xaxis"]["range"] == ["2026-05-01 05:30:00", "2026-05-01 07:30:00"]
