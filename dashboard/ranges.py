"""Time ranges a page may ask for, the bucket size a chart uses for them, and the viewer's time zone."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RELATIVE = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT = "15m"
# The smallest of these that keeps a chart under MAX_BUCKETS points. Rollups are per minute and per
# hour: a range of days gets whole hours, and reads the hourly rollups.
BUCKET_SECONDS = (60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_BUCKETS = 200
MAX_SPAN = timedelta(days=400)
# Per-minute rollups are kept this long (dashboard.rollups.prune); older ranges are read by the hour.
MINUTE_HISTORY = timedelta(days=45)


class BadRange(ValueError):
    """A range or zone a page cannot be asked for (a 400)."""


@dataclass(frozen=True)
class Window:
    """[since, until) in UTC, cut into buckets.

    ``live``: it reaches past now, so deltas add to it. ``sliding``: it also moves with time (a relative
    range: new buckets come in, old ones leave); a fixed range that holds now only fills up.
    """

    name: str
    since: datetime
    until: datetime
    bucket_seconds: int
    live: bool
    sliding: bool = False

    def bucket_starts(self):
        start = int(self.since.timestamp())
        return list(range(start, int(self.until.timestamp()), self.bucket_seconds))


def bucket_for(span):
    for seconds in BUCKET_SECONDS:
        if span.total_seconds() / seconds <= MAX_BUCKETS:
            return seconds
    return BUCKET_SECONDS[-1]


def _floor(moment, seconds):
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def relative(name, now):
    """The last ``name`` (e.g. "15m"), in whole buckets, ending with the bucket that holds ``now``."""
    if name not in RELATIVE:
        raise BadRange(f"range must be one of {', '.join(RELATIVE)} or custom")
    span = RELATIVE[name]
    bucket = bucket_for(span)
    until = _floor(now, bucket) + timedelta(seconds=bucket)
    return Window(name, until - span, until, bucket, live=True, sliding=True)


def custom(since_text, until_text, zone, now=None):
    """A fixed range typed by a person (``2026-04-20T18:00``, in ``zone`` unless it names an offset).

    One that starts before the per-minute history gets whole-hour buckets (the hourly rollups); one
    that ends after ``now`` is live (deltas fill it) but does not slide.
    """
    since, until = typed_time(since_text, zone, "since"), typed_time(until_text, zone, "until")
    if until <= since:
        raise BadRange("until must be after since")
    if until - since > MAX_SPAN:
        raise BadRange(f"a range is at most {MAX_SPAN.days} days")
    bucket = bucket_for(until - since)
    if now is not None and since < now - MINUTE_HISTORY:
        bucket = max(bucket, 3600)
    start = _floor(since, bucket)
    end = _floor(until - timedelta(microseconds=1), bucket) + timedelta(seconds=bucket)
    return Window("custom", start, end, bucket, live=now is not None and now < end)


def typed_time(text, zone, name):
    """A time a person typed (``2026-04-20T18:00``), in ``zone`` unless it names an offset, as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise BadRange(f"{name}: expected a time such as 2026-04-20T18:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def window(params, zone, now):
    """The Window that query parameters ``range`` (or ``since`` and ``until``) ask for."""
    name = params.get("range") or DEFAULT
    if name == "custom":
        return custom(params.get("since", ""), params.get("until", ""), zone, now)
    return relative(name, now)


def viewer_zone(name):
    """The IANA zone the browser reports (``Intl``); UTC when none is given."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRange(f"tz: unknown time zone {name[:64]!r}") from None


def window_document(window):
    """A Window as JSON for a page."""
    return {
        "name": window.name,
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "bucket_seconds": window.bucket_seconds,
        "live": window.live,
        "sliding": window.sliding,
    }
