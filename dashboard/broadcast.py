"""The one module that hands frames to sockets (and the dashboard's one notice over Redis).

Each web process serves its own sockets (dashboard.tick), so a group lives in this process's memory:
a frame goes straight to the sockets that joined the group, serialised once per group and tick, with
no round trip through Redis. ``Groups`` is per event loop (a web process has one).
"""

import asyncio
import logging
import weakref

import orjson
import redis

from dashboard.groups import SOURCES_CHANGED_CHANNEL
from streams import announce

log = logging.getLogger(__name__)


class Groups:
    """Which of this process's sockets joined which group."""

    def __init__(self):
        self.members = {}  # group name -> {socket}

    def add(self, group, socket):
        self.members.setdefault(group, set()).add(socket)

    def discard(self, group, socket):
        found = self.members.get(group)
        if found is not None:
            found.discard(socket)
            if not found:
                del self.members[group]

    async def send_frames(self, frames):
        """Send ``{group name: frame}``: the frame's text to every socket of the group."""
        for group, frame in frames.items():
            sockets = list(self.members.get(group, ()))
            if sockets:
                text = orjson.dumps(frame).decode()
                for socket in sockets:
                    await socket.send_text(text)


_groups = weakref.WeakKeyDictionary()


def groups():
    """The groups of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _groups.get(loop)
    if found is None:
        found = _groups[loop] = Groups()
    return found


async def send_frames(frames):
    await groups().send_frames(frames)


def sources_changed():
    """Tell every process's tick that who sees which source may have changed (from sync code, after
    commit). Best effort: a notice lost is made up by each socket's periodic check."""
    try:
        announce.client().publish(SOURCES_CHANGED_CHANNEL, b"1")
    except (redis.RedisError, OSError) as exc:
        log.warning("could not announce a change of sources (%s)", exc.__class__.__name__)
