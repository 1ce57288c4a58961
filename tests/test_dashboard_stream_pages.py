"""The audit, notification and setup pages: what they show, to whom, escaped."""

import json
import uuid
from datetime import datetime, timedelta
from importlib import import_module
from zoneinfo import ZoneInfo

import orjson
import pytest
from django.db import connection
from django.utils import timezone

from dashboard import audit, notifications, rollups
from dashboard.models import AuditPerson
from streams import announce
from streams.models import Event, ValidationRequest
from tests.conftest import payload
from tests.ingest import activity, legacy_push

pytestmark = pytest.mark.django_db

AUDIT = "/api/v1/audit"
NOTIFICATIONS = "/api/v1/notifications"


@pytest.fixture
def post_io(client, source, key_server, signed_headers):
    def post(body, to=None):
        url = f"/ingest/{(to or source).ingest_key}/adobe-io/"
        response = client.post(url, body, content_type="application/json", **signed_headers(body))
        assert response.status_code == 200, response.content
        return response.json()

    return post


def audit_event(component="Email", action="approve", user=None, user_id=None, component_id=1):
    data = {"componentId": component_id, "componentType": component, "eventAction": action, "munchkinId": "123-ABC-456"}
    if user is not None:
        data["user"] = user
    if user_id is not None:
        data["userId"] = user_id
    body = {
        "specversion": "1.0",
        "type": "com.adobe.platform.marketo.audit.user." + component.lower().replace(" ", ""),
        "source": "urn:mlm",
        "time": "2026-04-20T18:43:56Z",
        "dataschema": "V2.0",
        "data": data,
    }
    return {"eventid": str(uuid.uuid4()), "event": {"body": body}}


def quota_event(percent):
    body = {
        "specversion": "1.0",
        "type": "com.adobe.platform.marketo.notification.web_services",
        "source": "urn:mlm",
        "time": "2026-04-20T18:43:56Z",
        "data": {
            "munchkinId": "123-ABC-456",
            "componentType": "web_services",
            "subType": "dailyQuota",
            "eventAction": {"dailyQuota": 50000, "percent": percent, "serviceNames": ["leads"]},
        },
    }
    return {"eventid": str(uuid.uuid4()), "event": {"body": body}}


# --- Audit ------------------------------------------------------------------------------------------------


def test_a_numbered_user_is_shown_as_the_person_an_event_carrying_both_names():
    rows = [
        {"user_numeric": "253", "user_email": "ann@x.io"},
        {"user_numeric": "253", "user_email": ""},
        {"user_numeric": "999", "user_email": ""},
    ]
    emails = audit.people(rows)
    assert [audit.person_of(r["user_numeric"], r["user_email"], emails) for r in rows] == [
        "ann@x.io",
        "ann@x.io",
        "user #999",
    ]
    assert audit.person_of("", "", emails) == "(unknown user)"


def test_the_heat_map_puts_the_busiest_people_on_top_with_their_names_escaped():
    found = [
        audit.Change("<b>ann</b>", "Email", "edit", 5),
        audit.Change("bob@x.io", "Form", "create", 1),
        audit.Change("<b>ann</b>", "Form", "edit", 2),
    ]
    figure = audit.heatmap_figure(found)
    (trace,) = figure["data"]
    assert trace["type"] == "heatmap"
    assert trace["y"] == ["&lt;b&gt;ann&lt;/b&gt;", "bob@x.io"]
    assert trace["x"] == ["Email", "Form"]
    assert trace["z"] == [[5, 2], [0, 1]]


def test_the_audit_snapshot_counts_changes_by_person_component_and_action(client, teammate, post_io):
    post_io(
        orjson.dumps(
            [
                audit_event(user=253, user_id="ann@x.io"),  # the hybrid V1.0 shape: both names
                audit_event("Landing Page", "edit", user=253),
                audit_event("Landing Page", "edit", user_id="bob@x.io"),
                audit_event("Login", "login failure", user_id="eve@x.io"),
            ]
        )
    )
    client.force_login(teammate)
    response = client.get(AUDIT, {"range": "1h"})
    assert response.status_code == 200
    found = response.json()
    assert found["changes"] == 4
    assert found["login_failures"] == 1
    assert found["people"][0] == {"person": "ann@x.io", "changes": 2}
    assert {"component": "Landing Page", "action": "edit", "changes": 2} in found["by_component"]
    alerts = [item for item in found["feed"] if item["alert"]]
    assert [(a["user"], a["detail"]) for a in alerts] == [("eve@x.io", "Login 1 login failure")]


def test_a_numbered_user_is_matched_to_the_person_an_earlier_range_named(client, teammate, source, post_io):
    post_io(orjson.dumps([audit_event(user=253, user_id="ann@x.io")]))  # both names, two days ago
    rollups.roll_up()
    Event.objects.update(received_at=timezone.now() - timedelta(days=2))
    post_io(orjson.dumps([audit_event("Landing Page", "edit", user=253), audit_event(user=999)]))
    client.force_login(teammate)
    people = client.get(AUDIT, {"range": "1h"}).json()["people"]
    assert sorted((p["person"], p["changes"]) for p in people) == [("ann@x.io", 1), ("user #999", 1)]
    assert AuditPerson.objects.get(source=source).user_email == "ann@x.io"
    # User numbers belong to one instance: another source's user 253 is someone else.
    assert audit.person_of("253", "", audit.known_people([source.id]), source.id + 1) == "user #253"


def test_the_migration_learns_who_each_number_is_from_the_events_already_stored(source, post_io):
    post_io(orjson.dumps([audit_event(user=253, user_id="ann@x.io"), audit_event(user=7)]))
    AuditPerson.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(import_module("dashboard.migrations.0003_audit_person").FILL)
    assert list(AuditPerson.objects.values_list("source_id", "user_numeric", "user_email")) == [
        (source.id, "253", "ann@x.io")
    ]


def test_the_audit_snapshot_is_for_logged_in_people_and_their_sources(client, post_io, django_user_model, source):
    post_io(orjson.dumps([audit_event(user_id="ann@x.io")]))
    assert client.get(AUDIT).status_code == 401
    client.force_login(django_user_model.objects.create_user("stranger", password="pw-stranger-1"))
    assert client.get(AUDIT, {"range": "1h"}).json()["changes"] == 0
    assert client.get(AUDIT, {"source": source.id}).status_code == 404


# --- Notifications -------------------------------------------------------------------------------------


def test_the_notification_snapshot_shows_aborts_failures_and_the_quota(client, teammate, post_io):
    post_io(payload("notification_batch.json"))
    post_io(orjson.dumps([quota_event(85)]))
    client.force_login(teammate)
    found = client.get(NOTIFICATIONS, {"range": "1h", "tz": "Europe/Paris"}).json()
    assert sorted((p["what"], p["campaign"], p["user"]) for p in found["problems"]) == [
        ("Campaign aborted", "#1234", "foo@bar.com"),
        ("Campaign failed", "#1234", "foo@bar.com"),
    ]
    assert found["quota"]["percent"] == 85.0
    assert found["quota"]["daily_quota"] == 50000
    assert found["gauge"]["data"][0]["value"] == 85.0
    (line,) = found["quota_line"]["data"]
    assert line["y"] == [25.0, 85.0]
    assert [shape["y0"] for shape in found["quota_line"]["layout"]["shapes"]] == [80, 100]
    assert found["others"] == []


def test_the_quota_chart_spans_the_selected_range_empty_or_with_one_point(client, teammate, post_io):
    client.force_login(teammate)
    empty = client.get(NOTIFICATIONS, {"range": "1h", "tz": "Europe/Paris"}).json()
    since, until = (datetime.fromisoformat(empty["window"][k]) for k in ("since", "until"))
    paris = ZoneInfo("Europe/Paris")
    expected = [t.astimezone(paris).strftime("%Y-%m-%d %H:%M:%S") for t in (since, until)]
    assert empty["quota_line"]["layout"]["xaxis"]["range"] == expected  # not Jan to Nov 2000
    assert empty["quota_line"]["layout"]["annotations"][0]["text"] == "No quota notification in this range"
    post_io(orjson.dumps([quota_event(85)]))
    one = client.get(NOTIFICATIONS, {"range": "1h", "tz": "Europe/Paris"}).json()
    assert one["quota_line"]["layout"]["xaxis"]["range"][0] == expected[0]  # not one millisecond
    assert one["quota_line"]["layout"]["yaxis"]["range"] == [0, 110]


def test_a_campaign_is_named_where_lead_activities_told_its_name(client, teammate, post_io, source, api_token):
    legacy_push(client, source, api_token, [activity(6, campaignId="1234", campaignName="Spring <b>promo</b>")])
    post_io(payload("notification_batch.json"))
    client.force_login(teammate)
    found = client.get(NOTIFICATIONS, {"range": "1h"}).json()
    assert {p["campaign"] for p in found["problems"]} == {"Spring <b>promo</b> (#1234)"}  # escaped where shown


def test_the_heat_map_reads_darker_for_more_changes_and_slants_its_labels():
    found = [audit.Change("ada@x.io", "Email", "edit", 3), audit.Change("bob@x.io", "Smart Campaign", "edit", 1)]
    figure = audit.heatmap_figure(found)
    assert figure["data"][0]["colorscale"] == "Blues" and figure["data"][0]["reversescale"] is True
    assert figure["layout"]["xaxis"]["tickangle"] == -35


def test_a_quota_percent_is_read_leniently():
    assert notifications._number(25) == 25.0
    assert notifications._number("80%") == 80.0
    assert notifications._number(True) is None
    assert notifications._number("most") is None
    assert notifications.gauge_figure(None)["data"][0]["value"] == 0
    assert notifications.gauge_figure(130)["data"][0]["gauge"]["axis"]["range"] == [0, 130]


# --- Pages -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/audit/", "/notifications/", "/leads/"])
def test_every_page_asks_for_a_login_then_loads_only_its_own_files(client, admin_user, path):
    assert client.get(path).status_code == 302
    client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "https://" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_setup_page_is_for_staff_and_shows_what_to_give_adobe(client, teammate, admin_user, source, redis_client):
    ValidationRequest.objects.create(source=source, url="https://csm.adobe.io/csm/registrations/validate?id=<x>")
    announce.request_refused(source.id, "signature", 401, "no <b>signature</b> verifies", timezone.now())
    client.force_login(teammate)
    assert client.get("/setup/").status_code == 302  # to the admin login: not staff
    client.force_login(admin_user)
    response = client.get("/setup/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f"http://testserver/ingest/{source.ingest_key}/adobe-io/" in html
    assert f"http://testserver/ingest/{source.ingest_key}/marketo-push/" in html
    assert "validate?id=&lt;x&gt;" in html
    assert "no &lt;b&gt;signature&lt;/b&gt; verifies" in html


def test_the_snapshots_answer_json_errors_for_bad_ranges(client, admin_user):
    client.force_login(admin_user)
    for url in (AUDIT, NOTIFICATIONS):
        response = client.get(url, {"range": "forever"})
        assert response.status_code == 400
        assert json.loads(response.content)["error"] == "bad_parameter"
