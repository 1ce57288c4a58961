"""Rule conditions: a small path syntax and operators, compiled once into plain Python callables.

A condition is ``{"path": …, "op": …, "value": …, "negate": false}``. Paths start at a root:

- a stored column of the event: ``stream``, ``type``, ``source``, ``munchkin_id``, ``activity_type_id``,
  ``activity_type``, ``lead_id``, ``primary_attribute``, ``campaign_id``, ``campaign_name``,
  ``program_id``, ``program_name``, ``component_type``, ``component_id``, ``action``, ``user``,
  ``user_email``, ``user_numeric``, ``kind``, ``subtype``;
- ``data``: the event's data as Marketo sent it (the CloudEvent's ``data``, or the legacy activity),
  e.g. ``data.eventAction.percent``, ``data.attributes[0].value``, ``data["odd key"]``;
- ``attributes``: a Marketo activity attribute by name, e.g. ``attributes["List ID"]``;
- ``event``: the whole element as delivered.

Operators: ``eq``, ``in`` (one of a list), ``contains`` (substring, case-insensitive, or a list
element), ``matches`` (a regular expression, searched), ``gt``, ``ge``, ``lt``, ``le`` (numbers),
``present``, and ``in_watch_list`` (the value names a watch list). Values compare as numbers when
both sides are numbers (Marketo sends lead ids as strings on one protocol and numbers on the
other), otherwise as text.
"""

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import orjson

COLUMNS = {
    "stream": "stream",
    "type": "type",
    "source": "source_name",
    "munchkin_id": "munchkin_id",
    "activity_type_id": "activity_type_id",
    "activity_type": "activity_type_name",
    "lead_id": "lead_id",
    "primary_attribute": "primary_attribute",
    "campaign_id": "campaign_id",
    "campaign_name": "campaign_name",
    "program_id": "program_id",
    "program_name": "program_name",
    "component_type": "component_type",
    "component_id": "component_id",
    "action": "action",
    "user_email": "user_email",
    "user_numeric": "user_numeric",
    "kind": "kind",
    "subtype": "subtype",
}
ROOTS = (*COLUMNS, "user", "data", "attributes", "event")
OPERATORS = ("eq", "in", "contains", "matches", "gt", "ge", "lt", "le", "present", "in_watch_list")
MAX_PATTERN = 300
_MISSING = object()


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message is shown to the admin."""


@dataclass(frozen=True)
class Condition:
    path: str
    op: str
    value: object = None
    negate: bool = False


class EventView:
    """One stored event as rules see it: the columns, and its JSON parsed only if a rule asks (then once)."""

    __slots__ = ("_attributes", "_data", "_element", "columns", "raw")

    def __init__(self, columns, raw):
        self.columns = columns
        self.raw = raw
        self._element = self._data = self._attributes = None

    @property
    def element(self):
        if self._element is None:
            try:
                self._element = orjson.loads(self.raw)
            except orjson.JSONDecodeError:  # kept exact but not plain JSON (huge integers): see wire.py
                self._element = {}
            if not isinstance(self._element, dict):
                self._element = {}
        return self._element

    @property
    def data(self):
        """The CloudEvent's data for Adobe I/O events; the activity itself for a legacy push."""
        if self._data is None:
            element = self.element
            wrapper = element.get("event")
            inner = element
            if isinstance(wrapper, dict):
                body = wrapper.get("body")
                inner = body if isinstance(body, dict) else wrapper
            data = inner.get("data")
            self._data = data if isinstance(data, dict) else element if "activityTypeId" in element else {}
        return self._data

    def attribute(self, name):
        if self._attributes is None:
            attributes = self.data.get("attributes")
            if isinstance(attributes, list):
                self._attributes = {}
                for item in attributes:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        self._attributes.setdefault(item["name"], item.get("value"))
            else:  # some producers send a plain object
                self._attributes = attributes if isinstance(attributes, dict) else {}
        return self._attributes.get(name, _MISSING)

    def get(self, column):
        return self.columns.get(column)


# --- Paths -------------------------------------------------------------------------------------------

_STEP = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(-?\d+)\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]')
_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_path(path):
    """'data.eventAction["percent"]' → ('data', ['eventAction', 'percent']); ConditionError if not valid."""
    if not isinstance(path, str) or not path.strip():
        raise ConditionError("a condition needs a path")
    path = path.strip()
    root = _ROOT.match(path)
    if not root or root.group() not in ROOTS:
        raise ConditionError(f"a path starts with one of {', '.join(ROOTS)}: {path!r}")
    steps, pos = [], root.end()
    while pos < len(path):
        step = _STEP.match(path, pos)
        if not step:
            raise ConditionError(f"cannot read the path {path!r} at character {pos + 1}")
        name, index, quoted = step.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else re.sub(r"\\(.)", r"\1", quoted))
        pos = step.end()
    root = root.group()
    if root in COLUMNS or root == "user":
        if steps:
            raise ConditionError(f"{root} is a plain value; it has no parts: {path!r}")
    elif root == "attributes" and (len(steps) < 1 or not isinstance(steps[0], str)):
        raise ConditionError('name the attribute: attributes["List ID"]')
    return root, steps


def getter(path):
    """(a function event → the value at ``path``, whether it reads the raw JSON)."""
    root, steps = parse_path(path)
    if root in COLUMNS:
        column = COLUMNS[root]
        return lambda event: event.get(column), False
    if root == "user":
        return lambda event: event.get("user_email") or event.get("user_numeric"), False
    if root == "attributes":
        name, rest = steps[0], steps[1:]
        return lambda event: _walk(event.attribute(name), rest), True
    if root == "data":
        return lambda event: _walk(event.data, steps), True
    return lambda event: _walk(event.element, steps), True


def _walk(value, steps):
    for step in steps:
        if value is _MISSING:
            return _MISSING
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and -len(value) <= step < len(value) else _MISSING
        else:
            value = value.get(step, _MISSING) if isinstance(value, dict) else _MISSING
    return value


# --- Values ------------------------------------------------------------------------------------------


def _number(value):
    if isinstance(value, bool) or value is None or value is _MISSING:
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str) and value.strip():
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _text(value):
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _equals(expected):
    number, text = _number(expected), _text(expected)

    def test(actual):
        if actual is _MISSING or actual is None:
            return expected is None
        if number is not None:
            other = _number(actual)
            if other is not None:
                return other == number
        return _text(actual) == text

    return test


def _one_of(values):
    numbers = {_number(v) for v in values} - {None}
    texts = {_text(v) for v in values}

    def test(actual):
        if actual is _MISSING or actual is None:
            return False
        number = _number(actual)
        if number is not None and number in numbers:
            return True
        return _text(actual) in texts

    return test


def _contains(expected):
    needle, equals = _text(expected).casefold(), _equals(expected)

    def test(actual):
        if isinstance(actual, list):
            return any(equals(item) for item in actual)
        if actual is _MISSING or actual is None:
            return False
        return needle in _text(actual).casefold()

    return test


def _matches(pattern):
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        raise ConditionError(f"a pattern is text of at most {MAX_PATTERN} characters")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConditionError(f"not a valid pattern: {exc}") from exc
    return lambda actual: actual is not _MISSING and actual is not None and compiled.search(_text(actual)) is not None


def _compare(op, expected):
    bound = _number(expected)
    if bound is None:
        raise ConditionError(f"{op} needs a number, not {expected!r}")
    check = {
        "gt": lambda n: n > bound,
        "ge": lambda n: n >= bound,
        "lt": lambda n: n < bound,
        "le": lambda n: n <= bound,
    }[op]

    def test(actual):
        number = _number(actual)
        return number is not None and check(number)

    return test


def _in_watch_list(name, watch_lists):
    if name not in watch_lists:
        raise ConditionError(f"there is no watch list named {name!r}")
    values = watch_lists[name]

    def test(actual):
        if actual is _MISSING or actual is None:
            return False
        items = actual if isinstance(actual, list) else [actual]
        return any(_fold(_text(item)) in values for item in items)

    return test


def _fold(text):
    text = text.strip()
    return text.lower() if "@" in text else text


def _test(condition, watch_lists):
    op, value = condition.op, condition.value
    if op == "eq":
        return _equals(value)
    if op == "in":
        if not isinstance(value, list) or not value:
            raise ConditionError("in needs a non-empty list of values")
        return _one_of(value)
    if op == "contains":
        return _contains(value)
    if op == "matches":
        return _matches(value)
    if op in ("gt", "ge", "lt", "le"):
        return _compare(op, value)
    if op == "present":
        return lambda actual: actual is not _MISSING and actual is not None and actual != ""
    if op == "in_watch_list":
        return _in_watch_list(value, watch_lists)
    raise ConditionError(f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}")


# --- Compiling ---------------------------------------------------------------------------------------


def parse(conditions):
    """The stored JSON list as Conditions; ConditionError on anything malformed."""
    if not isinstance(conditions, list):
        raise ConditionError("conditions are a list")
    parsed = []
    for item in conditions:
        if not isinstance(item, dict) or set(item) - {"path", "op", "value", "negate"}:
            raise ConditionError(f"a condition is an object with path, op, value and negate: {item!r}")
        parsed.append(Condition(item.get("path"), item.get("op"), item.get("value"), bool(item.get("negate"))))
    return parsed


def compile_all(conditions, watch_lists):
    """One predicate for a list of conditions (all must hold), and whether it reads the raw JSON.

    ``watch_lists`` maps a watch list's name to its values (WatchList.values()).
    """
    tests, needs_raw = [], False
    for condition in parse(conditions):
        get, raw = getter(condition.path)
        needs_raw = needs_raw or raw
        check = _test(condition, watch_lists)
        tests.append(_negated(get, check) if condition.negate else _plain(get, check))
    if not tests:
        return (lambda event: True), False
    if len(tests) == 1:
        return tests[0], needs_raw
    return (lambda event: all(t(event) for t in tests)), needs_raw


def _plain(get, check):
    return lambda event: check(get(event))


def _negated(get, check):
    return lambda event: not check(get(event))


def prefilter(conditions):
    """What a rule's conditions pin down, for indexing rules: (streams or None, activity type ids or None)."""
    streams = type_ids = None
    for condition in parse(conditions):
        if condition.negate:
            continue
        values = [condition.value] if condition.op == "eq" else condition.value if condition.op == "in" else None
        if values is None:
            continue
        if condition.path == "stream":
            streams = {str(v) for v in values}
        elif condition.path == "activity_type_id":
            numbers = {_number(v) for v in values}
            if None not in numbers and all(n == int(n) for n in numbers):
                type_ids = {int(n) for n in numbers}
    return streams, type_ids
