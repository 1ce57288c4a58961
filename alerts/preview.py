"""A rule's preview: replay the last hours of stored events through it and say when it would have fired.

It uses the same compiled predicate, grouping and time basis as live evaluation, and replays the
lifecycle in memory with the evaluator's rules: an event alert collects matches for the grouping
wait; a threshold counts 10-second buckets over the window, checked at every event and every
bucket boundary while open ("for" and recovery included); an absence fires once a group has had no
event for the window (the preview's start counts as a rule created then) and resolves on the next.
Nothing is written.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from alerts import compiled, lifecycle
from alerts.evaluate import BUCKET_SECONDS, bucket_of, events_of_range
from alerts.models import Rule, WatchList

MAX_EVENTS = 200_000
MAX_RESULTS = 500


@dataclass
class Firing:
    group_key: str
    labels: dict
    started_at: object
    fired_at: object = None
    resolved_at: object = None
    value: int = 0
    hits: int = 0
    samples: list = field(default_factory=list)


@dataclass
class Preview:
    firings: list
    events_read: int
    truncated: bool
    note: str = ""


def preview(rule, hours, now, source_ids=None):
    """Replay ``hours`` up to ``now`` through an (unsaved) Rule; a Preview. ConditionError if it does not compile."""
    if rule.kind == Rule.Kind.HEALTH:
        return Preview([], 0, False, "Health rules count refused requests and 503s, which are not stored per event.")
    watch_lists = {w.name: w.values() for w in WatchList.objects.all()}
    compiled_rule = compiled.compile_rule(rule, watch_lists, source_ids=source_ids)
    since = now - timedelta(hours=hours)
    events, truncated = [], False
    for event in events_of_range(compiled_rule, since, now, needs_raw=compiled_rule.needs_raw):
        if len(events) >= MAX_EVENTS:
            truncated = True
            break
        if compiled_rule.matches(event):
            events.append(event)
    events.sort(key=compiled_rule.basis_time)
    replay = _REPLAY[rule.kind]
    firings = replay(compiled_rule, events, since, now)
    firings.sort(key=lambda f: f.fired_at or f.started_at)
    return Preview(firings[:MAX_RESULTS], len(events), truncated)


def _collect(rule, events, since, now):
    firings, open_by_key = [], {}
    for event in events:
        moment = rule.basis_time(event)
        key, labels = rule.group(event)
        current = open_by_key.get(key)
        if current is None or moment >= current[1]:
            current = (Firing(key, labels, moment, fired_at=moment), moment + rule.group_wait)
            open_by_key[key] = current
            firings.append(current[0])
        firing = current[0]
        firing.hits += 1
        if len(firing.samples) < lifecycle.MAX_SAMPLES:
            firing.samples.append(lifecycle.sample(event))
    return firings


def _threshold(rule, events, since, now):
    by_key = defaultdict(list)
    for event in events:
        by_key[rule.group(event)[0]].append(event)
    firings = []
    for key, members in by_key.items():
        firings.extend(_threshold_one(rule, key, rule.group(members[0])[1], members, now))
    return firings


def _threshold_one(rule, key, labels, events, now):
    """One group's threshold lifecycle, checked at each event and, while open, each bucket boundary."""
    times = [rule.basis_time(e) for e in events]
    buckets, firings, alert = Counter(), [], None
    step = timedelta(seconds=BUCKET_SECONDS)
    index, moment = 0, times[0]
    while True:
        while index < len(times) and times[index] <= moment:
            buckets[bucket_of(times[index])] += 1
            index += 1
        since = bucket_of(moment - rule.window)
        alert = _step(rule, key, labels, alert, sum(n for b, n in buckets.items() if b >= since), moment, firings)
        following = times[index] if index < len(times) else None
        if alert is None:
            if following is None:
                return firings
            moment = following
        else:
            boundary = bucket_of(moment) + step
            moment = boundary if following is None else min(boundary, following)
            if moment > now:
                return firings


def _step(rule, key, labels, alert, count, moment, firings):
    """One check of a threshold: the same transitions as evaluate.check_threshold."""
    if count > rule.threshold:
        if alert is None:
            alert = Firing(key, labels, moment, value=count)
            if rule.hold_for <= timedelta(0):
                alert.fired_at = moment
                firings.append(alert)
        elif alert.fired_at is None and moment - alert.started_at >= rule.hold_for:
            alert.fired_at = moment
            firings.append(alert)
        alert.value = max(alert.value, count)
        return alert
    if alert is not None and count <= rule.recovery:
        if alert.fired_at is not None:
            alert.resolved_at = moment
        return None
    return alert


def _absence(rule, events, since, now):
    firings = []
    by_key = defaultdict(list)
    labels = {}
    for event in events:
        key, labels[key] = rule.group(event)
        by_key[key].append(rule.basis_time(event))
    if not rule.group_by and not by_key:
        by_key[""], labels[""] = [], {}
    for key, times in by_key.items():
        last = since
        for moment in [*times, None]:
            end = now if moment is None else moment
            if end - last > rule.window:
                firings.append(
                    Firing(key, labels[key], last + rule.window, fired_at=last + rule.window, resolved_at=moment)
                )
            if moment is not None:
                last = max(last, moment)
    return firings


_REPLAY = {
    Rule.Kind.MATCH: _collect,
    Rule.Kind.WATCH: _collect,
    Rule.Kind.THRESHOLD: _threshold,
    Rule.Kind.ABSENCE: _absence,
}
