"""The live path's pieces without a socket: payload builders, and in-process delivery to groups."""

import asyncio

from dashboard import broadcast, groups, payloads


def test_only_the_counters_that_changed_go_out():
    sent = {1: {"accepted": 5}, 2: {"accepted": 1}}
    found = {1: {"accepted": 5}, 2: {"accepted": 2}, 3: {"accepted": 0}}
    assert payloads.changed_counters(found, sent) == {2: {"accepted": 2}, 3: {"accepted": 0}}


def test_an_alert_of_no_single_source_goes_to_the_unscoped_group():
    frames = payloads.alerts_frames(b'{"alerts": [{"id": 1, "source_id": null}, {"id": 2, "source_id": 4}]}')
    assert frames[groups.unscoped_alerts_group()]["alerts"] == [{"id": 1, "source_id": None}]
    assert frames[groups.source_group(4)]["alerts"] == [{"id": 2, "source_id": 4}]


class Socket:
    def __init__(self):
        self.texts = []

    async def send_text(self, text):
        self.texts.append(text)


def test_a_frame_reaches_the_sockets_of_its_group_once_and_no_other():
    async def scenario():
        one, other = Socket(), Socket()
        found = broadcast.groups()
        found.add(groups.source_group(1), one)
        found.add(groups.source_group(2), other)
        await broadcast.send_frames({groups.source_group(1): {"type": "live.health", "source": 1}})
        found.discard(groups.source_group(1), one)
        await broadcast.send_frames({groups.source_group(1): {"type": "live.health", "source": 1}})
        return one.texts, other.texts

    one, other = asyncio.run(scenario())
    assert one == ['{"type":"live.health","source":1}']
    assert other == []
