"""The live tick: announced batches coalesced into at most one delta per watched source per tick.

One tick runs in each web process, for that process's own sockets (their groups carry the process's
token, dashboard.groups), so however many web processes run, a socket gets each delta once. The first
socket of a process starts it; it needs no worker: it subscribes to the receivers' announcements
(streams.announce.BATCH_CHANNEL) itself, and every TICK seconds turns what arrived into one message per
watched source: counts per type (ids and names a person reads) and a bounded sample of the new rows.
It also keeps the rollups current (dashboard.rollups), so history works with the web process alone.

Announcements are best effort: one lost is missing from the live view until the next snapshot (a
reconnect, a range change); the rollups find its batch row anyway.

Alerts too: the alerts app announces every change of an alert (alerts.announce.ALERT_CHANNEL); the
tick forwards each as a ``live.alerts`` frame to the group of the alert's source, or, for an alert of
no single source, to the group of sockets whose users may see those (alerts_frames).

Stream health stays live too: a delta carries the lags of its batches' events, and every HEALTH_EVERY
seconds the tick reads the watched sources' Redis counters (accepted, duplicates, refusals, 503s: some
of them move without any batch) and sends those that changed, inside that tick's delta of the source
or, without one, as a ``live.health`` frame.
"""

import asyncio
import logging
import time
import weakref
from collections import Counter

import orjson
import redis
import redis.asyncio
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from alerts.announce import ALERT_CHANNEL
from dashboard import broadcast, feed, health, rollups, tail
from dashboard.groups import (
    ALERTS_FRAME,
    DELTA_FRAME,
    HEALTH_FRAME,
    SOURCES_CHANGED_CHANNEL,
    TAIL_FRAME,
    source_group,
    tail_group,
    unscoped_alerts_group,
)
from dashboard.labels import labels_for, type_key
from streams.announce import BATCH_CHANNEL

log = logging.getLogger(__name__)

TICK = 0.25  # at most 4 messages a second per group
IDLE_WAKE = 1.0  # seconds between looks at the rollups while nothing arrives
SAMPLE = 20
TAIL_SAMPLE = 50
ROLLUP_AFTER_BATCHES = 2.0  # seconds between rollups while batches arrive
ROLLUP_IDLE = 30.0  # and at least this often (a batch whose announcement was lost)
RETRY_PAUSES = (0.5, 1, 2, 5, 10)
HEALTH_EVERY = 2.0  # seconds between looks at the watched sources' counters


def build_frames(announcements, watched, tails):
    """{group name: frame} for one tick: the overview deltas of ``watched`` sources, and the frames
    of the lead-activity tails (``{(source_id, filter key): Filter}``) these announcements concern.
    """
    frames = {source_group(s): frame for s, frame in build_deltas(announcements, watched).items()}
    frames.update(build_tail_frames(announcements, tails))
    return frames


def build_deltas(announcements, watched):
    """{source_id: delta frame} for the watched sources that these announcements concern.

    A frame holds one count row per (batch, type), so a page can tell which of them a snapshot
    already held, and the newest SAMPLE events of those batches; ``sampled`` says there were more.
    """
    rows, batches = {}, {}
    for announcement in announcements:
        for source_id, stream, type_, type_id, n in announcement["counts"]:
            if source_id in watched:
                row = [announcement["batch"], announcement["received_at"], stream, type_, type_id, n]
                rows.setdefault(source_id, []).append(row)
                batches.setdefault(source_id, set()).add(announcement["batch"])
    labels = labels_for((r[2], r[3], r[4]) for found in rows.values() for r in found)
    return {source_id: _frame(source_id, found, batches[source_id], labels) for source_id, found in rows.items()}


def _frame(source_id, rows, batch_ids, labels):
    events = feed.of_batches(sorted(batch_ids), source_id, SAMPLE + 1)
    counts = []
    for batch_id, received_at, stream, type_, type_id, n in rows:
        key = type_key(stream, type_, type_id)
        counts.append(
            {"batch": batch_id, "at": received_at, "stream": stream, "key": key, "label": labels[key], "n": n}
        )
    return {
        "type": DELTA_FRAME,
        "source": source_id,
        "counts": counts,
        "events": events[:SAMPLE],
        "sampled": len(events) > SAMPLE,
        "last_event_at": max(row[1] for row in rows),
        "lags": health.lags_of_batches(sorted(batch_ids), source_id),
    }


def with_counters(frames, changed):
    """``frames`` with each source's changed counters (``{source id: counters}``) put in its delta,
    or in a health frame of its own when the tick has no delta for it."""
    for source_id, counters in changed.items():
        group = source_group(source_id)
        if group in frames:
            frames[group] = {**frames[group], "counters": counters}
        else:
            frames[group] = {"type": HEALTH_FRAME, "source": source_id, "counters": counters}
    return frames


def build_tail_frames(announcements, tails):
    """Per watched tail: the newest matching rows of the announced batches (filtered, then sampled)."""
    batches = {}
    for announcement in announcements:
        for source_id, stream, *_ in announcement["counts"]:
            batches.setdefault((source_id, stream), set()).add(announcement["batch"])
    frames = {}
    for (source_id, key), tail_filter in tails.items():
        found = batches.get((source_id, tail_filter.stream))
        if not found:
            continue
        events = tail.of_batches(sorted(found), source_id, tail_filter, TAIL_SAMPLE + 1)
        if events:
            frames[tail_group(source_id, key)] = {
                "type": TAIL_FRAME,
                "source": source_id,
                "events": events[:TAIL_SAMPLE],
                "sampled": len(events) > TAIL_SAMPLE,
            }
    return frames


def alerts_frames(data):
    """{group: live.alerts frame} for an alert announcement: each alert to its source's group."""
    try:
        alerts = orjson.loads(data)["alerts"]
    except (ValueError, KeyError, TypeError):
        log.warning("live tick: ignored a malformed alert announcement")
        return {}
    frames = {}
    for alert in alerts if isinstance(alerts, list) else ():
        source_id = alert.get("source_id") if isinstance(alert, dict) else None
        group = source_group(source_id) if isinstance(source_id, int) else unscoped_alerts_group()
        frames.setdefault(group, {"type": ALERTS_FRAME, "alerts": []})["alerts"].append(alert)
    return frames


class LiveTick:
    """The tick of one event loop: which sources its sockets watch, and the task that serves them."""

    def __init__(self):
        self.watched = Counter()  # source id -> overview sockets
        self.tails = Counter()  # (source id, filter key) -> tail sockets
        self.filters = {}  # filter key -> Filter
        self.subscribed = asyncio.Event()  # set while announcements are being received
        self._task = None
        self._last_rollup = 0.0
        self._batches_since_rollup = False
        self._health_due = 0.0
        self._counters_sent = {}  # source id -> the counters last sent
        self.sockets = weakref.WeakSet()  # consumers to tell when who sees which source changed
        self._rechecks = set()

    def join(self, source_ids):
        self.watched.update(source_ids)
        self._start()

    def join_tail(self, source_ids, tail_filter):
        self.filters[tail_filter.key()] = tail_filter
        self.tails.update((source_id, tail_filter.key()) for source_id in source_ids)
        self._start()

    def _start(self):
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fluxo-live-tick")

    async def wait_until_subscribed(self, timeout):
        """True once announcements are being received; False if that takes longer (Redis is away)."""
        try:
            await asyncio.wait_for(self.subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def leave(self, source_ids):
        _subtract(self.watched, source_ids)

    def leave_tail(self, source_ids, tail_filter):
        key = tail_filter.key()
        _subtract(self.tails, [(source_id, key) for source_id in source_ids])
        if not any(k == key for _, k in self.tails):
            self.filters.pop(key, None)

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
            if message is not None and message["channel"] == SOURCES_CHANGED_CHANNEL.encode():
                self._sources_changed()
            elif message is not None and message["channel"] == ALERT_CHANNEL.encode():
                await broadcast.send_frames(alerts_frames(message["data"]))  # rare: sent at once
            elif message is not None:
                pending.extend(_announcement(message["data"]))
            if pending and loop.time() >= allowed_at:
                allowed_at = loop.time() + TICK
                flushing, pending = pending, []
                await self._flush(flushing)
            elif not pending:
                await self._idle()

    async def _flush(self, announcements):
        try:
            self._batches_since_rollup = True
            tails = {(s, key): self.filters[key] for s, key in self.tails}
            frames = await database_sync_to_async(build_frames)(announcements, set(self.watched), tails)
            await broadcast.send_frames(await self._with_health(frames))
            await self._maybe_roll_up()
        except DatabaseError as exc:
            # The database is away: these deltas are lost to the live view, not to history.
            log.warning("live tick: database %s; carrying on", exc.__class__.__name__)

    def _sources_changed(self):
        for socket in list(self.sockets):
            task = asyncio.get_running_loop().create_task(_quietly(socket.recheck()))
            self._rechecks.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._rechecks.discard)

    async def _idle(self):
        try:
            frames = await self._with_health({})
            if frames:
                await broadcast.send_frames(frames)
            await self._maybe_roll_up()
        except DatabaseError as exc:
            log.warning("live tick: database %s while idle; carrying on", exc.__class__.__name__)

    async def _with_health(self, frames):
        """``frames`` and, every HEALTH_EVERY seconds, the counters that changed since last sent."""
        if not self.watched or time.monotonic() < self._health_due:
            return frames
        self._health_due = time.monotonic() + HEALTH_EVERY
        found = await database_sync_to_async(health.counters_of)(list(self.watched))
        changed = {s: c for s, c in found.items() if self._counters_sent.get(s) != c}
        self._counters_sent = found
        return with_counters(frames, changed)

    async def _maybe_roll_up(self):
        since = time.monotonic() - self._last_rollup
        if since >= ROLLUP_IDLE or (self._batches_since_rollup and since >= ROLLUP_AFTER_BATCHES):
            self._last_rollup = time.monotonic()
            self._batches_since_rollup = False
            await database_sync_to_async(rollups.roll_up)()


async def _quietly(check):
    try:
        await check
    except Exception as exc:  # the socket's periodic check tries again
        log.warning("live tick: a socket could not check its sources (%s)", exc.__class__.__name__)


def _subtract(counter, keys):
    counter.subtract(keys)
    for key in [k for k, n in counter.items() if n <= 0]:
        del counter[key]


def _announcement(data):
    """[the announced batch] or [] for a message that is not one (logged)."""
    try:
        found = orjson.loads(data)
        return [found] if isinstance(found["batch"], int) and isinstance(found["counts"], list) else []
    except (ValueError, KeyError, TypeError):
        log.warning("live tick: ignored a malformed batch announcement")
        return []


_ticks = weakref.WeakKeyDictionary()


def of_this_loop():
    """The tick of the running event loop (a web process has one loop, so one tick)."""
    loop = asyncio.get_running_loop()
    tick = _ticks.get(loop)
    if tick is None:
        tick = _ticks[loop] = LiveTick()
    return tick
