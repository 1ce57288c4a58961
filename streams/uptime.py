"""When Fluxo was running: one bit a minute in Redis, set by its processes' heartbeats.

While Fluxo is down it sees nothing, not even the deliveries Adobe then failed to make (connection
refused or timed out: Adobe's 602 and 604). But it knows when it was not running: the minutes no process
marked. The worker and the beat mark theirs with each heartbeat (fluxo.health), the web processes with
the webhook requests they answer; each process at most once a minute, best effort.

A bitmap per UTC day (``fluxo:up:YYYYMMDD``, bit n = minute n), kept 8 days: past the journal's 7.
"""

import logging
import threading
from datetime import UTC, datetime, timedelta

import redis

from streams import announce

log = logging.getLogger(__name__)

KEEP = timedelta(days=8)
MINUTES_A_DAY = 24 * 60
_marked = {"minute": None}
_lock = threading.Lock()


def _key(day):
    return f"fluxo:up:{day:%Y%m%d}"


def mark(now=None):
    """Record that a Fluxo process runs this minute (once a minute per process; never raises)."""
    now = now or datetime.now(UTC)
    minute = int(now.timestamp() // 60)
    with _lock:
        if _marked["minute"] == minute:
            return
        _marked["minute"] = minute
    day = datetime.fromtimestamp(minute * 60, UTC)
    try:
        pipe = announce.client().pipeline(transaction=False)
        pipe.setbit(_key(day), minute % MINUTES_A_DAY, 1)
        pipe.expire(_key(day), int(KEEP.total_seconds()))
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.debug("could not mark this minute as up (%s)", exc.__class__.__name__)


def down_spans(since, until, minimum=timedelta(minutes=3)):
    """[(start, end)] of the periods of at least ``minimum`` within [since, until) that no process marked.

    Only gaps with marked minutes on both sides count: before the first mark there is no record (a new
    install, a Redis that lost its data), and the minutes up to now may simply not be marked yet; neither
    is read as Fluxo being down. Empty when Redis cannot be read.
    """
    first, last = int(since.timestamp() // 60), int(until.timestamp() // 60)
    up = _marked_minutes(first, last)
    if up is None:
        return []
    spans, previous = [], None
    for minute in range(first, last):
        if not up[minute - first]:
            continue
        if previous is not None and minute - previous - 1 >= minimum.total_seconds() // 60:
            spans.append((_at(previous + 1), _at(minute)))
        previous = minute
    return spans


def _marked_minutes(first, last):
    """[bool] for the minutes first..last-1 (None when Redis cannot be read)."""
    days = list(range(first // MINUTES_A_DAY, (last - 1) // MINUTES_A_DAY + 1))
    try:
        bitmaps = announce.client().mget([_key(_at(day * MINUTES_A_DAY)) for day in days])
    except (redis.RedisError, OSError):
        return None
    by_day = {day: bitmap or b"" for day, bitmap in zip(days, bitmaps, strict=True)}
    return [_bit(by_day.get(m // MINUTES_A_DAY, b""), m % MINUTES_A_DAY) for m in range(first, last)]


def _bit(bitmap, n):
    byte = n // 8
    return byte < len(bitmap) and bool(bitmap[byte] & (0x80 >> (n % 8)))  # Redis numbers bits from the left


def _at(minute):
    return datetime.fromtimestamp(minute * 60, UTC)
