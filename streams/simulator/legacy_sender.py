"""The legacy Marketo activity push, with Marketo's documented rules (reference, section 1.1).

- Every 2 s per subscription, one batch of whatever has accumulated, at most 500 activities.
- A 20 s timeout. A failed batch is retried 3 times, 3 minutes apart; then the subscription is
  paused, and while paused a re-activation try is made every 3 minutes with the same batch. A
  success makes it active again. Nothing new is sent while a batch is failing.
- Activities wait in a bounded queue (Marketo keeps 7 days): what does not fit is dropped and
  counted, and so is what waited longer than 7 days.
- Authentication: an API token, or OAuth client credentials (a token fetched from the identity
  provider's token URL, renewed before it expires and after a 401).

Every delay is divided by the time scale; the request timeout is not.
"""

import base64
import collections
import json
import math
import urllib.parse
from dataclasses import dataclass

from streams.simulator import envelopes, transport

PUSH_INTERVAL = 2.0
RETRY_INTERVAL = 180.0
RETRIES = 3
RETENTION = 7 * 24 * 3600
TIMEOUT = 20.0
QUEUE_SIZE = 100_000
ACTIVE, RETRYING, PAUSED = "active", "retrying", "paused"
USER_AGENT = "Marketo-Activity-Stream/1.0 (Fluxo sandbox)"
TOKEN_MARGIN = 30.0  # renew a token this many seconds before it expires


@dataclass(frozen=True)
class LegacyOptions:
    url: str
    munchkin_id: str
    timeout: float = TIMEOUT
    time_scale: float = 1.0
    queue_size: int = QUEUE_SIZE


@dataclass
class PushBatch:
    activities: list  # (queued at, SimEvent)
    message_id: str
    created: str
    failures: int = 0


class LegacySender:
    def __init__(self, loop, stats, options, auth, client, ids, moment):
        self.loop = loop
        self.stats = stats
        self.options = options
        self.auth = auth
        self.client = client
        self.ids = ids
        self.moment = moment  # loop time -> datetime, for messageCreatedDate
        self.queue = collections.deque()
        self.batch = None
        self.in_flight = False
        self._tick_due = False
        self.interval = PUSH_INTERVAL / options.time_scale

    def offer(self, event):
        self.stats.generated += 1
        if len(self.queue) >= self.options.queue_size:
            self.stats.drop("queue_full")
            return
        self.queue.append((self.loop.now(), event))
        if not self._tick_due:
            self._tick_due = True
            self.loop.at(self._next_beat(), self._tick)

    def _next_beat(self):
        """Pushes happen on a fixed 2-second beat, whatever the moment activities arrive."""
        now = self.loop.now()
        beat = (math.floor(now / self.interval) + 1) * self.interval
        return beat if beat - now > self.interval * 1e-6 else beat + self.interval  # float rounding

    def _tick(self):
        self._expire()
        if self.stats.state == ACTIVE and self.batch is None and not self.in_flight and self.queue:
            self.batch = self._take_batch()
            self._attempt()
        if self.queue:
            self.loop.at(self._next_beat(), self._tick)
        else:
            self._tick_due = False

    def _oldest_allowed(self):
        return self.loop.now() - RETENTION / self.options.time_scale

    def _expire(self):
        oldest_allowed = self._oldest_allowed()
        while self.queue and self.queue[0][0] < oldest_allowed:
            self.queue.popleft()
            self.stats.drop("expired")

    def _take_batch(self):
        count = min(envelopes.MAX_LEGACY_BATCH, len(self.queue))
        activities = [self.queue.popleft() for _ in range(count)]
        self.stats.sent += count
        created = envelopes.iso_seconds(self.moment(self.loop.now()))
        return PushBatch(activities, self.ids.message_id(), created)

    def _attempt(self):
        batch, options = self.batch, self.options
        if batch.activities[0][0] < self._oldest_allowed():
            # Kept 7 days by Marketo, then gone.
            self.stats.drop("expired", len(batch.activities))
            self.batch = None
            self.stats.set_state(self.loop.now(), ACTIVE)
            return
        body = envelopes.legacy_body(
            options.munchkin_id, batch.message_id, batch.created, [e.legacy for _t, e in batch.activities]
        )
        now = self.loop.now()

        def work():
            return self._post(body, now)

        self.in_flight = True
        self.loop.spawn(work, self._answered)

    def _post(self, body, now):
        try:
            authorization = self.auth.authorization(now, self.client, self.options.timeout)
        except AuthFailed as exc:
            return transport.Answer(exc.status, error=str(exc))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Authorization": authorization}
        return self.client.post(self.options.url, body, headers, self.options.timeout)

    def _answered(self, answer):
        self.in_flight = False
        batch = self.batch
        self.stats.record(self.loop.now(), answer, len(batch.activities), batch.failures)
        if answer.ok:
            self.stats.acknowledged += len(batch.activities)
            self.stats.receiver_duplicates += _duplicates(answer.body)
            self.batch = None
            self.stats.set_state(self.loop.now(), ACTIVE)
            return
        if answer.status == 401:
            self.auth.rejected()
        batch.failures += 1
        self.stats.set_state(self.loop.now(), RETRYING if batch.failures <= RETRIES else PAUSED)
        self.loop.after(RETRY_INTERVAL / self.options.time_scale, self._attempt)


def _duplicates(body):
    try:
        answer = json.loads(body)
    except ValueError:
        return 0
    duplicates = answer.get("duplicates") if isinstance(answer, dict) else None
    return duplicates if isinstance(duplicates, int) else 0


# --- Authentication -----------------------------------------------------------------------------------


class AuthFailed(Exception):
    """No token could be had: the attempt fails (and is retried like any failed push)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ApiToken:
    def __init__(self, token):
        self._header = f"Bearer {token}"

    def authorization(self, now, client, timeout):
        return self._header

    def rejected(self):
        pass


class ClientCredentials:
    """OAuth 2 client credentials (RFC 6749, 4.4): a token from ``token_url``, renewed before expiry."""

    def __init__(self, token_url, client_id, client_secret):
        self.token_url = token_url
        self._basic = base64.b64encode(
            f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(client_secret, safe='')}".encode()
        ).decode()
        self._token = None
        self._expires_at = 0.0
        self.fetches = 0

    def authorization(self, now, client, timeout):
        if self._token is None or now >= self._expires_at - TOKEN_MARGIN:
            self._fetch(now, client, timeout)
        return f"Bearer {self._token}"

    def rejected(self):
        """A 401: the token may have been revoked; the next attempt fetches a new one."""
        self._token = None

    def _fetch(self, now, client, timeout):
        self.fetches += 1
        body = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
        headers = {
            "Authorization": f"Basic {self._basic}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        answer = client.post(self.token_url, body, headers, timeout)
        if not answer.ok:
            raise AuthFailed(answer.status, f"token endpoint: {answer.error or answer.status}")
        try:
            document = json.loads(answer.body)
            token, lifetime = document["access_token"], float(document.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthFailed(transport.NETWORK_ERROR, "token endpoint: no access_token in its answer") from exc
        self._token, self._expires_at = token, now + lifetime
