"""Alerts reach the live overview: announced by the alerts app, forwarded by each process's tick."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.utils import timezone

from alerts import announce, evaluate
from alerts.management.commands.install_rule_presets import install
from alerts.models import Alert, Rule
from dashboard import groups, payloads
from tests.ingest import activity, legacy_push
from tests.test_dashboard_live import frame_where, open_socket, receive, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_fired_alert_reaches_the_sockets_of_its_source(client, source, api_token, teammate, cookie_for, redis_client):
    install("delete-lead")
    cookie = cookie_for(teammate)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        await sync_to_async(legacy_push)(client, source, api_token, [activity(37, lead="<script>x</script>")])
        await sync_to_async(evaluate.evaluate)()
        frame = await frame_where(communicator, lambda f: f["type"] == "live.alerts")
        (alert,) = frame["alerts"]
        assert (alert["rule"], alert["state"], alert["source_id"], alert["hits"]) == (
            "Lead deleted",
            "firing",  # an event alert is open (firing) until it closes
            source.id,
            1,
        )
        await communicator.disconnect()

    run(scenario)


def test_the_alerts_page_socket_hears_alerts_and_no_deltas(
    client, source, api_token, teammate, cookie_for, redis_client
):
    install("delete-lead")
    cookie = cookie_for(teammate)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"view=alerts&source={source.id}")
        await sync_to_async(legacy_push)(client, source, api_token, [activity(37, lead="9")])
        await sync_to_async(evaluate.evaluate)()
        frame = await receive(communicator)  # the first frame it gets: no delta came before it
        assert frame["type"] == "live.alerts" and frame["alerts"][0]["rule"] == "Lead deleted"
        await communicator.disconnect()

    run(scenario)


def test_an_alert_of_no_single_source_goes_to_managers_only(source, teammate, admin_user, cookie_for, redis_client):
    rule = Rule.objects.create(name="across sources", kind="match")
    now = timezone.now()
    alert = Alert.objects.create(rule=rule, state="fired", severity="info", started_at=now, fired_at=now)
    manager = teammate.__class__.objects.create_user("manager", password="pw-manager-1")
    manager.user_permissions.add(Permission.objects.get(codename="manage_alerting"))
    cookies = [cookie_for(admin_user), cookie_for(manager), cookie_for(teammate)]

    async def scenario():
        admin, _ = await open_socket(cookies[0])
        managing, _ = await open_socket(cookies[1])
        viewer, _ = await open_socket(cookies[2])
        await sync_to_async(announce.alerts_changed)([alert])
        for communicator in (admin, managing):
            frame = await frame_where(communicator, lambda f: f["type"] == "live.alerts")
            assert frame["alerts"][0]["id"] == alert.pk and frame["alerts"][0]["source_id"] is None
        while not await viewer.receive_nothing(timeout=1):  # nothing for a viewer of one source
            assert (await receive(viewer))["type"] != "live.alerts"
        for communicator in (admin, managing, viewer):
            await communicator.disconnect()

    run(scenario)


def test_alert_frames_go_to_the_group_of_each_alert_s_source():
    frames = payloads.alerts_frames(
        b'{"alerts": [{"id": 1, "source_id": 7}, {"id": 2, "source_id": null}, {"id": 3, "source_id": 7}]}'
    )
    assert {g: [a["id"] for a in f["alerts"]] for g, f in frames.items()} == {
        groups.source_group(7): [1, 3],
        groups.alerts_group(7): [1, 3],
        groups.unscoped_alerts_group(): [2],
    }
    assert payloads.alerts_frames(b"not json") == {}


def test_the_snapshot_holds_open_alerts_and_event_alerts_of_the_last_hour(client, source, admin_user):
    rule = Rule.objects.create(name="deletes", kind="match")
    now = timezone.now()
    recent = Alert.objects.create(
        rule=rule, source=source, state="fired", severity="info", started_at=now, fired_at=now
    )
    old = now - timezone.timedelta(hours=3)
    Alert.objects.create(rule=rule, source=source, state="fired", severity="info", started_at=old, fired_at=old)
    client.force_login(admin_user)
    body = client.get(f"/api/v1/alerts?source={source.id}").json()
    assert [a["id"] for a in body["alerts"]] == [recent.pk]
