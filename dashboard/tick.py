"""The live tick: the send loop. Announced batches coalesced into at most one frame per group per tick.

The live path in two hops: an announcement arrives here (or the health clock strikes), a builder of
dashboard.payloads turns it into ``{group: frame}``, and dashboard.broadcast hands each frame to the
sockets of that group, all in this process.

One tick runs in each web process, for that process's own sockets (their groups live in its memory),
so however many web processes run, a socket gets each delta once. The first socket of a process
starts it; it needs no worker: it subscribes to the receivers' announcements
(streams.announce.BATCH_CHANNEL), to alert changes (alerts.announce.ALERT_CHANNEL) and to changes of
who sees which source (dashboard.signals). Every TICK seconds what arrived becomes one delta per
watched source and one frame per watched tail; every HEALTH_EVERY seconds the watched sources' Redis
counters that changed go out (inside that tick's delta, or as a ``live.health`` frame); alerts go
out at once. Beside sending, it keeps the rollups current (Upkeep), so history works with the web
process alone.

Announcements are best effort: one lost is missing from the live view until the next snapshot (a
reconnect, a range change); the rollups find its batch row anyway.
"""

import asyncio
import logging
import time
import weakref
from collections import Counter

import redis
import redis.asyncio
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from alerts.announce import ALERT_CHANNEL
from dashboard import broadcast, health, payloads, rollups
from dashboard.groups import SOURCES_CHANGED_CHANNEL
from streams.announce import BATCH_CHANNEL

log = logging.getLogger(__name__)

TICK = 0.25  # at most 4 messages a second per group
IDLE_WAKE = 1.0  # seconds between looks at the rollups while nothing arrives
RETRY_PAUSES = (0.5, 1, 2, 5, 10)
HEALTH_EVERY = 2.0  # seconds between looks at the watched sources' counters


class Upkeep:
    """The rollups, kept current: soon after batches arrive, and now and then regardless (a batch
    whose announcement was lost)."""

    AFTER_BATCHES = 2.0
    IDLE = 30.0

    def __init__(self):
        self._last = 0.0
        self._batches = False

    def batches_arrived(self):
        self._batches = True

    async def maybe_roll_up(self):
        since = time.monotonic() - self._last
        if since >= self.IDLE or (self._batches and since >= self.AFTER_BATCHES):
            self._last = time.monotonic()
            self._batches = False
            await database_sync_to_async(rollups.roll_up)()


class LiveTick:
    """The tick of one event loop: which sources its sockets watch, and the task that serves them."""

    def __init__(self):
        self.watched = Counter()  # source id -> overview sockets
        self.tails = Counter()  # (source id, filter key) -> tail sockets
        self.filters = {}  # filter key -> Filter
        self.subscribed = asyncio.Event()  # set while announcements are being received
        self.sockets = weakref.WeakSet()  # consumers to tell when who sees which source changed
        self.upkeep = Upkeep()
        self._task = None
        self._health_due = 0.0
        self._counters_sent = {}  # source id -> the counters last sent
        self._rechecks = set()

    # --- Who watches what (the consumers call these) ---------------------------------------------

    def join(self, source_ids):
        self.watched.update(source_ids)
        self._start()

    def join_tail(self, source_ids, tail_filter):
        self.filters[tail_filter.key()] = tail_filter
        self.tails.update((source_id, tail_filter.key()) for source_id in source_ids)
        self._start()

    def leave(self, source_ids):
        _subtract(self.watched, source_ids)

    def leave_tail(self, source_ids, tail_filter):
        key = tail_filter.key()
        _subtract(self.tails, [(source_id, key) for source_id in source_ids])
        if not any(k == key for _, k in self.tails):
            self.filters.pop(key, None)

    async def wait_until_subscribed(self, timeout):
        """True once announcements are being received; False if that takes longer (Redis is away)."""
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- The send loop -----------------------------------------------------------------------------

    def start(self):
        """Run the send loop (a socket that follows only alerts joins no source, but needs it)."""
        self._start()

    def _start(self):
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fluxo-live-tick")

    async def _run(self):
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._listen()
            except (redis.RedisError, OSError) as exc:
                log.warning("live tick: Redis %s; subscribing again", exc.__class__.__name__)
            except Exception:
                # Never let one bad tick end live updates for the whole process.
                log.exception("live tick failed; starting again")
            if time.monotonic() - started > 60:
                failures = 0
            await asyncio.sleep(RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)])
            failures += 1

    async def _listen(self):
        client = redis.asyncio.Redis.from_url(settings.FLUXO_REDIS_URL)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(BATCH_CHANNEL, SOURCES_CHANGED_CHANNEL, ALERT_CHANNEL)
            self.subscribed.set()
            await self._serve(pubsub)
        finally:
            self.subscribed.clear()
            await pubsub.aclose()
            await client.aclose()

    async def _serve(self, pubsub):
        """Flush as soon as something arrives, unless the last flush began less than TICK ago: then
        gather until it may (a lone batch goes out at once; a stream of them, 4 times a second)."""
        loop = asyncio.get_running_loop()
        pending, allowed_at = [], 0.0
        while True:
            wait = max(0.0, allowed_at - loop.time()) if pending else IDLE_WAKE
            message = await pubsub.get_message(timeout=wait)
            if message is not None:
                pending.extend(await self._heard(message))
            if pending and loop.time() >= allowed_at:
                allowed_at = loop.time() + TICK
                flushing, pending = pending, []
                await self._send(payloads.build_frames, flushing, set(self.watched), self._tails())
            elif not pending:
                await self._send(None)

    async def _heard(self, message):
        """The batch announcements in ``message``; alerts and source changes are handled at once."""
        channel = message["channel"]
        if channel == SOURCES_CHANGED_CHANNEL.encode():
            self._sources_changed()
        elif channel == ALERT_CHANNEL.encode():
            await broadcast.send_frames(payloads.alerts_frames(message["data"]))  # rare: sent at once
        else:
            self.upkeep.batches_arrived()
            return payloads.parse_announcement(message["data"])
        return []

    def _tails(self):
        return {(s, key): self.filters[key] for s, key in self.tails}

    async def _send(self, build, *args):
        """Send what ``build(*args)`` makes (nothing: only the health counters due), then the upkeep."""
        try:
            frames = await database_sync_to_async(build)(*args) if build else {}
            frames = await self._with_health(frames)
            if frames:
                await broadcast.send_frames(frames)
            await self.upkeep.maybe_roll_up()
        except DatabaseError as exc:
            # The database is away: these deltas are lost to the live view, not to history.
            log.warning("live tick: database %s; carrying on", exc.__class__.__name__)

    async def _with_health(self, frames):
        """``frames`` and, every HEALTH_EVERY seconds, the counters that changed since last sent."""
        if not self.watched or time.monotonic() < self._health_due:
            return frames
        self._health_due = time.monotonic() + HEALTH_EVERY
        found = await database_sync_to_async(health.counters_of)(list(self.watched))
        changed = payloads.changed_counters(found, self._counters_sent)
        self._counters_sent = found
        return payloads.with_counters(frames, changed)

    def _sources_changed(self):
        for socket in list(self.sockets):
            task = asyncio.get_running_loop().create_task(_quietly(socket.recheck()))
            self._rechecks.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._rechecks.discard)


async def _quietly(check):
    try:
        await check
    except Exception as exc:  # the socket's periodic check tries again
        log.warning("live tick: a socket could not check its sources (%s)", exc.__class__.__name__)


def _subtract(counter, keys):
    counter.subtract(keys)
    for key in [k for k, n in counter.items() if n <= 0]:
        del counter[key]


_ticks = weakref.WeakKeyDictionary()


def of_this_loop():
    """The tick of the running event loop (a web process has one loop, so one tick)."""
    loop = asyncio.get_running_loop()
    tick = _ticks.get(loop)
    if tick is None:
        tick = _ticks[loop] = LiveTick()
    return tick
