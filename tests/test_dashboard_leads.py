"""Lead activity: the tail's server-side filters (HTTP and socket) and a lead's timeline page."""

from datetime import timedelta

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from dashboard import payloads, tail, timeline
from dashboard.groups import SOCKET_PATH
from fluxo.asgi import application
from tests.conftest import payload
from tests.ingest import april_activity, legacy_push

TAIL = "/api/v1/tail"
FRAME_WAIT = 10  # seconds; a bound on a failure only


def change(field, old, new, lead=7):
    attributes = [
        {"name": "Attribute Name", "value": field},
        {"name": "Old Value", "value": old},
        {"name": "New Value", "value": new},
        {"name": "Reason", "value": "Form fill"},
    ]
    return april_activity(13, name="Change Data Value", lead=lead, primary=field, attributes=attributes)


# --- Filters and the tail over HTTP -------------------------------------------------------------------


def test_filters_are_read_strictly():
    assert tail.parse({"type": "13", "lead": " 7 ", "campaign": ""}) == tail.Filter(13, "7", None, "activity")
    assert tail.parse({"stream": "audit"}).stream == "audit"
    assert tail.parse({}) == tail.Filter()
    for bad in (
        {"stream": "nope"},
        {"type": "13; drop"},
        {"type": "99999999999"},
        {"lead": "x" * 300},
        {"campaign": "a\x00b"},
    ):
        with pytest.raises(tail.BadFilter):
            tail.parse(bad)


def test_filters_have_stable_distinct_keys():
    assert tail.Filter(13, "7").key() == tail.Filter(13, "7").key()
    assert tail.Filter(13, "7").key() != tail.Filter(13, None).key() != tail.Filter(None, "13").key()


@pytest.mark.django_db
def test_the_tail_applies_every_filter_on_the_server(client, source, api_token, admin_user):
    activities = [
        april_activity(1),
        april_activity(1, lead=8),
        change("Email", "a@x.io", "b@x.io", lead=8),
        april_activity(6, name="Send Email", campaignId=55, campaignName="Spring Send"),
    ]
    legacy_push(client, source, api_token, activities)
    client.force_login(admin_user)

    def labels(**params):
        response = client.get(TAIL, params)
        assert response.status_code == 200
        return [(e["label"], e["lead"]) for e in response.json()["events"]]

    assert len(labels()) == 4
    assert labels(type=13) == [("Change Data Value", "8")]
    assert labels(lead="8") == [("Change Data Value", "8"), ("Visit Webpage", "8")]
    assert labels(campaign="55") == labels(campaign="Spring Send") == [("Send Email", "7")]
    assert labels(type=1, lead="8") == [("Visit Webpage", "8")]


@pytest.mark.django_db
def test_the_tail_refuses_bad_filters_and_other_people_s_sources(client, source, api_token, stranger):
    client.force_login(stranger)
    assert client.get(TAIL, {"type": "x"}).status_code == 400
    assert client.get(TAIL, {"lead_id": "7"}).status_code == 400
    assert client.get(TAIL, {"source": source.id}).status_code == 404
    assert client.get(TAIL).json() == {"sources": [], "window": None, "events": []}
    client.logout()
    assert client.get(TAIL).status_code == 401


@pytest.mark.django_db
def test_the_tail_shows_only_what_was_received_in_the_range_asked_for(client, source, api_token, admin_user):
    legacy_push(client, source, api_token, [april_activity(1, primary="/now")])
    client.force_login(admin_user)

    def shown(**params):
        found = client.get(TAIL, params).json()
        return [e["detail"] for e in found["events"]], found["window"]

    assert shown() == (["/now"], None)  # no range: any time
    events, window = shown(range="1h")
    assert events == ["/now"]
    assert (window["live"], window["sliding"]) == (True, True)
    events, window = shown(range="custom", since="2020-01-01T00:00", until="2020-01-02T00:00", tz="Europe/Paris")
    assert events == []
    assert window["live"] is False
    now = timezone.now()
    since, until = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    events, window = shown(range="custom", since=since, until=until)
    assert events == ["/now"]
    assert (window["live"], window["sliding"]) == (True, False)  # it holds now: new events come in live
    assert client.get(TAIL, {"range": "2w"}).status_code == 400


@pytest.mark.django_db
def test_the_tail_page_has_the_source_and_range_pickers_of_every_page(client, source, admin_user):
    client.force_login(admin_user)
    page = client.get("/leads/", {"source": source.id, "range": "custom", "since": "2026-04-20T08:00"}).content.decode()
    overview = client.get("/").content.decode()
    for html in (page, overview):
        assert '<select name="range" id="range">' in html
        assert 'id="custom-range"' in html
    assert f'<option value="{source.id}" selected>' in page
    assert '<option value="custom" selected>' in page
    assert 'value="2026-04-20T08:00"' in page
    assert '<option value="15m" selected>' in overview


# --- The tail over the socket --------------------------------------------------------------------------


def cookie_of(user):
    browser = Client()
    browser.force_login(user)
    return f"sessionid={browser.cookies['sessionid'].value}"


def socket(cookie, query):
    headers = [(b"origin", b"http://127.0.0.1"), (b"cookie", cookie.encode())]
    return WebsocketCommunicator(application, f"{SOCKET_PATH}?{query}", headers=headers)


async def receive(communicator):
    return orjson.loads(await communicator.receive_from(timeout=FRAME_WAIT))


@pytest.mark.django_db(transaction=True)
def test_a_filtered_tail_gets_the_rare_type_it_asked_for_among_many_others(client, source, api_token, teammate):
    cookie = cookie_of(teammate)
    busy = [april_activity(1, lead=1000 + i) for i in range(payloads.TAIL_SAMPLE + 30)]

    async def scenario():
        communicator = socket(cookie, f"view=tail&source={source.id}&type=13")
        assert (await communicator.connect(timeout=FRAME_WAIT))[0]
        assert (await receive(communicator))["type"] == "live.hello"
        await sync_to_async(legacy_push)(
            client, source, api_token, [*busy[:40], change("City", "Lyon", "Paris"), *busy[40:]]
        )
        frame = await receive(communicator)
        assert frame["type"] == "live.tail"
        assert [(e["label"], e["detail"]) for e in frame["events"]] == [("Change Data Value", "City")]
        assert frame["sampled"] is False
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_an_unfiltered_tail_gets_a_bounded_sample_and_says_so(client, source, api_token, teammate):
    cookie = cookie_of(teammate)

    async def scenario():
        communicator = socket(cookie, "view=tail&source=all")
        assert (await communicator.connect(timeout=FRAME_WAIT))[0]
        await receive(communicator)
        await sync_to_async(legacy_push)(
            client, source, api_token, [april_activity(1) for _ in range(payloads.TAIL_SAMPLE + 1)]
        )
        frame = await receive(communicator)
        assert len(frame["events"]) == payloads.TAIL_SAMPLE
        assert frame["sampled"] is True
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_a_tail_with_a_bad_filter_or_a_foreign_source_is_refused(source, teammate, stranger):
    teammate_cookie, stranger_cookie = cookie_of(teammate), cookie_of(stranger)

    async def refused(cookie, query):
        communicator = socket(cookie, query)
        connected, code = await communicator.connect(timeout=FRAME_WAIT)
        await communicator.disconnect()
        return connected, code

    async def scenario():
        assert await refused(teammate_cookie, "view=tail&type=abc") == (False, 4400)
        assert await refused(stranger_cookie, f"view=tail&source={source.id}") == (False, 4403)

    async_to_sync(scenario)()


# --- A lead's timeline ---------------------------------------------------------------------------------


def test_attributes_are_read_from_either_protocol_s_payload():
    legacy = orjson.dumps({"attributes": [{"name": "Old Value", "value": 3}, {"name": "Flag", "value": True}]})
    assert timeline.attributes_of(legacy.decode()) == [("Old Value", "3"), ("Flag", "true")]
    io = orjson.dumps({"type": "x", "data": {"attributes": [{"name": "Webpage URL", "value": "/a"}]}})
    assert timeline.attributes_of(io.decode()) == [("Webpage URL", "/a")]
    assert timeline.attributes_of("not json") == []
    assert timeline.attributes_of('{"attributes": "nope"}') == []


def test_summaries_say_what_changed():
    assert timeline.summary(13, "City", {"Attribute Name": "City", "Old Value": "Lyon", "New Value": "Paris"}) == (
        "City: Lyon → Paris"
    )
    assert timeline.summary(24, "Webinar invitees", {}) == "added to list Webinar invitees"
    assert timeline.summary(25, "Webinar invitees", {}) == "removed from list Webinar invitees"
    assert timeline.summary(32, "Jane", {"Merge IDs": "[12, 13]"}) == "merged [12, 13] (Jane)"
    assert timeline.summary(37, "Jane Doe", {}) == "lead deleted (Jane Doe)"
    assert timeline.summary(1, "/pricing", {}) == "/pricing"


@pytest.mark.django_db
def test_a_lead_page_shows_its_whole_timeline_with_old_and_new_values(client, source, api_token, teammate):
    legacy_push(client, source, api_token, payload_activities())
    legacy_push(
        client,
        source,
        api_token,
        [
            april_activity(24, name="Add To List", primary="Webinar invitees"),
            april_activity(1, lead=8, primary="/someone-else"),
        ],
    )
    client.force_login(teammate)
    response = client.get(f"/leads/{source.id}/12345/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "First Name: Jon → John (Web service API)" in html
    assert "Click Link" in html
    assert "/someone-else" not in html
    response = client.get(f"/leads/{source.id}/7/")
    assert "added to list Webinar invitees" in response.content.decode()
    assert response["Content-Security-Policy"].startswith("default-src 'self'")


def payload_activities():
    return orjson.loads(payload("lads_legacy_push_batch.json"))["activities"]


@pytest.mark.django_db
def test_a_lead_page_escapes_what_the_events_carry(client, source, api_token, admin_user):
    evil = '<img src=x onerror="alert(1)">'
    legacy_push(client, source, api_token, [change(evil, "<b>old</b>", "<script>alert(2)</script>")])
    client.force_login(admin_user)
    html = client.get(f"/leads/{source.id}/7/").content.decode()
    assert "<img src=x" not in html and "<script>alert" not in html and "<b>old" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


@pytest.mark.django_db
def test_a_lead_page_of_a_source_one_may_not_see_is_a_404(client, source, stranger):
    client.force_login(stranger)
    assert client.get(f"/leads/{source.id}/7/").status_code == 404
    client.logout()
    assert client.get(f"/leads/{source.id}/7/").status_code == 302


@pytest.mark.django_db
def test_the_tail_page_offers_standard_and_received_custom_types(client, source, api_token, admin_user):
    from dashboard import rollups

    legacy_push(client, source, api_token, [april_activity(100007, name="Attended <Webinar>")])
    rollups.roll_up()
    client.force_login(admin_user)
    html = client.get("/leads/").content.decode()
    assert ">Change Data Value (13)</option>" in html
    assert ">Attended &lt;Webinar&gt; (100007)</option>" in html
