"""The traffic of one Marketo instance: what happens (activities, audit, notifications) and when.

Three random generators, each seeded apart, keep the promises of ``--seed`` and ``--reuse-ids``:

- content (what happens, to whom, in what order) comes from the seed alone;
- arrival times come from the seed and the rate options;
- ids (``eventid``, the activity's GUID, ``activityLogItemId``, push ``messageId``) come from fresh
  entropy on every run, so a second run is new data, unless ``reuse_ids`` derives them from the seed
  too, which makes a run an exact replay that Fluxo must de-duplicate.

Times are ``origin`` plus the arrival offset; ``origin`` is the run's start, or a fixed instant for a
replay (so that the replay is byte for byte the same events).
"""

import heapq
import itertools
import math
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from streams.simulator import envelopes
from streams.simulator.activities import ActivityMaker
from streams.simulator.audit import AuditMaker
from streams.simulator.audit import type_for as audit_type
from streams.simulator.notifications import PREFIX as NOTIFICATION_PREFIX
from streams.simulator.notifications import NotificationMaker
from streams.simulator.population import Population

ACTIVITY, AUDIT, NOTIFICATION = "activity", "audit", "notification"
STREAMS = (ACTIVITY, AUDIT, NOTIFICATION)
STREAM_WEIGHTS = {ACTIVITY: 90, AUDIT: 8, NOTIFICATION: 2}
REPLAY_ORIGIN = datetime(2026, 1, 1, tzinfo=UTC)
BURST_EVERY = 60.0  # mean seconds between bursts (with bursts on)
BURST_SECONDS = 5.0
BURST_FACTOR = 8.0


@dataclass
class SimEvent:
    """One generated event: what I/O sends, and for activities what the legacy push sends."""

    stream: str
    offset: float  # seconds after the run's origin
    eventid: str
    io: dict
    legacy: dict | None = None


class Ids:
    """Ids that a real Marketo would make fresh for every event."""

    def __init__(self, rng):
        self.rng = rng
        self._log_item = rng.randrange(10**9, 5 * 10**9)

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def log_item(self):
        self._log_item += self.rng.randrange(1, 40)
        return self._log_item

    def message_id(self):
        return str(self.rng.randrange(10**7, 10**8))


def daily_factor(hour):
    """Traffic through a day: about 0.2 at night, rising to about 1.8 in the afternoon (UTC)."""
    return 0.2 + 1.6 * math.exp(-((hour - 14.0) ** 2) / (2 * 3.5**2))


class Arrivals:
    """A Poisson process at ``rate`` events/s, shaped by the daily curve and bursts when asked."""

    def __init__(self, rng, rate, bursts=False, daily_curve=False, time_scale=1.0, origin=REPLAY_ORIGIN):
        self.rng = rng
        self.rate = rate
        self.bursts = bursts
        self.daily_curve = daily_curve
        self.time_scale = time_scale
        self.start_hour = origin.hour + origin.minute / 60 + origin.second / 3600
        self.t = 0.0
        start = self._next_burst(0.0)
        self._burst = (start, start + BURST_SECONDS)

    def next(self):
        self.t += self.rng.expovariate(self.rate_at(self.t))
        return self.t

    def rate_at(self, t):
        rate = self.rate
        if self.daily_curve:
            # The day passes time_scale times faster, like every other schedule of the simulator.
            rate *= daily_factor((self.start_hour + t * self.time_scale / 3600) % 24)
        if self.bursts:
            rate *= BURST_FACTOR if self._in_burst(t) else 1.0
        return rate

    def _in_burst(self, t):
        start, end = self._burst
        while t >= end:
            start = self._next_burst(end)
            end = start + BURST_SECONDS
        self._burst = (start, end)
        return start <= t

    def _next_burst(self, after):
        return after + self.rng.expovariate(1 / BURST_EVERY)


class Generator:
    """An endless, time-ordered sequence of SimEvents for one Munchkin ID."""

    def __init__(
        self,
        munchkin_id,
        seed,
        client_id="",
        streams=STREAMS,
        rate=10.0,
        origin=None,
        reuse_ids=False,
        bursts=False,
        daily_curve=False,
        time_scale=1.0,
        leads=300,
    ):
        self.munchkin_id = munchkin_id
        self.client_id = client_id
        self.origin = origin or (REPLAY_ORIGIN if reuse_ids else datetime.now(UTC).replace(microsecond=0))
        content = random.Random(f"{seed}:{munchkin_id}:content")
        id_seed = f"{seed}:{munchkin_id}:ids" if reuse_ids else secrets.randbits(128)
        self.ids = Ids(random.Random(id_seed))
        # Apart from the events' ids: how many pushes a run makes depends on timing, not on the seed.
        self.message_ids = Ids(random.Random(f"{id_seed}:messages"))
        self.rng = content
        self.population = Population(content, munchkin_id, leads)
        ims_org = f"{random.Random(munchkin_id).getrandbits(96):024X}@AdobeOrg"
        self.activities = ActivityMaker(self.population, content)
        self.audit = AuditMaker(self.population, content, ims_org)
        self.notifications = NotificationMaker(self.population, content, ims_org)
        self.arrivals = Arrivals(
            random.Random(f"{seed}:{munchkin_id}:arrivals"), rate, bursts, daily_curve, time_scale, self.origin
        )
        self._streams = [stream for stream in STREAMS if stream in streams]
        self._stream_weights = [STREAM_WEIGHTS[stream] for stream in self._streams]
        self._scheduled = []  # (offset, order, stream, source, data): the rest of a burst
        self._order = itertools.count()
        self._next_arrival = self.arrivals.next()

    def __iter__(self):
        return self

    def __next__(self):
        if self._scheduled and self._scheduled[0][0] <= self._next_arrival:
            offset, _order, stream, source, data = heapq.heappop(self._scheduled)
            return self._finish(stream, offset, source, data)
        offset, self._next_arrival = self._next_arrival, self.arrivals.next()
        return self._draw(offset)

    def take(self, count):
        return list(itertools.islice(self, count))

    def moment(self, offset):
        return self.origin + timedelta(seconds=offset)

    def _draw(self, offset):
        stream = self.rng.choices(self._streams, self._stream_weights)[0]
        if stream == ACTIVITY:
            activity = self.activities.make(envelopes.iso_seconds(self.moment(offset)))
            return self._activity_event(offset, activity)
        if stream == AUDIT:
            parts = self.audit.make()
        else:
            kind, data = self.notifications.make()
            parts = [(0.0, kind, data)]
        for delay, source, data in parts[1:]:
            heapq.heappush(self._scheduled, (offset + delay, next(self._order), stream, source, data))
        _delay, source, data = parts[0]
        return self._finish(stream, offset, source, data)

    def _finish(self, stream, offset, source, data):
        if stream == AUDIT:
            return self._audit_event(offset, source, data)
        return self._notification_event(offset, source, data)

    def _activity_event(self, offset, activity):
        date = envelopes.iso_seconds(self.moment(offset))
        eventid, guid, log_item = self.ids.uuid(), self.ids.uuid(), self.ids.log_item()
        io = envelopes.io_activity(eventid, guid, log_item, self.munchkin_id, date, activity, self.client_id)
        legacy = envelopes.legacy_activity(guid, log_item, date, activity)
        return SimEvent(ACTIVITY, offset, eventid, io, legacy)

    def _audit_event(self, offset, source, data):
        eventid = self.ids.uuid()
        time = envelopes.audit_time(self.moment(offset))
        event_type = audit_type(data["componentType"])
        io = envelopes.wrapped(eventid, event_type, source, time, "V2.0", data, self.client_id)
        return SimEvent(AUDIT, offset, eventid, io)

    def _notification_event(self, offset, kind, data):
        eventid = self.ids.uuid()
        time = envelopes.iso_seconds(self.moment(offset))
        io = envelopes.wrapped(eventid, NOTIFICATION_PREFIX + kind, "urn:mlm", time, "V1.0", data, self.client_id)
        return SimEvent(NOTIFICATION, offset, eventid, io)
