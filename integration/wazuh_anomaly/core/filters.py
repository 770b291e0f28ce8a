"""The one filter language of scenarios and real-time detectors, and its compiler.

A filter maps alert fields to conditions, and every condition must hold:

    filter:
      rule.groups: [authentication_failed, invalid_login]   # any of these values
      level: {min: 7}                                       # shorthand for rule.level
      data.url: {prefix: /wp-, regex: '\\.php$'}
      data.srcip: {exists: true, not: [10.0.0.1]}
      data.audit.exe: {not_prefix: [/usr/lib/]}

A value or a list matches any of those values (a list field such as rule.groups matches
on any element; JSON true/false compare as "true"/"false"); a mapping takes `min`/`max`
(numbers, or text holding one), `prefix`, `regex` (searched), `exists: true|false`,
`not: [values]` and `not_prefix: [prefixes]`. Shorthands: groups = rule.groups, rule_id
= rule.id, level = rule.level, decoder = decoder.name, agent = agent.name.

The schema (core/config.py) validates a filter into `Condition`s; `compile_filter` turns
them into one predicate on an alert dict. Standard library only (`re` only for a
filter with a regex): the per-alert real-time process compiles its filters with it.
"""
from __future__ import annotations

import math

# Shorthand filter keys and the alert field each one reads.
FILTER_SHORTHANDS = {
    "groups": "rule.groups",
    "rule_id": "rule.id",
    "level": "rule.level",
    "decoder": "decoder.name",
    "agent": "agent.name",
}
CONDITION_KEYS = ("exists", "max", "min", "not", "not_prefix", "prefix", "regex")
_SLOTS = ("field", "equals", "not_in", "min", "max", "prefix", "regex", "exists", "not_prefix")
_MISSING = object()


class Condition:
    """One test on one alert field; every part that is set must hold. A value object
    (compared and hashed by its parts); `as_dict`/`from_dict` for JSON."""

    __slots__ = _SLOTS

    def __init__(self, field: str, equals: tuple = (), not_in: tuple = (), min: float | None = None,
                 max: float | None = None, prefix: str | None = None, regex: str | None = None,
                 exists: bool | None = None, not_prefix: tuple = ()):
        set_ = object.__setattr__
        set_(self, "field", field)
        set_(self, "equals", tuple(equals))         # any of these (for list fields: any element)
        set_(self, "not_in", tuple(not_in))         # none of these
        set_(self, "min", min)
        set_(self, "max", max)
        set_(self, "prefix", prefix)
        set_(self, "regex", regex)
        set_(self, "exists", exists)
        set_(self, "not_prefix", tuple(not_prefix))  # no value starts with one of these

    def __setattr__(self, name, value):
        raise AttributeError(f"Condition is immutable (cannot set {name})")

    def _parts(self) -> tuple:
        return tuple(getattr(self, s) for s in _SLOTS)

    def __eq__(self, other) -> bool:
        return type(other) is Condition and self._parts() == other._parts()

    def __hash__(self) -> int:
        return hash(self._parts())

    def __repr__(self) -> str:
        defaults = ("", (), (), None, None, None, None, None, ())
        shown = [repr(self.field)] + [f"{s}={getattr(self, s)!r}" for s, d in zip(_SLOTS[1:], defaults[1:])
                                      if getattr(self, s) != d]
        return f"Condition({', '.join(shown)})"

    def as_dict(self) -> dict:
        return {s: list(v) if isinstance(v, tuple) else v for s in _SLOTS if (v := getattr(self, s)) not in ((), None)}

    @classmethod
    def from_dict(cls, data: dict) -> "Condition":
        return cls(**data)


# --------------------------------------------------------------------------- reading alert fields

def field_getter(dotted: str):
    """A fast accessor for a dotted alert field ('data.srcip'); None when absent."""
    parts = dotted.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda alert: alert.get(key)
    if len(parts) == 2:
        a, b = parts

        def get2(alert: dict):
            inner = alert.get(a)
            return inner.get(b) if isinstance(inner, dict) else None
        return get2

    def get(alert: dict):
        value = alert
        for part in parts:
            if not isinstance(value, dict):
                return None
            value = value.get(part, _MISSING)
            if value is _MISSING:
                return None
        return value
    return get


def as_text(value) -> str:
    """A JSON scalar as text; true/false as Wazuh's decoder writes them, not as Python's."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_strings(value) -> list[str]:
    """Every scalar of a field as text: [] when absent, several for a list field."""
    if value is None:
        return []
    if isinstance(value, list):
        return [as_text(v) for v in value if v is not None and not isinstance(v, (dict, list))]
    if isinstance(value, dict):
        return []
    return [as_text(value)]


def as_number(value) -> float | None:
    """A finite number from a JSON value (a number, or a string holding one); None else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):   # "abc", an integer past a double
            return None
        return number if math.isfinite(number) else None
    return None


def disjoint(wanted: frozenset, values: list) -> bool:
    """No string of a list field is wanted; an object or a list inside the list (JSON
    allows it) is never a match instead of a TypeError for the whole run."""
    try:
        return wanted.isdisjoint(values)
    except TypeError:
        return not any(type(v) is str and v in wanted for v in values)


def any_of_slow(values: list, equals: frozenset) -> bool:
    """Non-string elements of a list field (numbers, booleans) compared as Wazuh writes them."""
    return any(type(v) is not str and v is not None and not isinstance(v, (dict, list))
               and as_text(v) in equals for v in values)


# --------------------------------------------------------------------------- the compiler

def _any_of(get, equals: frozenset):
    """The common case on the hot path: the field equals one of the values (for a list
    field, one of its elements does); strings are compared without conversion."""
    def test(alert: dict) -> bool:
        value = get(alert)
        kind = type(value)
        if kind is str:
            return value in equals
        if kind is list:
            return not disjoint(equals, value) or any_of_slow(value, equals)
        if value is None or kind is dict:
            return False
        return as_text(value) in equals
    return test


def _in_range(get, lo: float, hi: float):
    def test(alert: dict) -> bool:
        value = get(alert)
        if type(value) is int or type(value) is float:
            return lo <= value <= hi
        number = as_number(value)
        return number is not None and lo <= number <= hi
    return test


def compile_condition(cond: Condition):
    """One condition as a predicate on an alert dict."""
    get = field_getter(cond.field)
    plain = cond.exists is None and not cond.not_in and cond.prefix is None and cond.regex is None \
        and not cond.not_prefix
    if plain and cond.equals and cond.min is None and cond.max is None:
        return _any_of(get, frozenset(cond.equals))
    if plain and not cond.equals and (cond.min is not None or cond.max is not None):
        return _in_range(get, -math.inf if cond.min is None else cond.min,
                         math.inf if cond.max is None else cond.max)
    equals = frozenset(cond.equals)
    not_in = frozenset(cond.not_in)
    not_prefix = tuple(cond.not_prefix)
    if cond.regex:
        import re  # only for a filter that has a regex
        pattern = re.compile(cond.regex)
    else:
        pattern = None
    numeric = cond.min is not None or cond.max is not None
    lo = -math.inf if cond.min is None else cond.min
    hi = math.inf if cond.max is None else cond.max
    exists, prefix = cond.exists, cond.prefix
    # an absent field passes a condition that only excludes values
    only_excludes = not equals and not numeric and not prefix and pattern is None \
        and bool(not_in or not_prefix)

    def test(alert: dict) -> bool:
        value = get(alert)
        if exists is not None and (value is not None) != exists:
            return False
        if value is None:
            return exists is False or only_excludes
        values = as_strings(value)
        if equals and equals.isdisjoint(values):
            return False
        if not_in and not not_in.isdisjoint(values):
            return False
        if not_prefix and any(v.startswith(p) for v in values for p in not_prefix):
            return False
        if prefix is not None and not any(v.startswith(prefix) for v in values):
            return False
        if pattern is not None and not any(pattern.search(v) for v in values):
            return False
        if numeric:
            number = as_number(value)
            if number is None or not lo <= number <= hi:
                return False
        return True
    return test


def compile_filter(conditions):
    """Every condition of a filter as one predicate (no condition: everything passes)."""
    tests = [compile_condition(c) for c in conditions]
    if not tests:
        return lambda alert: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda alert: first(alert) and second(alert)

    def every(alert: dict) -> bool:
        for test in tests:
            if not test(alert):
                return False
        return True
    return every
