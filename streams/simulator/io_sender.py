"""Adobe I/O Events webhook delivery, with Adobe's documented rules (reference, sections 3.3 to 3.5).

- Batches of at most 20 events and 2 MB (or one event per request in single mode), signed twice.
- Headers: ``x-adobe-event-id`` stays the same on every attempt of a delivery (on a batch Adobe does
  not document its value: the first event's id is used, and no receiver should rely on it),
  ``x-adobe-retry-count`` from the first retry on, a new ``x-adobe-delivery-id`` per attempt.
- A 10 s timeout for the whole attempt. Retried: 429 and 5xx except 505, and attempts with no answer;
  after 1, 2, 4, 8, then every 15 minutes, for up to 24 hours, then dropped. Any other status drops
  the events at once.
- The registration's state: Unstable once, in the last 24 hours, at least 10 attempts were made and
  at least 80 % of them failed; checked again 24 hours later, it becomes Disabled if that still holds
  (new events are then not delivered, only journaled: dropped here; scheduled retries still fire),
  else Active.

Every delay is divided by the time scale; the request timeout is not.
"""

import collections
import uuid
from dataclasses import dataclass

import orjson

from streams.simulator import envelopes, keys, transport

RETRY_DELAYS = (60, 120, 240, 480)
MAX_RETRY_DELAY = 900
RETRY_WINDOW = 24 * 3600
TIMEOUT = 10.0
LINGER = 0.2  # seconds a partial batch waits for company (real seconds: not one of Adobe's schedules)
ACTIVE, UNSTABLE, DISABLED = "active", "unstable", "disabled"
STATE_WINDOW = 24 * 3600
STATE_MIN_ATTEMPTS = 10
STATE_FAILING_SHARE = 0.8
USER_AGENT = "Adobe/1.0"


def retry_delay(failures):
    """Seconds from the ``failures``-th failed attempt to the next: 60, 120, 240, 480, then 900."""
    return RETRY_DELAYS[failures - 1] if failures <= len(RETRY_DELAYS) else MAX_RETRY_DELAY


def is_retryable(status):
    if status in (transport.NETWORK_ERROR, transport.TIMED_OUT):
        return True
    return status == 429 or (500 <= status <= 599 and status != 505)


class Registration:
    """An I/O Events registration's state, following the failed share of its recent attempts."""

    def __init__(self, time_scale=1.0):
        self.window = STATE_WINDOW / time_scale
        self.state = ACTIVE
        self.unstable_since = None
        self._attempts = collections.deque()  # (time, succeeded)

    def record(self, now, succeeded):
        self._attempts.append((now, succeeded))
        return self.check(now)

    def check(self, now):
        while self._attempts and self._attempts[0][0] <= now - self.window:
            self._attempts.popleft()
        if self.state == ACTIVE and self._failing():
            self.state, self.unstable_since = UNSTABLE, now
        elif self.state == UNSTABLE and now - self.unstable_since >= self.window:
            # Adobe waits at least 24 hours before looking again.
            self.state = DISABLED if self._failing() else ACTIVE
        return self.state

    def _failing(self):
        """At least 10 attempts, fewer than a fifth of them successful.

        Adobe's two rules meet at exactly 20 % (Active: "at least 20 % successful"; Disabled: "80 %
        unsuccessful"): the boundary is taken as Active.
        """
        failed = sum(1 for _time, succeeded in self._attempts if not succeeded)
        return len(self._attempts) >= STATE_MIN_ATTEMPTS and failed > STATE_FAILING_SHARE * len(self._attempts)


@dataclass
class Delivery:
    events: list  # SimEvents
    body: bytes
    first_attempt_at: float = 0.0
    failures: int = 0


@dataclass(frozen=True)
class IoOptions:
    url: str
    single: bool = False
    forged: bool = False
    timeout: float = TIMEOUT
    time_scale: float = 1.0
    concurrency: int = 4
    provider: str = ""
    outage: tuple | None = None  # (from, until) in loop seconds: Fluxo "down", every attempt fails unsent


class IoSender:
    """One registration's deliveries to one webhook URL (one stream of one Munchkin ID)."""

    def __init__(self, loop, stats, options, keyring, client):
        self.loop = loop
        self.stats = stats
        self.options = options
        self.keyring = keyring
        self.client = client
        self.registration = Registration(options.time_scale)
        self.pending = collections.deque()  # (SimEvent, encoded bytes)
        self.in_flight = 0
        self._flush_due = False
        self.journal = None  # streams.simulator.adobe.Journal: every event offered, delivered or not
        self._re_enable_requested = False

    def offer(self, event):
        self.stats.generated += 1
        if self.journal is not None:
            self.journal.append(event.io)  # Adobe journals it whatever becomes of the webhook delivery
        if self._re_enable_requested:
            self._re_enable()
        if self.registration.state == DISABLED:
            self.stats.drop("disabled")  # Adobe only journals it: the webhook never sees it
            return
        self.pending.append((event, orjson.dumps(event.io)))
        if len(self.pending) >= envelopes.MAX_IO_BATCH_EVENTS:
            self._pump()
        elif not self._flush_due:
            self._flush_due = True
            self.loop.after(LINGER, self._flush)

    def _flush(self):
        self._flush_due = False
        self._pump()

    def _pump(self):
        while self.pending and self.in_flight < self.options.concurrency:
            batch = envelopes.take_io_batch(self.pending, self.options.single)
            events = [event for event, _encoded in batch]
            body = envelopes.io_body([encoded for _event, encoded in batch], self.options.single)
            delivery = Delivery(events, body, first_attempt_at=self.loop.now())
            self.stats.sent += len(events)
            self.in_flight += 1
            self._attempt(delivery)

    def _attempt(self, delivery):
        outage = self.options.outage
        if outage and outage[0] <= self.loop.now() < outage[1]:
            # The drill's outage: as if Fluxo (or its network) were down; answered on the loop, not sent.
            failed = transport.Answer(transport.NETWORK_ERROR, error="simulated outage")
            self.loop.after(0, lambda: self._answered(delivery, failed))
            return
        headers = self._headers(delivery)
        body, url, timeout, forged = delivery.body, self.options.url, self.options.timeout, self.options.forged

        def work():
            signed = {**headers, **keys.signature_headers(body, self.keyring, forged)}
            return self.client.post(url, body, signed, timeout)

        self.loop.spawn(work, lambda answer: self._answered(delivery, answer))

    def _headers(self, delivery):
        first = delivery.events[0]
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept-Encoding": "deflate,compress,identity",
            "User-Agent": USER_AGENT,
            "x-adobe-delivery-id": str(uuid.uuid4()),
            "x-adobe-event-code": _event_type(first.io),
            "x-adobe-event-id": first.eventid,
            "x-adobe-provider": self.options.provider,
            "x-request-id": str(uuid.uuid4()),
        }
        if delivery.failures:
            headers["x-adobe-retry-count"] = str(delivery.failures)
        return headers

    def _answered(self, delivery, answer):
        now, first = self.loop.now(), delivery.failures == 0
        self.stats.record(now, answer, len(delivery.events), delivery.failures)
        self._update_state(self.registration.record(now, answer.ok))
        if answer.ok:
            self.stats.acknowledged += len(delivery.events)
            self.stats.receiver_duplicates += _duplicates(answer.body)
        elif is_retryable(answer.status):
            self._retry_or_drop(delivery, now)
        else:
            self.stats.drop("not_retryable", len(delivery.events))
        if first:
            # Only first attempts count against the concurrency: a delivery waiting for its retry
            # does not hold back new ones (each event has its own retry lifecycle).
            self.in_flight -= 1
            self._pump()

    def _retry_or_drop(self, delivery, now):
        delivery.failures += 1
        scale = self.options.time_scale
        due = now + retry_delay(delivery.failures) / scale
        if due > delivery.first_attempt_at + RETRY_WINDOW / scale:
            self.stats.drop("retry_window", len(delivery.events))  # Adobe gives up after 24 hours
            return
        self.loop.at(due, lambda: self._attempt(delivery))

    def re_enable(self):
        """Re-enabled in the Developer Console (from the Adobe server's thread): applied at the next offer."""
        self._re_enable_requested = True

    def _re_enable(self):
        self._re_enable_requested = False
        self.registration = Registration(self.options.time_scale)
        self.stats.set_state(self.loop.now(), ACTIVE)

    def _update_state(self, state):
        if state == UNSTABLE and self.stats.state != UNSTABLE:
            # Adobe looks again 24 hours after marking a registration unstable.
            check_at = self.registration.unstable_since + self.registration.window
            self.loop.at(check_at, lambda: self._update_state(self.registration.check(self.loop.now())))
        self.stats.set_state(self.loop.now(), state)
        if state == DISABLED and self.pending:
            self.stats.drop("disabled", len(self.pending))
            self.pending.clear()


def _event_type(element):
    inner = element.get("event", {}).get("body", element)
    return inner.get("type", "")


def _duplicates(body):
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    duplicates = answer.get("duplicates") if isinstance(answer, dict) else None
    return duplicates if isinstance(duplicates, int) else 0
