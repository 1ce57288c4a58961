"""The live socket through the real ASGI application and the real Redis channel layer.

Events are posted to the real receivers; the process's tick hears the batch announcement over Redis
and sends one delta per watched source.
"""

import asyncio

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard import groups, tick
from fluxo.asgi import application
from streams.auth import issue_api_token
from streams.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_WAIT = 10  # seconds; only a bound on a failure, never a measured time


@pytest.fixture
def cookie_for(db):
    def make(user):
        browser = Client()  # one per person: logging another one in would end the first one's session
        browser.force_login(user)
        return f"sessionid={browser.cookies['sessionid'].value}"

    return make


def socket(cookie=None, query="source=all"):
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, f"{groups.SOCKET_PATH}?{query}", headers=headers)


async def receive(communicator):
    return orjson.loads(await communicator.receive_from(timeout=FRAME_WAIT))


async def open_socket(cookie, query="source=all"):
    communicator = socket(cookie, query)
    connected, _ = await communicator.connect(timeout=FRAME_WAIT)
    assert connected
    hello = await receive(communicator)
    assert hello["type"] == "live.hello"
    assert hello["listening"] is True
    return communicator, hello


def push(client, source, token, *guids, type_id=1, name="Visit Webpage"):
    activities = [
        {"marketoGUID": g, "leadId": 42, "activityDate": "2026-04-20T18:43:56Z", "activityTypeId": type_id,
         "activityType": name, "primaryAttributeValue": f"page {g}"}
        for g in guids
    ]  # fmt: skip
    response = client.post(
        f"/ingest/{source.ingest_key}/marketo-push/",
        orjson.dumps({"munchkinId": source.munchkin_id, "activities": activities}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200
    return response.json()


async def deltas_until(communicator, events):
    """Frames received until their counts add up to ``events``."""
    frames, seen = [], 0
    while seen < events:
        frame = await receive(communicator)
        assert frame["type"] == "live.delta"
        frames.append(frame)
        seen += sum(row["n"] for row in frame["counts"])
    assert seen == events
    return frames


def run(scenario):
    async_to_sync(scenario)()


async def refused(communicator):
    """(connected, close code) of a socket expected to be refused; the application is then ended."""
    connected, code = await communicator.connect(timeout=FRAME_WAIT)
    await communicator.disconnect()
    return connected, code


def test_an_anonymous_socket_is_refused(source):
    async def scenario():
        assert await refused(socket()) == (False, 4401)

    run(scenario)


def test_a_forged_session_cookie_is_refused(source):
    async def scenario():
        assert await refused(socket("sessionid=not-a-session")) == (False, 4401)

    run(scenario)


def test_a_stranger_cannot_join_another_source_s_group(source, stranger, cookie_for):
    cookie = cookie_for(stranger)

    async def scenario():
        assert await refused(socket(cookie, f"source={source.id}")) == (False, 4403)
        assert await refused(socket(cookie, "source=1%20OR%201")) == (False, 4403)

    run(scenario)


def test_a_socket_from_another_site_is_refused(source, teammate, cookie_for):
    cookie = cookie_for(teammate)

    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            f"{groups.SOCKET_PATH}?source=all",
            headers=[(b"origin", b"http://evil.example"), (b"cookie", cookie.encode())],
        )
        connected, _ = await refused(communicator)
        assert not connected

    run(scenario)


def test_a_delta_arrives_after_a_batch_commits(client, source, api_token, teammate, cookie_for, redis_client):
    cookie = cookie_for(teammate)

    async def scenario():
        communicator, hello = await open_socket(cookie, f"source={source.id}")
        assert hello["sources"] == [source.id]
        await sync_to_async(push)(client, source, api_token, "g-1", "g-2", "g-3")
        (frame,) = await deltas_until(communicator, 3)
        assert frame["source"] == source.id
        (row,) = frame["counts"]
        assert (row["label"], row["stream"], row["n"]) == ("Visit Webpage", "activity", 3)
        assert row["key"] == "activity|com.adobe.platform.marketo.activity.standard.visitwebpage|1"
        stored = await sync_to_async(lambda: sorted(Event.objects.values_list("id", "batch_id")))()
        assert row["batch"] == stored[0][1]
        assert sorted(e["id"] for e in frame["events"]) == [i for i, _ in stored]
        assert {(e["lead"], e["label"]) for e in frame["events"]} == {("42", "Visit Webpage")}
        assert frame["sampled"] is False
        await communicator.disconnect()

    run(scenario)


def test_a_stranger_watching_all_gets_nothing_of_sources_they_cannot_see(
    client, source, api_token, teammate, stranger, cookie_for, redis_client
):
    teammate_cookie, stranger_cookie = cookie_for(teammate), cookie_for(stranger)

    async def scenario():
        watching, _ = await open_socket(teammate_cookie)
        snooping, hello = await open_socket(stranger_cookie)
        assert hello["sources"] == []
        await sync_to_async(push)(client, source, api_token, "g-1")
        await deltas_until(watching, 1)
        # The teammate's delta went out in that tick: the stranger would have had theirs by now.
        assert await snooping.receive_nothing(timeout=0.5)
        await watching.disconnect()
        await snooping.disconnect()

    run(scenario)


def test_each_source_gets_its_own_delta_with_only_its_events(
    client, source, other_source, api_token, admin_user, cookie_for, redis_client
):
    cookie = cookie_for(admin_user)
    other_token = issue_api_token(other_source)

    async def scenario():
        communicator, hello = await open_socket(cookie)
        assert hello["sources"] == sorted([source.id, other_source.id])
        await sync_to_async(push)(client, source, api_token, "a-1", "a-2")
        await sync_to_async(push)(client, other_source, other_token, "b-1")
        frames = await deltas_until(communicator, 3)
        by_source = {}
        for frame in frames:
            by_source.setdefault(frame["source"], 0)
            by_source[frame["source"]] += sum(row["n"] for row in frame["counts"])
            assert {e["source"] for e in frame["events"]} == {frame["source"]}
        assert by_source == {source.id: 2, other_source.id: 1}

    run(scenario)


def test_several_batches_are_coalesced_and_none_is_lost(
    client, source, api_token, admin_user, cookie_for, redis_client
):
    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        for i in range(6):
            await sync_to_async(push)(client, source, api_token, f"c-{i}-1", f"c-{i}-2")
        frames = await deltas_until(communicator, 12)
        batches = [row["batch"] for frame in frames for row in frame["counts"]]
        assert len(batches) == len(set(batches)) == 6
        assert len(frames) <= 6

    run(scenario)


def test_a_closed_socket_leaves_its_groups(source, admin_user, cookie_for):
    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        assert tick.of_this_loop().watched[source.id] == 1
        await communicator.disconnect()
        assert source.id not in tick.of_this_loop().watched

    run(scenario)


def test_group_names_belong_to_this_process_and_its_source():
    name = groups.source_group(7)
    assert name.startswith("fluxo.live.") and name.endswith(".source.7")
    assert groups.PROCESS in name
    assert len(name) < 100


def test_the_tick_skips_a_malformed_announcement():
    assert tick._announcement(b"not json") == []
    assert tick._announcement(b'{"batch": "1", "counts": []}') == []
    assert tick._announcement(b'{"batch": 1, "counts": []}') == [{"batch": 1, "counts": []}]


def test_frames_hold_a_bounded_sample_and_say_so(source, api_token, client):
    push(client, source, api_token, *[f"s-{i}" for i in range(tick.SAMPLE + 5)])
    (batch_id,) = set(Event.objects.values_list("batch_id", flat=True))
    announcement = {
        "batch": batch_id,
        "received_at": "2026-04-20T18:43:56+00:00",
        "counts": [[source.id, "activity", "x", 1, tick.SAMPLE + 5]],
    }
    frames = tick.build_deltas([announcement], {source.id})
    frame = frames[source.id]
    assert len(frame["events"]) == tick.SAMPLE
    assert frame["sampled"] is True
    assert frame["events"][0]["id"] == max(Event.objects.values_list("id", flat=True))
    assert tick.build_deltas([announcement], {source.id + 1}) == {}


def test_the_tick_keeps_the_rollups_current_without_a_worker(client, source, api_token, admin_user, cookie_for):
    from dashboard.models import MinuteCount

    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        await sync_to_async(push)(client, source, api_token, "r-1", "r-2")
        await deltas_until(communicator, 2)
        for _ in range(200):
            total = await sync_to_async(lambda: sum(MinuteCount.objects.values_list("count", flat=True)))()
            if total == 2:
                break
            await asyncio.sleep(0.05)
        assert total == 2

    run(scenario)
