"""The evaluator: consume the receivers' batch rows, match rules, keep windows and deadlines, move alerts.

``evaluate()`` takes the batches not yet evaluated and, in ONE transaction with its record of them
(EvaluatedBatch), writes everything they cause: window counts, absence deadlines, alerts and their
timelines, and the Delivery rows to send. So a crash rolls all of it back and the next run does it
again: nothing is evaluated twice or skipped, and Redis being down only delays it (the state is in
the database). Runs are serialised on the EvaluatorFloor row; batches are found by a scan above the
floor, so a batch whose ingest transaction commits late is still found (the floor only moves over
batches received more than GRACE ago, as in dashboard.rollups).

``tick()`` (the beat, every few seconds) catches up, then re-checks what time alone changes: open
threshold alerts as their windows slide, "for" durations, absence deadlines, health counters from
Redis, and reminders.
"""

import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from alerts import compiled, lifecycle
from alerts.conditions import EventView
from alerts.models import Alert, Deadline, EvaluatorFloor, Rule, WindowCount
from streams import announce, archive, registration_health, store
from streams.models import Batch, Event, Source

log = logging.getLogger(__name__)

LIMIT = 200  # batches per transaction
GRACE = timedelta(minutes=10)
BUCKET_SECONDS = 10

_PENDING = (
    "FROM streams_batch b WHERE b.id > %s "
    "AND NOT EXISTS (SELECT 1 FROM alerts_evaluatedbatch e WHERE e.batch_id = b.id)"
)
_CLAIM = (
    f"INSERT INTO alerts_evaluatedbatch (batch_id) SELECT b.id {_PENDING} "
    "ORDER BY b.id LIMIT %s ON CONFLICT DO NOTHING RETURNING batch_id"
)
# What rules read of an event: every stored column but the bulky or key-only ones (raw is added when needed).
_FIELDS = (
    "id",
    "batch_id",
    "received_at",
    *(c for c in store.COLUMNS if c not in ("event_uid", "activity_key", "details", "flags", "raw")),
)


def evaluate(limit=LIMIT, now=None):
    """Evaluate up to ``limit`` batches not yet evaluated; how many, or None if another run holds the floor.

    Not waiting matters: a worker slot blocked on the lock could not send deliveries meanwhile, and
    the run holding it goes on until nothing is left (catch_up), so it takes these batches too.
    """
    effects = lifecycle.Effects()
    with transaction.atomic(), connection.cursor() as cursor:
        floor = _lock_floor(cursor, wait=False)
        if floor is None:
            return None
        claimed, _ = _evaluate_locked(cursor, floor, limit, now or timezone.now(), effects)
        transaction.on_commit(effects.after_commit)
    return claimed


def _evaluate_locked(cursor, floor, limit, now, effects):
    """One run with the floor held: (batches evaluated, the floor after it)."""
    cursor.execute(_CLAIM, [floor, limit])
    claimed = [row[0] for row in cursor.fetchall()]
    if claimed:
        rules = compiled.active_rules()
        if rules.rules:
            apply(rules, events_of(claimed, rules.needs_raw, late_batches(claimed)), now, effects)
    return len(claimed), _advance_floor(cursor, floor, now)


def catch_up(limit=LIMIT, max_runs=50):
    """Evaluate until a run finds nothing; True then, False after ``max_runs`` runs or if another run is at work."""
    for _ in range(max_runs):
        claimed = evaluate(limit)
        if not claimed:
            return claimed == 0
    return False


def late_batches(batch_ids):
    """The batches marked late: backfilled from Adobe's journal, long after their events occurred."""
    return set(Batch.objects.filter(id__in=batch_ids, meta__late=True).values_list("id", flat=True))


def events_of(batch_ids, needs_raw, late=frozenset()):
    """EventViews of the events stored by these batches, in id order (``late`` ones say so)."""
    names = dict(Source.objects.values_list("id", "name"))
    fields = (*_FIELDS, "raw") if needs_raw else _FIELDS
    rows = Event.objects.of_batches(batch_ids).order_by("id").values_list(*fields)
    for row in rows.iterator(chunk_size=2000):
        columns = dict(zip(_FIELDS, row, strict=False))
        columns["source_name"] = names.get(columns["source_id"], "")
        columns["late"] = columns["batch_id"] in late
        yield EventView(columns, row[-1] if needs_raw else "{}")


def events_of_range(rule, since, until, needs_raw):
    """EventViews of events received in [since, until) that a compiled rule could match (the preview)."""
    names = dict(Source.objects.values_list("id", "name"))
    events = Event.objects.filter(received_at__gte=since, received_at__lt=until)
    if rule.source_ids is not None:
        events = events.filter(source_id__in=rule.source_ids)
    if rule.streams is not None:
        events = events.filter(stream__in=rule.streams)
    if rule.type_ids is not None:
        events = events.filter(activity_type_id__in=rule.type_ids)
    fields = (*_FIELDS, "raw") if needs_raw else _FIELDS
    for row in events.order_by("received_at", "id").values_list(*fields).iterator(chunk_size=2000):
        columns = dict(zip(_FIELDS, row, strict=False))
        columns["source_name"] = names.get(columns["source_id"], "")
        yield EventView(columns, row[-1] if needs_raw else "{}")


def apply(rules, events, now, effects):
    """Match events against the rules and apply what they cause (the caller holds the transaction)."""
    hits = defaultdict(list)
    for event in events:
        for rule in rules.candidates(event.get("stream"), event.get("activity_type_id")):
            if rule.matches(event):
                hits[rule.id].append(event)
    for rule_id, matched in hits.items():
        rule = rules.by_id[rule_id]
        if rule.kind in (Rule.Kind.THRESHOLD, Rule.Kind.ABSENCE):
            matched = [event for event in matched if not _received_late(rule, event)]
            if not matched:
                continue
        _HANDLERS[rule.kind](rule, matched, now, effects)
    return hits


def _received_late(rule, event):
    """A late (backfilled) event has no place on a received-time window: it would fake a burst now.

    On occurred time it counts where it occurred (its own time, not its arrival).
    """
    if not event.get("late"):
        return False
    return rule.basis != Rule.Basis.OCCURRED or event.get("occurred_at") is None


# --- Per kind --------------------------------------------------------------------------------------------


def _collect(rule, events, now, effects):
    """Match and watch rules: the events join the alert still collecting for their group, or open one."""
    groups = defaultdict(list)
    for event in events:
        groups[rule.group(event)[0]].append(event)
    for key, members in groups.items():
        lifecycle.collect(rule, key, rule.group(members[0])[1], members, now, effects)


def _count(rule, events, now, effects):
    """Threshold rules: add the events to their window buckets, then re-check the groups they touched."""
    increments, groups = Counter(), {}
    for event in events:
        key, labels = rule.group(event)
        increments[(key, bucket_of(rule.basis_time(event)))] += 1
        groups[key] = (labels, event.get("source_id"))
    add_to_windows(rule.id, increments)
    for key, (labels, source_id) in groups.items():
        check_threshold(rule, key, labels, source_id, now, effects)


def _see(rule, events, now, effects):
    """Absence rules: move each group's deadline to its latest event plus the window; resolve if it was silent."""
    latest = {}
    for event in events:
        key, labels = rule.group(event)
        moment = rule.basis_time(event)
        if key not in latest or moment > latest[key][0]:
            latest[key] = (moment, labels, event.get("source_id"))
    for key, (moment, labels, source_id) in latest.items():
        deadline, _ = Deadline.objects.select_for_update().get_or_create(
            rule_id=rule.id,
            group_key=key,
            defaults={"labels": labels, "source_id": source_id, "deadline": moment + rule.window},
        )
        if deadline.last_seen is None or moment > deadline.last_seen:
            deadline.last_seen, deadline.deadline = moment, moment + rule.window
            deadline.save(update_fields=["last_seen", "deadline"])
        if deadline.deadline > now:
            alert = lifecycle.open_alert(rule.id, key)
            if alert is not None:
                lifecycle.resolve(alert, rule, now, effects, f"events again (the latest at {moment:%H:%M:%S} UTC)")


_HANDLERS = {
    Rule.Kind.MATCH: _collect,
    Rule.Kind.WATCH: _collect,
    Rule.Kind.THRESHOLD: _count,
    Rule.Kind.ABSENCE: _see,
}


# --- Windows --------------------------------------------------------------------------------------------


def bucket_of(moment):
    seconds = int(moment.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS
    return datetime.fromtimestamp(seconds, tz=UTC)


_INCREMENT = (
    "INSERT INTO alerts_windowcount (rule_id, group_key, bucket, count) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (rule_id, group_key, bucket) DO UPDATE SET count = alerts_windowcount.count + excluded.count"
)


def add_to_windows(rule_id, increments):
    """Add {(group key, bucket): n} to the rule's window counts (one upsert per bucket)."""
    adapt = connection.ops.adapt_datetimefield_value
    rows = [(rule_id, key, adapt(bucket), n) for (key, bucket), n in increments.items() if n]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(_INCREMENT, rows)


def window_count(rule, group_key, now):
    """Matching events in the window ending now, to the bucket (10 s)."""
    since = bucket_of(now - rule.window)
    rows = WindowCount.objects.filter(rule_id=rule.id, group_key=group_key, bucket__gte=since)
    return sum(rows.values_list("count", flat=True))


def check_threshold(rule, group_key, labels, source_id, now, effects):
    """Move the group's alert by the count in its window: above the threshold fires, at or below recovery resolves."""
    count = window_count(rule, group_key, now)
    alert = lifecycle.open_alert(rule.id, group_key)
    detail = f"{counted(count, 'matching event')} in {_minutes(rule.window)}"
    if count > rule.threshold:
        if alert is None:
            alert = lifecycle.start(rule, group_key, labels, source_id, now, count, detail, effects)
        elif alert.state == Alert.State.PENDING and now - alert.started_at >= rule.hold_for:
            lifecycle.fire(alert, rule, now, effects, detail)
        lifecycle.set_value(alert, count, detail)
    elif alert is not None and count <= rule.recovery:
        lifecycle.resolve(alert, rule, now, effects, detail)
    elif alert is not None:
        lifecycle.set_value(alert, count, detail)


def counted(n, noun):
    """ "1 matching event", "2 matching events" (the nouns here take an s)."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _minutes(delta):
    return counted(int(delta.total_seconds() // 60), "minute")


# --- The tick -------------------------------------------------------------------------------------------


TICK_RUNS = 10  # evaluation runs a tick may make itself before it judges absences


def tick(now=None):
    """Catch up, then everything that time alone changes. Returns a dict of what it did (for logs and tests).

    The tick waits for the evaluator's lock and evaluates what is left under it, so it knows whether
    every batch received so far is evaluated even while evaluations run back to back under load.
    """
    now = now or timezone.now()
    effects = lifecycle.Effects()
    with transaction.atomic(), connection.cursor() as cursor:
        floor = _lock_floor(cursor)  # one tick or evaluation at a time
        drained = False
        for _ in range(TICK_RUNS):
            claimed, floor = _evaluate_locked(cursor, floor, LIMIT, timezone.now(), effects)
            if claimed == 0:
                drained = True
                break
        done = {"drained": drained}
        rules = compiled.active_rules()
        done["thresholds"] = _recheck_open(rules, now, effects)
        if drained:  # an absence is judged only once every event received so far is evaluated
            _ensure_deadlines(rules, now)
            done["absences"] = _expire_deadlines(rules, now, effects)
        done["health"] = _sample_health(cursor, rules, now, effects)
        done["reminders"] = lifecycle.remind(rules, now, effects)
        transaction.on_commit(effects.after_commit)
    return done


def _recheck_open(rules, now, effects):
    """Windows slide with time: re-check every open threshold and health alert."""
    checked = 0
    for alert in Alert.objects.filter(state__in=Alert.OPEN, rule__kind__in=[Rule.Kind.THRESHOLD, Rule.Kind.HEALTH]):
        rule = rules.by_id.get(alert.rule_id)
        if rule is None:  # disabled or deleted since: its alerts close
            lifecycle.resolve(alert, None, now, effects, "the rule was disabled")
            continue
        check_threshold(rule, alert.group_key, alert.labels, alert.source_id, now, effects)
        checked += 1
    return checked


def _ensure_deadlines(rules, now):
    """Absence rules watch every source in scope (or the rule as a whole) from the moment they exist."""
    sources = None
    for rule in rules.of_kind(Rule.Kind.ABSENCE):
        if rule.group_by == Rule.GroupBy.SOURCE:
            if sources is None:
                sources = list(Source.objects.values_list("id", "name"))
            wanted = {f"source:{sid}": ({"source": name}, sid) for sid, name in sources if rule.applies_to(sid)}
        elif not rule.group_by:
            only = next(iter(rule.source_ids)) if rule.source_ids and len(rule.source_ids) == 1 else None
            wanted = {"": ({}, only)}
        else:
            continue  # per campaign, user …: a group exists once it has been seen
        have = set(Deadline.objects.filter(rule_id=rule.id).values_list("group_key", flat=True))
        Deadline.objects.bulk_create(
            [
                Deadline(rule_id=rule.id, group_key=key, labels=labels, source_id=sid, deadline=now + rule.window)
                for key, (labels, sid) in wanted.items()
                if key not in have
            ],
            ignore_conflicts=True,
        )


def _expire_deadlines(rules, now, effects):
    open_alerts = Alert.objects.filter(rule=OuterRef("rule"), group_key=OuterRef("group_key"), state__in=Alert.OPEN)
    expired = (
        Deadline.objects.filter(deadline__lte=now, rule__enabled=True, rule__kind=Rule.Kind.ABSENCE)
        .exclude(Exists(open_alerts))
        .order_by("deadline")[:500]
    )
    fired = 0
    for deadline in expired:
        rule = rules.by_id.get(deadline.rule_id)
        if rule is None:
            continue
        since = f"since {deadline.last_seen:%Y-%m-%d %H:%M} UTC" if deadline.last_seen else "since the rule was set up"
        detail = f"no matching event for {_minutes(rule.window)} ({since})"
        alert = lifecycle.start(
            rule,
            deadline.group_key,
            deadline.labels,
            deadline.source_id,
            now,
            0,
            detail,
            effects,
            started=deadline.deadline,
        )
        fired += alert.state == Alert.State.FIRING
    return fired


# --- Fluxo's own trouble: counters kept in Redis by the receivers ---------------------------------------------


def _sample_health(cursor, rules, now, effects):
    """Turn the growth of the receivers' Redis counters into window counts for health rules."""
    health = rules.of_kind(Rule.Kind.HEALTH)
    if not health:
        return 0
    checked = _sample_gauges([rule for rule in health if rule.metric in GAUGES], now, effects)
    health = [rule for rule in health if rule.metric not in GAUGES]
    if not health:
        return checked
    floor = EvaluatorFloor.objects.get(pk=1)
    marks = dict(floor.counters)
    sources = list(Source.objects.values_list("id", "name", "ingest_key"))
    current = _health_counters(sources)
    if current is None:
        return checked  # Redis unreachable: keep the marks, count the growth once it is back
    deltas = {}
    for key, value in current.items():
        last = marks.get(key)
        deltas[key] = 0 if last is None else value - last if value >= last else value
        marks[key] = value
    floor.counters = marks
    floor.save(update_fields=["counters"])
    for rule in health:
        increments = Counter()
        for sid, _name, _key in sources:
            if rule.applies_to(sid):
                increments[(f"source:{sid}", bucket_of(now))] += deltas.get(f"{sid}:{rule.metric}", 0)
        add_to_windows(rule.id, increments)
        for sid, name, _ in sources:
            if rule.applies_to(sid):
                check_threshold(rule, f"source:{sid}", {"source": name}, sid, now, effects)
                checked += 1
    return checked


# States the streams app keeps in the database, counted 1 per tick while they hold: a rule with threshold 0
# fires on the first tick, and resolves once a window passes without it.
GAUGES = {
    Rule.Metric.JOURNAL: registration_health.stopped_sources,
    Rule.Metric.AT_RISK: registration_health.at_risk_sources,
    Rule.Metric.ARCHIVE: archive.missed_sources,
}


def _sample_gauges(rules, now, effects):
    if not rules:
        return 0
    holding = {metric: set(read()) for metric, read in GAUGES.items() if any(r.metric == metric for r in rules)}
    sources = list(Source.objects.values_list("id", "name"))
    checked = 0
    for rule in rules:
        scope = [(sid, name) for sid, name in sources if rule.applies_to(sid)]
        increments = Counter(
            {(f"source:{sid}", bucket_of(now)): 1 for sid, _name in scope if sid in holding[rule.metric]}
        )
        add_to_windows(rule.id, increments)
        for sid, name in scope:
            check_threshold(rule, f"source:{sid}", {"source": name}, sid, now, effects)
            checked += 1
    return checked


def _health_counters(sources):
    """{"<source id>:<metric>": total} from Redis, or None when Redis cannot be read."""
    try:
        client = announce.client()
        pipe = client.pipeline(transaction=False)
        for sid, _, _ in sources:
            pipe.hmget(announce.counters_key(sid), ["rejected_signature", "rejected_auth"])
        pipe.hmget(announce.UNAVAILABLE_KEY, [key for _, _, key in sources] or ["-"])
        replies = pipe.execute()
    except Exception as exc:  # redis errors of any kind: health rules wait for Redis
        log.warning("health counters unavailable (%s)", exc.__class__.__name__)
        return None
    unavailable = replies[-1]
    totals = {}
    for (sid, _, _), (signature, auth), down in zip(sources, replies[:-1], unavailable, strict=False):
        totals[f"{sid}:signature"] = int(signature or 0)
        totals[f"{sid}:auth"] = int(auth or 0)
        totals[f"{sid}:unavailable"] = int(down or 0)
    return totals


# --- Progress -----------------------------------------------------------------------------------------------


_LOCK_KEY = 0x666C7578  # the evaluator's advisory lock on PostgreSQL ("flux")


def _lock_floor(cursor, wait=True):
    """The floor, with the evaluator's lock held to the end of the transaction; None if busy and not ``wait``."""
    if connection.vendor == "postgresql":  # SQLite: BEGIN IMMEDIATE locked the whole database already
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        else:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return None
    cursor.execute(
        "INSERT INTO alerts_evaluatorfloor (id, batch_id, counters) VALUES (1, 0, '{}') ON CONFLICT DO NOTHING"
    )
    cursor.execute("SELECT batch_id FROM alerts_evaluatorfloor WHERE id = 1")
    return cursor.fetchone()[0]


def _advance_floor(cursor, floor, now):
    cutoff = connection.ops.adapt_datetimefield_value(now - GRACE)
    cursor.execute("SELECT MAX(id) FROM streams_batch WHERE id > %s AND received_at < %s", [floor, cutoff])
    candidate = cursor.fetchone()[0]
    if candidate is None:
        return floor
    cursor.execute(f"SELECT MIN(b.id) {_PENDING}", [floor])
    first_pending = cursor.fetchone()[0]
    if first_pending is not None:
        candidate = min(candidate, first_pending - 1)
    if candidate <= floor:
        return floor
    cursor.execute("UPDATE alerts_evaluatorfloor SET batch_id = %s WHERE id = 1", [candidate])
    cursor.execute("DELETE FROM alerts_evaluatedbatch WHERE batch_id <= %s", [candidate])
    return candidate


def prune(now=None, keep_windows=timedelta(days=2)):
    """Drop window buckets no rule can still read (the longest window plus a margin)."""
    now = now or timezone.now()
    longest = max(Rule.objects.values_list("window_minutes", flat=True), default=0)
    cutoff = now - max(keep_windows, timedelta(minutes=longest) + timedelta(hours=1))
    deleted, _ = WindowCount.objects.filter(bucket__lt=cutoff).delete()
    return deleted
