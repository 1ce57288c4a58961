"""After-commit side effects of ingest, all over Redis and all best effort.

- The batch announcement: consumers (the live tick, the alert evaluator) subscribe to
  ``BATCH_CHANNEL``; a lost announcement is found again by their periodic catch-up over batch rows.
- Per-source counters and the last refused requests, kept in Redis so that they are still counted
  while the database is down (503s included).

A Redis failure here is logged and swallowed: never a 500, and never a slow request (a short
timeout, then a pause before the next try).
"""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import orjson
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from fluxo import logs, metrics
from streams.groupcommit import Combiner

log = logging.getLogger(__name__)

BATCH_CHANNEL = "fluxo:batches"
REJECTION_REASONS = ("auth", "signature", "malformed", "too_large")
_TIMEOUT = 0.1
_PAUSE_AFTER_FAILURE = 5.0
# The last refused requests of a source, with their redacted headers and body excerpts (streams.refused):
# at most this many, for at most this long. A list per source, LTRIMmed on every push: one round trip
# whatever a sender floods us with, and bounded memory (20 entries of at most about 50 KB per source); never a database
# write an unauthenticated sender could cause. The key expires a day after its last push, each entry is
# hidden once a day old, and the beat's prune_refused_requests drops those.
KEEP_REJECTIONS = 20
REJECTIONS_TTL = timedelta(hours=24)

_client = None
_client_lock = threading.Lock()
_paused_until = 0.0


def client():
    """The process's Redis client for announcements and counters (thread-safe, short timeouts)."""
    global _client
    with _client_lock:
        if _client is None:
            # No retries: redis-py's default backoff would turn a 0.1 s timeout into seconds.
            _client = redis.Redis.from_url(
                settings.FLUXO_REDIS_URL,
                socket_timeout=_TIMEOUT,
                socket_connect_timeout=_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
        return _client


def counters_key(source_id):
    return f"fluxo:counters:{source_id}"


def rejections_key(source_id):
    return f"fluxo:rejections:{source_id}"


def _run(what, build):
    """Send one pipeline, unless Redis failed moments ago; swallow and log any failure."""
    global _paused_until
    if time.monotonic() < _paused_until:
        return
    try:
        pipe = client().pipeline(transaction=False)
        build(pipe)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        _paused_until = time.monotonic() + _PAUSE_AFTER_FAILURE
        log.warning("could not %s over Redis (%s); carrying on without it", what, exc.__class__.__name__)


def batch_committed(stored, received_at, duplicates_by_source, foreign_by_source=None, protocol="unknown"):
    """Announce a committed batch; count what each source accepted, saw twice, and got for a
    Munchkin ID it does not deliver for (stored with it, flagged munchkin_foreign); in Redis for the
    dashboards, and in this process for /metrics."""
    metrics.events_committed(stored.counts, duplicates_by_source, protocol)
    message = None
    if stored.batch_id is not None:
        message = orjson.dumps(
            {"batch": stored.batch_id, "received_at": received_at.isoformat(), "counts": stored.counts}
        )
    accepted = {}
    for source_id, _stream, _type, _type_id, n in stored.counts:
        accepted[source_id] = accepted.get(source_id, 0) + n
    logs.note(source=next(iter(accepted | duplicates_by_source), None))

    def build(pipe):
        if message is not None:
            pipe.publish(BATCH_CHANNEL, message)
        for source_id, n in accepted.items():
            pipe.hincrby(counters_key(source_id), "accepted", n)
            pipe.hset(counters_key(source_id), "last_event_at", received_at.isoformat())
        for source_id, n in duplicates_by_source.items():
            if n:
                pipe.hincrby(counters_key(source_id), "duplicates", n)
        for source_id, n in (foreign_by_source or {}).items():
            pipe.hincrby(counters_key(source_id), "foreign", n)

    _announcements.submit(build, 1)


def _announce_alone(build):
    _run("announce a batch", build)


def _announce_together(builds):
    """The announcements of a process's concurrent requests in one pipeline: a group commit's
    requests return at once, and one pipeline of eight cost about a third of the CPU of eight
    pipelines of one each (streams.groupcommit, as for the statement)."""
    _run("announce a batch", lambda pipe: [build(pipe) for build in builds])
    return [None] * len(builds)


# _run never raises (a failure is logged and paused on): run_one is only the combiner's fallback.
_announcements = Combiner(_announce_together, _announce_alone, max_jobs=32, max_size=32)


def request_refused(source_id, reason, status, detail, now, request=None):
    """Count a refused request (auth, signature, malformed, too_large) and keep it for the setup page,
    with ``request``, what streams.refused.describe() kept of it (redacted, bounded), when given."""
    entry = {"at": now.isoformat(), "ts": now.timestamp(), "reason": reason, "status": status, "detail": detail}
    entry = orjson.dumps({**(request or {}), **entry})
    logs.note(source=source_id)

    def build(pipe):
        pipe.hincrby(counters_key(source_id), f"rejected_{reason}", 1)
        pipe.lpush(rejections_key(source_id), entry)
        pipe.ltrim(rejections_key(source_id), 0, KEEP_REJECTIONS - 1)
        pipe.expire(rejections_key(source_id), int(REJECTIONS_TTL.total_seconds()))
        _count_hourly(pipe, f"source:{source_id}", "refused", now)

    _run("count a refused request", build)


UNAVAILABLE_KEY = "fluxo:unavailable"


def unavailable(source_key, now=None):
    """Count a 503. Keyed by the URL's ingest key: the database that maps it to a source may be down."""

    def build(pipe):
        pipe.hincrby(UNAVAILABLE_KEY, source_key, 1)
        _count_hourly(pipe, f"key:{source_key}", "unavailable", now or datetime.now(UTC))

    _run("count a 503", build)


def redelivered(source_id, now=None):
    """Count a delivery Adobe marked as a retry (x-adobe-retry-count): an earlier attempt failed."""
    _run("count a redelivery", lambda pipe: _count_hourly(pipe, f"source:{source_id}", "redelivered", now))


# Adobe judges a registration on its last 24 hours of attempts: answers other than 2xx are kept per hour.
_HOURLY_TTL = 26 * 3600


def _hourly_key(who, moment):
    return f"fluxo:hourly:{who}:{moment:%Y%m%d%H}"


def _count_hourly(pipe, who, what, now):
    key = _hourly_key(who, now or datetime.now(UTC))
    pipe.hincrby(key, what, 1)
    pipe.expire(key, _HOURLY_TTL)


def error_hours(source_id, ingest_key, now):
    """[(hour start, refused, 503s)] of the last 24 hours in which the receivers answered errors, oldest first."""
    hours = [(now - timedelta(hours=h)).replace(minute=0, second=0, microsecond=0) for h in range(23, -1, -1)]
    try:
        pipe = client().pipeline(transaction=False)
        for hour in hours:
            pipe.hget(_hourly_key(f"source:{source_id}", hour), "refused")
            pipe.hget(_hourly_key(f"key:{ingest_key}", hour), "unavailable")
        replies = pipe.execute()
    except (redis.RedisError, OSError):
        return []
    found = []
    for index, hour in enumerate(hours):
        refused, down = (int(v or 0) for v in replies[2 * index : 2 * index + 2])
        if refused or down:
            found.append((hour, refused, down))
    return found


def last_day(source_id, ingest_key, now):
    """{"refused", "unavailable", "redelivered": n} over the 24 hours to ``now`` (empty if Redis is unreachable)."""
    hours = [now - timedelta(hours=h) for h in range(24)]
    keys = [_hourly_key(f"source:{source_id}", h) for h in hours] + [_hourly_key(f"key:{ingest_key}", h) for h in hours]
    try:
        pipe = client().pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        replies = pipe.execute()
    except (redis.RedisError, OSError):
        return {}
    totals = {}
    for reply in replies:
        for name, value in reply.items():
            totals[name.decode()] = totals.get(name.decode(), 0) + int(value)
    return totals


def unavailable_counts(ingest_keys):
    """{ingest key: 503s answered} for the keys that had any (empty when Redis is unreachable)."""
    if not ingest_keys:
        return {}
    try:
        values = client().hmget(UNAVAILABLE_KEY, ingest_keys)
    except (redis.RedisError, OSError) as exc:
        log.warning("could not read 503 counts (%s)", exc.__class__.__name__)
        return {}
    return {key: int(value) for key, value in zip(ingest_keys, values, strict=True) if value is not None}


def counters(source_id):
    """The counters of one source as ints (empty when Redis is unreachable)."""
    try:
        raw = client().hgetall(counters_key(source_id))
    except (redis.RedisError, OSError):
        return {}
    return {k.decode(): (v.decode() if k == b"last_event_at" else int(v)) for k, v in raw.items()}


def recent_rejections(source_id, limit=KEEP_REJECTIONS, now=None):
    """The source's last refused requests of the past REJECTIONS_TTL, newest first (empty when Redis is
    unreachable). Each has at, reason, status, detail, and (since it was kept) what streams.refused kept."""
    since = (now or datetime.now(UTC)) - REJECTIONS_TTL
    try:
        raw = client().lrange(rejections_key(source_id), 0, limit - 1)
    except (redis.RedisError, OSError):
        return []
    entries = (orjson.loads(item) for item in raw)
    return [entry for entry in entries if _entry_time(entry) >= since]


def _entry_time(entry):
    if "ts" in entry:
        return datetime.fromtimestamp(entry["ts"], UTC)
    return datetime.fromisoformat(entry["at"])  # an entry kept before "ts" was


# From the tail (the oldest end): a push meanwhile only adds at the head, so nothing newer is dropped.
_PRUNE_SCRIPT = """
local dropped = 0
while true do
  local oldest = redis.call('LINDEX', KEYS[1], -1)
  if not oldest then break end
  local ok, entry = pcall(cjson.decode, oldest)
  if ok and type(entry) == 'table' and tonumber(entry['ts']) and tonumber(entry['ts']) >= tonumber(ARGV[1]) then
    break
  end
  redis.call('RPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
"""


def prune_rejections(now=None):
    """Drop the refused requests older than REJECTIONS_TTL from every source's list; returns how many."""
    cutoff = ((now or datetime.now(UTC)) - REJECTIONS_TTL).timestamp()
    redis_client = client()
    prune = redis_client.register_script(_PRUNE_SCRIPT)
    return sum(prune(keys=[key], args=[cutoff]) for key in redis_client.scan_iter(rejections_key("*"), count=500))


def publish(channel, message):
    """PUBLISH for other apps' announcements (alerts), with the same short timeout and pause after failure."""
    _run(f"publish on {channel}", lambda pipe: pipe.publish(channel, message))
