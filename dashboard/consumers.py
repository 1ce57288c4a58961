"""The live socket, for logged-in people and the sources they may see.

``/ws/live/?source=<id>|all`` follows the overview: ``live.delta``, ``live.health`` and ``live.alerts``
frames (dashboard.tick). ``/ws/live/?view=alerts&source=…`` follows only the alerts (``live.alerts``).
``/ws/live/?view=tail&source=…&type=…&lead=…&campaign=…`` tails lead activities
through a filter applied on the server: ``live.tail`` frames.

The session is authenticated in connect() (Channels' AuthMiddlewareStack put the user in the scope);
an anonymous socket, or one asking for a source its user may not see, is refused before it joins
any group. The first frame is ``live.hello`` ({"sources": [ids], "listening": bool}).

Who sees what can change while a socket is open (a source added, a viewer group changed): every
socket checks again, with the same rule as at connect, when such a change is announced
(dashboard.signals, heard by the process's tick) and every RECHECK seconds in case a notice was
lost. A socket watching "all" joins the groups of sources it may now see and leaves those it may no longer, then says
``live.sources`` ({"sources": [ids]}), on which a page re-syncs; one watching a single source it
may no longer see, or whose account was disabled, is closed.
"""

import asyncio
import contextlib
import re
from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model

from alerts.access import can_manage
from dashboard import broadcast, tail, tick
from dashboard.access import visible_sources
from dashboard.groups import HELLO, SOURCES_FRAME, alerts_group, source_group, tail_group, unscoped_alerts_group
from fluxo.metrics import WEBSOCKETS

REFUSED_BAD_REQUEST = 4400
REFUSED_ANONYMOUS = 4401
REFUSED_SOURCE = 4403
SUBSCRIBE_WAIT = 2.0
RECHECK = 60.0  # seconds between checks of a socket's sources without a notice
_SOURCE_ID = re.compile(r"[0-9]{1,18}")


class LiveConsumer(AsyncWebsocketConsumer):
    # Frames reach a socket from its own process's tick (dashboard.broadcast), never over the channel
    # layer: an alias no setting names keeps each socket from holding a blocking Redis receive open.
    channel_layer_alias = "fluxo-live-sockets-need-no-channel-layer"
    sources = ()
    tail_filter = None
    alerts_only = False
    asked = "all"
    unscoped_alerts = False
    _rechecking = None
    _hello_sent = False

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=REFUSED_ANONYMOUS)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        params = {name: values[-1] for name, values in query.items()}
        try:
            tail_filter = tail.parse(params) if params.get("view") == "tail" else None
            self.alerts_only = params.get("view") == "alerts"
        except tail.BadFilter:
            await self.close(code=REFUSED_BAD_REQUEST)
            return
        self.asked = params.get("source", "all")
        sources = await database_sync_to_async(authorised_sources)(user, self.asked)
        if sources is None:
            await self.close(code=REFUSED_SOURCE)
            return
        self.tail_filter, self._lock = tail_filter, asyncio.Lock()
        await self._join(sources)
        if tail_filter is None and await database_sync_to_async(sees_unscoped_alerts)(user):
            self.unscoped_alerts = True
            broadcast.groups().add(unscoped_alerts_group(), self)
        self._rechecking = asyncio.get_running_loop().create_task(self._recheck_every(RECHECK))
        tick.of_this_loop().sockets.add(self)
        WEBSOCKETS.inc()
        await self.accept()
        # Said once the tick listens, so a page that sees it misses no batch committed afterwards.
        listening = await tick.of_this_loop().wait_until_subscribed(SUBSCRIBE_WAIT)
        await self.send(text_data=orjson.dumps({"type": HELLO, "sources": sources, "listening": listening}).decode())
        self._hello_sent = True

    def _groups(self, sources):
        if self.alerts_only:
            return [alerts_group(s) for s in sources]
        if self.tail_filter is None:
            return [source_group(s) for s in sources]
        return [tail_group(s, self.tail_filter.key()) for s in sources]

    async def _join(self, added):
        for name in self._groups(added):
            broadcast.groups().add(name, self)
        self.sources = sorted({*self.sources, *added})
        live = tick.of_this_loop()
        if self.alerts_only:
            live.start()  # it forwards alerts; no source to watch for deltas
        elif self.tail_filter is None:
            live.join(added)
        else:
            live.join_tail(added, self.tail_filter)

    async def _leave(self, removed):
        for name in self._groups(removed):
            broadcast.groups().discard(name, self)
        self.sources = [s for s in self.sources if s not in set(removed)]
        live = tick.of_this_loop()
        if self.tail_filter is not None:
            live.leave_tail(removed, self.tail_filter)
        elif not self.alerts_only:
            live.leave(removed)

    async def disconnect(self, code):
        if self.unscoped_alerts:
            broadcast.groups().discard(unscoped_alerts_group(), self)
        if self._rechecking is not None:
            self._rechecking.cancel()
            self._rechecking = None
            tick.of_this_loop().sockets.discard(self)
            WEBSOCKETS.dec()
        if self.sources:
            await self._leave(list(self.sources))

    async def receive(self, text_data=None, bytes_data=None):
        """Nothing is expected from the browser; what it sends is ignored."""

    async def send_text(self, text):
        """A frame from dashboard.broadcast, already serialised. Frames before the hello are dropped: the
        socket may not be accepted yet, and the page's snapshot, taken on the hello, holds what they said."""
        if self._hello_sent:
            await self.send(text_data=text)

    async def _recheck_every(self, seconds):
        while True:
            await asyncio.sleep(seconds)
            with contextlib.suppress(Exception):  # a failed check (database away) waits for the next
                await self.recheck()

    async def recheck(self):
        """Check again which of the sources asked for the user may see; follow, or close when none."""
        async with self._lock:
            if self._rechecking is None:
                return  # disconnected meanwhile
            sources = await database_sync_to_async(_sources_now)(self.scope["user"], self.asked)
            if sources is None:
                await self._leave(list(self.sources))  # at once: nothing more reaches it meanwhile
                await self.close(code=REFUSED_SOURCE)
                return
            added = [s for s in sources if s not in self.sources]
            removed = [s for s in self.sources if s not in sources]
            if removed:
                await self._leave(removed)
            if added:
                await self._join(added)
            if added or removed:
                await self.send(text_data=orjson.dumps({"type": SOURCES_FRAME, "sources": self.sources}).decode())


def sees_unscoped_alerts(user):
    """Alerts of no single source (events from several) go to superusers and alert managers only."""
    return user.is_superuser or can_manage(user)


def authorised_sources(user, asked):
    """The ids of the sources ``asked`` names ("all", or one id) that ``user`` may see; None: refused."""
    visible = visible_sources(user)
    if asked in ("", "all"):
        return sorted(visible.values_list("id", flat=True))
    if not _SOURCE_ID.fullmatch(asked) or not visible.filter(id=int(asked)).exists():
        return None
    return [int(asked)]


def _sources_now(user, asked):
    """authorised_sources for the user as the database has them now (disabled, or no longer there: None)."""
    current = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    return None if current is None else authorised_sources(current, asked)
