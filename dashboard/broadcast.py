"""The one module that sends to the channel layer (and the dashboard's one notice over Redis).

A frame is serialised once per group and tick, then handed to every socket of the group as text.
"""

import logging

import orjson
import redis
from channels.layers import get_channel_layer

from dashboard.groups import FRAME, SOURCES_CHANGED_CHANNEL
from streams import announce

log = logging.getLogger(__name__)


async def send_frames(frames):
    """Send ``{group name: frame}``: one message to each group."""
    layer = get_channel_layer()
    for group, frame in frames.items():
        await layer.group_send(group, {"type": FRAME, "text": orjson.dumps(frame).decode()})


def sources_changed():
    """Tell every process's tick that who sees which source may have changed (from sync code, after
    commit). Best effort: a notice lost is made up by each socket's periodic check."""
    try:
        announce.client().publish(SOURCES_CHANGED_CHANNEL, b"1")
    except (redis.RedisError, OSError) as exc:
        log.warning("could not announce a change of sources (%s)", exc.__class__.__name__)
