"""The live socket, for logged-in people and the sources they may see.

``/ws/live/?source=<id>|all`` follows the overview: ``live.delta`` frames (dashboard.tick).
``/ws/live/?view=tail&source=…&type=…&lead=…&campaign=…`` tails lead activities through a filter
applied on the server: ``live.tail`` frames.

The session is authenticated in connect() (Channels' AuthMiddlewareStack put the user in the scope);
an anonymous socket, or one asking for a source its user may not see, is refused before it joins
any group. The first frame is ``live.hello`` ({"sources": [ids], "listening": bool}).
"""

import re
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from dashboard import tail, tick
from dashboard.access import visible_sources
from dashboard.groups import HELLO, source_group, tail_group

REFUSED_BAD_REQUEST = 4400
REFUSED_ANONYMOUS = 4401
REFUSED_SOURCE = 4403
SUBSCRIBE_WAIT = 2.0
_SOURCE_ID = re.compile(r"[0-9]{1,18}")


class LiveConsumer(AsyncWebsocketConsumer):
    sources = ()
    groups_joined = ()
    tail_filter = None

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=REFUSED_ANONYMOUS)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        params = {name: values[-1] for name, values in query.items()}
        try:
            tail_filter = tail.parse(params) if params.get("view") == "tail" else None
        except tail.BadFilter:
            await self.close(code=REFUSED_BAD_REQUEST)
            return
        sources = await database_sync_to_async(authorised_sources)(user, params.get("source", "all"))
        if sources is None:
            await self.close(code=REFUSED_SOURCE)
            return
        await self._join(sources, tail_filter)
        await self.accept()
        # Said once the tick listens, so a page that sees it misses no batch committed afterwards.
        listening = await tick.of_this_loop().wait_until_subscribed(SUBSCRIBE_WAIT)
        await self.send(text_data=orjson.dumps({"type": HELLO, "sources": sources, "listening": listening}).decode())

    async def _join(self, sources, tail_filter):
        if tail_filter is None:
            names = [source_group(s) for s in sources]
        else:
            names = [tail_group(s, tail_filter.key()) for s in sources]
        for name in names:
            await self.channel_layer.group_add(name, self.channel_name)
        self.sources, self.groups_joined, self.tail_filter = sources, names, tail_filter
        live = tick.of_this_loop()
        if tail_filter is None:
            live.join(sources)
        else:
            live.join_tail(sources, tail_filter)

    async def disconnect(self, code):
        for name in self.groups_joined:
            await self.channel_layer.group_discard(name, self.channel_name)
        if self.groups_joined:
            live = tick.of_this_loop()
            if self.tail_filter is None:
                live.leave(self.sources)
            else:
                live.leave_tail(self.sources, self.tail_filter)
        self.sources, self.groups_joined = (), ()

    async def receive(self, text_data=None, bytes_data=None):
        """Nothing is expected from the browser; what it sends is ignored."""

    async def dashboard_frame(self, message):
        await self.send(text_data=message["text"])


def authorised_sources(user, asked):
    """The ids of the sources ``asked`` names ("all", or one id) that ``user`` may see; None: refused."""
    visible = visible_sources(user)
    if asked in ("", "all"):
        return sorted(visible.values_list("id", flat=True))
    if not _SOURCE_ID.fullmatch(asked) or not visible.filter(id=int(asked)).exists():
        return None
    return [int(asked)]
