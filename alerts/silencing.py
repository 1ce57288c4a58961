"""Silences and mute windows: what keeps an alert's messages from going out, and until when.

Silences match an alert's labels as Alertmanager's matchers do: ``=`` and ``!=`` compare text, ``=~``
and ``!~`` are regular expressions anchored at both ends, and a label the alert does not carry is the
empty string (so ``{"label": "team", "op": "=", "value": ""}`` matches alerts without a team).
Mute windows are recurring local times in a stated IANA zone; a window whose end is at or before its
start runs past midnight into the next day.
"""

import re
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.models import Silence

OPS = ("=", "!=", "=~", "!~")
MAX_PATTERN = 300


class MatcherError(ValueError):
    """A matcher that cannot be used; the message is shown to the admin."""


def labels_of(alert):
    """The labels silences match on: rule, severity, kind, source (when the alert has one), then the alert's own."""
    labels = {"rule": alert.rule.name, "severity": alert.severity, "kind": alert.rule.kind}
    if alert.source_id is not None and alert.source is not None:
        labels["source"] = alert.source.name
    labels.update({str(k): "" if v is None else str(v) for k, v in (alert.labels or {}).items()})
    return labels


def check_matchers(matchers):
    """Raise MatcherError unless ``matchers`` is a non-empty list of well-formed matchers (for forms)."""
    if not isinstance(matchers, list) or not matchers:
        raise MatcherError("a silence needs at least one matcher")
    for matcher in matchers:
        if not isinstance(matcher, dict) or set(matcher) != {"label", "op", "value"}:
            raise MatcherError(f"a matcher is an object with label, op and value: {matcher!r}")
        if matcher["op"] not in OPS:
            raise MatcherError(f"unknown operator {matcher['op']!r}; use one of {' '.join(OPS)}")
        if not isinstance(matcher["label"], str) or not matcher["label"]:
            raise MatcherError("a matcher names a label")
        if matcher["op"] in ("=~", "!~"):
            _pattern(str(matcher["value"]))


def matches(matchers, labels):
    """True when every matcher holds for ``labels``. A malformed silence matches nothing."""
    try:
        check_matchers(matchers)
    except MatcherError:
        return False
    return all(_holds(m["op"], str(m["value"]), labels.get(m["label"], "")) for m in matchers)


def _holds(op, value, actual):
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    found = _pattern(value).fullmatch(actual) is not None
    return found if op == "=~" else not found


@lru_cache(maxsize=256)
def _pattern(value):
    if len(value) > MAX_PATTERN:
        raise MatcherError(f"a pattern is at most {MAX_PATTERN} characters")
    try:
        return re.compile(value)
    except re.error as exc:
        raise MatcherError(f"not a valid pattern: {exc}") from None


def silence_for(alert, now):
    """The active silence that matches ``alert``, or None."""
    labels = labels_of(alert)
    for silence in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now).order_by("ends_at"):
        if matches(silence.matchers, labels):
            return silence
    return None


# --- Mute windows ---------------------------------------------------------------------------------------


def mute_end(windows, now):
    """When the mute windows active at ``now`` close (the latest of them), or None if none is active."""
    ends = [end for end in (window_end(w, now) for w in windows) if end is not None]
    return max(ends, default=None)


def window_end(window, now):
    """When ``window`` closes if it is open at ``now`` (an aware datetime), else None.

    A window is open from ``start_time`` on one of its weekdays until the next ``end_time``: the
    same day when the end is later, otherwise the next day (23:00 → 07:00 runs over midnight;
    a start equal to the end is a whole day). Weekdays are those the window opens on.
    """
    zone = _zone(window.time_zone)
    local = now.astimezone(zone)
    days = set(window.weekdays or range(7))
    start, end = window.start_time.replace(tzinfo=None), window.end_time.replace(tzinfo=None)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        if local.weekday() in days and start <= clock < end:
            return _at(local.date(), end, zone, now)
        return None
    if clock >= start and local.weekday() in days:
        return _at(local.date() + timedelta(days=1), end, zone, now)
    if clock < end and (local.weekday() - 1) % 7 in days:
        return _at(local.date(), end, zone, now)
    return None


def _at(day, clock, zone, now):
    moment = datetime.combine(day, clock, tzinfo=zone)
    # A local time skipped by a daylight-saving change can land at or before now: wait a minute then.
    return moment if moment > now else now + timedelta(minutes=1)


def _zone(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
