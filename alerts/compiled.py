"""Rules compiled once per version, and indexed so that each event meets only the rules that can match it.

``active_rules()`` reloads the enabled rules (one small query) and recompiles only those whose
version, or whose watch lists, changed since the process last saw them.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from alerts import conditions
from alerts.models import Rule, WatchList

log = logging.getLogger(__name__)

# Where a lead's e-mail address may be on an activity (Marketo has no single place for it).
_EMAIL_PATHS = ("data.email", "data.Email", "data.emailAddress", 'attributes["Email Address"]', 'attributes["Email"]')
_EMAIL_GETTERS = [conditions.getter(path)[0] for path in _EMAIL_PATHS]

# group_by → (label, the event columns that give the key, in order of preference)
_GROUPS = {
    Rule.GroupBy.SOURCE: ("source", ("source_name",)),
    Rule.GroupBy.CAMPAIGN: ("campaign", ("campaign_name", "campaign_id")),
    Rule.GroupBy.USER: ("user", ("user_email", "user_numeric")),
    Rule.GroupBy.LEAD: ("lead", ("lead_id",)),
    Rule.GroupBy.TYPE: ("type", ("activity_type_name", "type")),
}


def lead_emails(event):
    """The e-mail addresses an activity carries for its lead, lower-cased (computed once per event)."""
    found = event.columns.get("_emails")
    if found is None:
        found = event.columns["_emails"] = {
            value.strip().lower() for get in _EMAIL_GETTERS if isinstance(value := get(event), str) and "@" in value
        }
    return found


@dataclass
class CompiledRule:
    id: int
    version: int
    name: str
    kind: str
    severity: str
    source_ids: frozenset | None  # None: every source
    predicate: object
    needs_raw: bool
    streams: set | None
    type_ids: set | None
    group_by: str
    basis: str
    threshold: int
    recovery: int
    window: timedelta
    hold_for: timedelta
    group_wait: timedelta
    repeat: timedelta | None
    metric: str
    watched: frozenset = field(default_factory=frozenset)
    watched_emails: frozenset = field(default_factory=frozenset)

    def applies_to(self, source_id):
        return self.source_ids is None or source_id in self.source_ids

    def matches(self, event):
        if not self.applies_to(event.get("source_id")):
            return False
        if self.kind == Rule.Kind.WATCH and not self._watched(event):
            return False
        return self.predicate(event)

    def _watched(self, event):
        lead = event.get("lead_id")
        if lead and lead in self.watched:
            return True
        # Only lists that hold e-mail addresses pay for reading the event's JSON.
        return (
            bool(self.watched_emails)
            and event.get("stream") == "activity"
            and not self.watched_emails.isdisjoint(lead_emails(event))
        )

    def group(self, event):
        """(group key, labels) of an event under this rule."""
        if not self.group_by:
            return "", {}
        label, columns = _GROUPS[self.group_by]
        if self.group_by == Rule.GroupBy.SOURCE:
            return f"source:{event.get('source_id')}", {label: event.get("source_name")}
        value = next((str(event.get(c)) for c in columns if event.get(c) not in (None, "")), "")
        return f"{label}:{value}"[:300], {label: value}

    def basis_time(self, event):
        if self.basis == Rule.Basis.OCCURRED and event.get("occurred_at") is not None:
            return event.get("occurred_at")
        return event.get("received_at")


def compile_rule(rule, watch_lists, source_ids=None):
    """A CompiledRule; ConditionError if the conditions do not compile.

    ``source_ids`` stands in for ``rule.sources`` on a rule not saved yet (the preview).
    """
    predicate, needs_raw = conditions.compile_all(rule.conditions, watch_lists)
    streams, type_ids = conditions.prefilter(rule.conditions)
    watched = frozenset()
    if rule.kind == Rule.Kind.WATCH:
        if rule.watch_list is None:
            raise conditions.ConditionError("a watch-list rule needs a watch list")
        watched = frozenset(watch_lists.get(rule.watch_list.name, ()))
        needs_raw = needs_raw or any("@" in value for value in watched)  # addresses are looked for in the data
    if source_ids is None and rule.pk is not None:
        source_ids = [s.pk for s in rule.sources.all()]
    source_ids = frozenset(source_ids or ()) or None
    return CompiledRule(
        id=rule.pk,
        version=rule.version,
        name=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        source_ids=source_ids,
        predicate=predicate,
        needs_raw=needs_raw,
        streams=streams,
        type_ids=type_ids,
        group_by=rule.group_by,
        basis=rule.basis,
        threshold=rule.threshold,
        recovery=rule.effective_recovery,
        window=timedelta(minutes=rule.window_minutes),
        hold_for=timedelta(minutes=rule.for_minutes),
        group_wait=timedelta(seconds=rule.group_wait_seconds),
        repeat=timedelta(minutes=rule.repeat_minutes) if rule.repeat_minutes else None,
        metric=rule.metric,
        watched=watched,
        watched_emails=frozenset(value for value in watched if "@" in value),
    )


class RuleSet:
    """The enabled rules, compiled, with an index from (stream, activity type id) to candidate rules."""

    def __init__(self, compiled):
        self.rules = compiled
        self.by_id = {rule.id: rule for rule in compiled}
        self._candidates = {}

    @property
    def needs_raw(self):
        return any(rule.needs_raw for rule in self.rules if rule.kind != Rule.Kind.HEALTH)

    def candidates(self, stream, type_id):
        key = (stream, type_id)
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = [
                rule
                for rule in self.rules
                if rule.kind != Rule.Kind.HEALTH
                and (rule.streams is None or stream in rule.streams)
                and (rule.type_ids is None or type_id in rule.type_ids)
            ]
        return found

    def of_kind(self, *kinds):
        return [rule for rule in self.rules if rule.kind in kinds]


_cache = {}  # rule id → ((version, updated_at), watch-list stamp, CompiledRule)


def active_rules():
    """The enabled rules as a RuleSet. A rule whose conditions no longer compile is left out (and logged)."""
    rules = list(Rule.objects.filter(enabled=True).select_related("watch_list").prefetch_related("sources"))
    lists = list(WatchList.objects.all())
    stamp = (len(lists), max((w.updated_at for w in lists), default=None))
    watch_lists = None
    compiled = []
    for rule in rules:
        cached = _cache.get(rule.pk)
        if cached and cached[0] == (rule.version, rule.updated_at) and cached[1] == stamp:
            compiled.append(cached[2])
            continue
        if watch_lists is None:
            watch_lists = {w.name: w.values() for w in lists}
        try:
            one = compile_rule(rule, watch_lists)
        except conditions.ConditionError:
            log.warning("rule %s does not compile; skipped", rule.pk, exc_info=True)
            continue
        _cache[rule.pk] = ((rule.version, rule.updated_at), stamp, one)
        compiled.append(one)
    return RuleSet(compiled)
