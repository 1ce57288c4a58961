"""The live socket through the real ASGI application and the real Redis channel layer.

Events are posted to the real receivers; the process's tick hears the batch announcement over Redis
and sends one delta per watched source.
"""

import asyncio

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from dashboard import consumers, groups, payloads, tick
from fluxo.asgi import application
from streams.auth import issue_api_token
from streams.models import Event, Source
from tests.ingest import april_activity, legacy_post, legacy_push

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_WAIT = 10  # seconds; only a bound on a failure, never a measured time


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


def visits(*guids):
    """Lead 42's April visits, one per marketoGUID, each to a page of its own."""
    return [april_activity(1, lead=42, primary=f"page {g}", marketoGUID=g) for g in guids]


async def deltas_until(communicator, events):
    """Delta frames received until their counts add up to ``events`` (health frames between are skipped)."""
    frames, seen = [], 0
    while seen < events:
        frame = await receive(communicator)
        if frame["type"] == "live.health":
            continue
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
        await sync_to_async(legacy_push)(client, source, api_token, visits("g-1", "g-2", "g-3"))
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
        await sync_to_async(legacy_push)(client, source, api_token, visits("g-1"))
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
        await sync_to_async(legacy_push)(client, source, api_token, visits("a-1", "a-2"))
        await sync_to_async(legacy_push)(client, other_source, other_token, visits("b-1"))
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
            await sync_to_async(legacy_push)(client, source, api_token, visits(f"c-{i}-1", f"c-{i}-2"))
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
    assert payloads.parse_announcement(b"not json") == []
    assert payloads.parse_announcement(b'{"batch": "1", "counts": []}') == []
    assert payloads.parse_announcement(b'{"batch": 1, "counts": []}') == [{"batch": 1, "counts": []}]


def test_frames_hold_a_bounded_sample_and_say_so(source, api_token, client):
    legacy_push(client, source, api_token, visits(*[f"s-{i}" for i in range(payloads.SAMPLE + 5)]))
    (batch_id,) = set(Event.objects.values_list("batch_id", flat=True))
    announcement = {
        "batch": batch_id,
        "received_at": "2026-04-20T18:43:56+00:00",
        "counts": [[source.id, "activity", "x", 1, payloads.SAMPLE + 5]],
    }
    frames = payloads.build_deltas([announcement], {source.id})
    frame = frames[source.id]
    assert len(frame["events"]) == payloads.SAMPLE
    assert frame["sampled"] is True
    assert frame["events"][0]["id"] == max(Event.objects.values_list("id", flat=True))
    assert payloads.build_deltas([announcement], {source.id + 1}) == {}


def test_the_tick_keeps_the_rollups_current_without_a_worker(client, source, api_token, admin_user, cookie_for):
    from dashboard.models import MinuteCount

    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        await sync_to_async(legacy_push)(client, source, api_token, visits("r-1", "r-2"))
        await deltas_until(communicator, 2)
        for _ in range(200):
            total = await sync_to_async(lambda: sum(MinuteCount.objects.values_list("count", flat=True)))()
            if total == 2:
                break
            await asyncio.sleep(0.05)
        assert total == 2

    run(scenario)


# --- Health follows the deltas -----------------------------------------------------------------------------


async def frame_where(communicator, matches):
    """The first frame for which ``matches`` is true (others are skipped)."""
    while True:
        frame = await receive(communicator)
        if matches(frame):
            return frame


def test_a_delta_carries_its_events_lags_and_changed_counters_follow(
    client, source, api_token, teammate, cookie_for, redis_client
):
    cookie = cookie_for(teammate)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        await sync_to_async(legacy_push)(client, source, api_token, visits("h-1", "h-2"))
        # The counters come in the delta when the tick's look at them saw the batch, else in a health
        # frame before or after it (a look that ran between the commit and the announcement): any order.
        delta, counters = None, {}
        while delta is None or counters.get("accepted") != 2:
            frame = await receive(communicator)
            counters = frame.get("counters") or counters
            if frame["type"] == "live.delta":
                assert sum(row["n"] for row in frame["counts"]) == 2
                delta = frame
        (batch_id,) = {row["batch"] for row in delta["counts"]}
        assert [lag[0] for lag in delta["lags"]] == [batch_id, batch_id]
        assert all(lag[2] > 0 for lag in delta["lags"])  # received now, occurred in April 2026
        assert counters["duplicates"] == 0
        # A refused request stores no batch: its count still comes, in a health frame of its own.
        await sync_to_async(legacy_post)(client, source, "wrong", b"{}")
        frame = await frame_where(communicator, lambda f: f["type"] == "live.health")
        assert frame["source"] == source.id
        assert frame["counters"]["rejected"]["auth"] == 1
        assert frame["counters"]["accepted"] == 2
        await communicator.disconnect()

    run(scenario)


def test_counters_that_changed_go_in_the_tick_s_delta_or_a_frame_of_their_own():
    counters = {"accepted": 3, "duplicates": 0, "rejected": {}, "unavailable": 0}
    delta = {"type": "live.delta", "source": 1, "counts": []}
    frames = payloads.with_counters({groups.source_group(1): delta}, {1: counters, 2: counters})
    assert frames[groups.source_group(1)] == {**delta, "counters": counters}
    assert frames[groups.source_group(2)] == {"type": "live.health", "source": 2, "counters": counters}
    assert payloads.with_counters({}, {}) == {}


# --- Who sees what, while a socket is open -----------------------------------------------------------------


def test_a_socket_watching_all_follows_a_source_added_after_it_connected(
    client, source, admin_user, cookie_for, redis_client
):
    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, hello = await open_socket(cookie)
        assert hello["sources"] == [source.id]
        added = await sync_to_async(Source.objects.create)(name="Acme APAC", munchkin_id="555-AAA-555")
        changed = await frame_where(communicator, lambda f: f["type"] == "live.sources")
        assert changed["sources"] == sorted([source.id, added.id])
        token = await sync_to_async(issue_api_token)(added)
        await sync_to_async(legacy_push)(client, added, token, visits("n-1"))
        (frame,) = await deltas_until(communicator, 1)
        assert frame["source"] == added.id
        await communicator.disconnect()
        assert added.id not in tick.of_this_loop().watched

    run(scenario)


def test_sharing_and_unsharing_a_source_is_followed_and_a_stranger_still_gets_nothing(
    client, source, other_source, api_token, teammate, stranger, cookie_for, redis_client
):
    teammate_cookie, stranger_cookie = cookie_for(teammate), cookie_for(stranger)
    group = teammate.groups.get()

    async def scenario():
        watching, hello = await open_socket(teammate_cookie)
        snooping, _ = await open_socket(stranger_cookie)
        assert hello["sources"] == [source.id]
        await sync_to_async(other_source.viewer_groups.add)(group)
        changed = await frame_where(watching, lambda f: f["type"] == "live.sources")
        assert changed["sources"] == sorted([source.id, other_source.id])
        await sync_to_async(source.viewer_groups.remove)(group)
        changed = await frame_where(watching, lambda f: f["type"] == "live.sources")
        assert changed["sources"] == [other_source.id]
        await sync_to_async(legacy_push)(client, source, api_token, visits("u-1"))
        other_token = await sync_to_async(issue_api_token)(other_source)
        await sync_to_async(legacy_push)(client, other_source, other_token, visits("u-2"))
        (frame,) = await deltas_until(watching, 1)
        assert frame["source"] == other_source.id  # nothing of the source no longer shared
        assert await snooping.receive_nothing(timeout=0.5)
        await watching.disconnect()
        await snooping.disconnect()

    run(scenario)


def test_a_socket_on_a_source_no_longer_shared_is_closed(source, teammate, cookie_for, redis_client):
    cookie = cookie_for(teammate)

    async def scenario():
        communicator, _ = await open_socket(cookie, f"source={source.id}")
        await sync_to_async(source.viewer_groups.clear)()
        output = await communicator.receive_output(timeout=FRAME_WAIT)
        while output["type"] == "websocket.send":  # a frame sent before the change
            output = await communicator.receive_output(timeout=FRAME_WAIT)
        assert output == {"type": "websocket.close", "code": consumers.REFUSED_SOURCE}
        assert source.id not in tick.of_this_loop().watched
        await communicator.disconnect()

    run(scenario)


def test_without_a_notice_the_periodic_check_finds_a_new_source(
    client, source, admin_user, cookie_for, redis_client, monkeypatch
):
    monkeypatch.setattr(consumers, "RECHECK", 0.2)
    cookie = cookie_for(admin_user)

    async def scenario():
        communicator, _ = await open_socket(cookie)
        # bulk_create sends no signal: no notice goes out.
        (added,) = await sync_to_async(Source.objects.bulk_create)([Source(name="Quiet", munchkin_id="444-QQQ-444")])
        added = await sync_to_async(Source.objects.get)(name="Quiet")
        changed = await frame_where(communicator, lambda f: f["type"] == "live.sources")
        assert added.id in changed["sources"]
        await communicator.disconnect()

    run(scenario)
