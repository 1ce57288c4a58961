"""The one module that sends to the channel layer.

A frame is serialised once per group and tick, then handed to every socket of the group as text.
"""

import orjson
from channels.layers import get_channel_layer

from dashboard.groups import FRAME


async def send_frames(frames):
    """Send ``{group name: frame}``: one message to each group."""
    layer = get_channel_layer()
    for group, frame in frames.items():
        await layer.group_send(group, {"type": FRAME, "text": orjson.dumps(frame).decode()})
