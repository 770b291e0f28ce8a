"""An offline SIMULATION of how wazuh-analysisd 4.x turns one of our JSON lines into an
alert: JSON decoding, rule tree, correlation and description. It is not Wazuh.

Modelled on the v4.14.7 sources:
- decoding: `json_decoder.c` (numbers to strings, floats "%f", arrays as cJSON text,
  top-level static keys, first duplicate wins in FindField, 256 fields at most);
- rule tree: `rules.c`/`rules_list.c` (rules without a parent hang under the category
  template; siblings ordered by descending level with level 0 first; if_sid adds under
  the first rule with that id, if_group under every rule whose group matches; files
  in file-name order);
- location: `OS_CleanMSG` (an agent's "[id] (name) ip->path" loses its "[id] ", as
  remoted's messages and logtest requests do) and `<location>` in `OS_CheckIfRuleMatch`;
- matching: `OS_CheckIfRuleMatch` (decoded_as, <location>, <field> with pcre2/osregex/osmatch
  and negate, children first, noalert), `Search_LastSids`/`Search_LastGroups` (frequency,
  timeframe against the time the manager receives the event, same_field,
  different_field, the "matched" mark that stops double firing);
- description: `ParseRuleComment` ($(field), 1024-byte cap).
Not modelled: categories other than syslog, <match>/<regex> on the full log beyond
osregex/osmatch basics, lists, geoip, if_level, overwrite, accumulate, FTS.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .patterns import osmatch_search, search
from .rulefile import Rule, load_order, read_rule_file

SIMULATION_NOTE = "simulated by wazuh-anomaly's offline rule engine (not wazuh-analysisd)"
STATIC_KEYS = ("srcip", "dstip", "dstport", "srcport", "protocol", "action", "srcuser",
               "dstuser", "id", "status", "url", "data", "extra_data", "systemname")
DECODER_ORDER_SIZE = 256     # analysisd.decoder_order_size default
DEFAULT_TIMEFRAME = 360      # analysisd.default_timeframe default
LOG_ALERT_LEVEL = 3          # <alerts><log_alert_level> default
STDIN_LOCATION = "stdin"     # wazuh-logtest's location when -l is not given
OS_COMMENT_MAX = 1024
_INT_MAX, _INT_MIN = 2**31 - 1, -(2**31)


# ---------------------------------------------------------------------------
# JSON decoding, as the stock `json` decoder does it


def _cjson_valueint(v: float) -> int:
    if v >= _INT_MAX:
        return _INT_MAX
    if v <= _INT_MIN:
        return _INT_MIN
    return int(v)


def _cjson_number_field(v: float) -> str:
    """A JSON number as the decoder stores it: '%i' when integral, else '%f'."""
    d = float(v)
    vi = _cjson_valueint(d) if math.isfinite(d) else 0
    return f"{vi}" if float(vi) == d else f"{d:f}"


def _cjson_number_print(v: float) -> str:
    d = float(v)
    if not math.isfinite(d):
        return "null"
    vi = _cjson_valueint(d)
    if float(vi) == d:
        return f"{vi}"
    text = "%1.15g" % d
    if abs(float(text) - d) > max(abs(float(text)), abs(d)) * 2.220446049250313e-16:
        text = "%1.17g" % d
    return text


def _cjson_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def cjson_print(value, depth: int = 0) -> str:
    """cJSON_Print (formatted) of a parsed value: how arrays reach a field (best effort)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return _cjson_number_print(value)
    if isinstance(value, str):
        return _cjson_string(value)
    if isinstance(value, list) and not isinstance(value, _Pairs):
        inner = [cjson_print(v, depth + 1) for v in value]
        return "[" + ", ".join(inner) + "]"
    pairs = value if isinstance(value, _Pairs) else list(value.items())
    if not pairs:
        return "{\n" + "\t" * depth + "}"
    lines = ["{\n"]
    for i, (k, v) in enumerate(pairs):
        lines.append("\t" * (depth + 1) + _cjson_string(k) + ":\t" + cjson_print(v, depth + 1))
        lines.append(",\n" if i < len(pairs) - 1 else "\n")
    lines.append("\t" * depth + "}")
    return "".join(lines)


class _Pairs(list):
    """A JSON object as its (key, value) pairs in order, duplicates kept (like cJSON)."""


def _parse_object(text: str):
    decoder = json.JSONDecoder(object_pairs_hook=_Pairs)
    stripped = text.lstrip(" \t\r\n")
    # cJSON_ParseWithOpts without the null-terminator check: text after the object is ignored.
    value, _ = decoder.raw_decode(stripped)
    return value


@dataclass
class DecodedEvent:
    """What analysisd knows about a line after decoding."""

    full_log: str
    decoder: str | None
    fields: list[tuple[str, str]] = field(default_factory=list)   # dynamic, in order
    static: dict[str, str] = field(default_factory=dict)
    dropped_fields: int = 0
    malformed: bool = False

    def find(self, name: str) -> str | None:
        """FindField: first dynamic field of that name, compared case-insensitively."""
        low = name.lower()
        for key, value in self.fields:
            if key.lower() == low:
                return value
        return None

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for k, v in self.fields:
            out.setdefault(k, v)
        return out


def decode(line: str, *, user_alias: bool = True) -> DecodedEvent:
    """Decode one line as the stock decoders would (json-msgraph, then json).

    `user_alias`: a top-level "user" fills dstuser (Wazuh 4.14.1 and later)."""
    ev = DecodedEvent(full_log=line, decoder=None)
    if '"integration":"ms-graph"' in line:
        ev.decoder = "json-msgraph"
    elif line.startswith("{") and line[1:].lstrip(" ").startswith('"'):  # ^{\s*" (\s is a space)
        ev.decoder = "json"
    else:
        return ev
    try:
        obj = _parse_object(line)
    except ValueError:
        ev.malformed = True
        return ev
    if not isinstance(obj, _Pairs):
        ev.malformed = True
        return ev
    _read(obj, None, ev, null_as_string=ev.decoder == "json", user_alias=user_alias)
    return ev


def _fill(ev: DecodedEvent, key: str, value: str, user_alias: bool) -> None:
    if key in STATIC_KEYS:
        ev.static[key] = value
        return
    if key == "user" and user_alias and not ev.static.get("dstuser"):
        ev.static["dstuser"] = value
        return
    if len(ev.fields) >= DECODER_ORDER_SIZE:
        ev.dropped_fields += 1   # "Too many fields for JSON decoder."
        return
    ev.fields.append((key, value))


def _read(pairs: _Pairs, parent: str | None, ev: DecodedEvent, *, null_as_string: bool, user_alias: bool) -> None:
    for name, value in pairs:
        key = f"{parent}.{name}" if parent else name
        if isinstance(value, _Pairs):
            _read(value, key, ev, null_as_string=null_as_string, user_alias=user_alias)
        elif value is True:
            _fill(ev, key, "true", user_alias)
        elif value is False:
            _fill(ev, key, "false", user_alias)
        elif value is None:
            if null_as_string:
                _fill(ev, key, "null", user_alias)
        elif isinstance(value, (int, float)):
            _fill(ev, key, _cjson_number_field(value), user_alias)
        elif isinstance(value, str):
            _fill(ev, key, value, user_alias)
        elif isinstance(value, list):
            _fill(ev, key, cjson_print(value), user_alias)


def event_location(raw: str) -> str:
    """The location rules see for a queue message's location (OS_CleanMSG, cleanevent.c):
    an agent's "[001] (web-01) any->/path" becomes "(web-01) any->/path"; a manager
    file's path, a syslog sender's address or logtest's "stdin" stay as they are."""
    if not raw.startswith("["):
        return raw
    end = raw.find("]")
    if end < 0:
        return raw           # analysisd rejects the message (FORMAT_ERROR)
    return raw[end + 2:] if len(raw) - end > 1 else ""


# ---------------------------------------------------------------------------
# The rule tree


@dataclass
class _Node:
    rule: Rule
    children: list["_Node"] = field(default_factory=list)


def _order_key(rule: Rule) -> int:
    return 9900 if rule.level == 0 else rule.level * 100


def _insert(siblings: list[_Node], rule: Rule) -> None:
    key = _order_key(rule)
    for i, node in enumerate(siblings):
        if key > _order_key(node.rule):
            siblings.insert(i, _Node(rule))
            return
    siblings.append(_Node(rule))


def _walk(nodes: list[_Node]):
    for node in nodes:
        yield node
        yield from _walk(node.children)


@dataclass
class _Stored:
    """An event kept for correlation (Eventinfo in the sid/group lists)."""

    decoded: DecodedEvent
    time: float
    matched: int = 0
    location: str = STDIN_LOCATION


class RuleEngine:
    """Our rule files loaded into Wazuh's tree; `session()` processes events."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = [Path(f) for f in files]
        self.roots: list[_Node] = []
        self.rules: dict[int, Rule] = {}
        self.skipped: list[str] = []
        # correlation: which lists an event matching a rule is added to
        self._sid_lists: dict[int, list[int]] = {}     # rule id -> [context rule ids]
        self._group_lists: dict[int, list[int]] = {}
        for path in self.files:
            for rule in read_rule_file(path).rules:
                self._add(rule)

    @classmethod
    def from_dirs(cls, rules_dirs: Iterable[Path]) -> "RuleEngine":
        return cls(load_order(list(rules_dirs)))

    def _find_first(self, nodes: list[_Node], sid: int) -> _Node | None:
        for node in nodes:
            if node.rule.id == sid:
                return node
            found = self._find_first(node.children, sid)
            if found:
                return found
        return None

    def _add(self, rule: Rule) -> None:
        if rule.id in self.rules:
            self.skipped.append(f"rule {rule.id}: duplicate id, only the first is kept")
            return
        if_group = rule.if_group
        if rule.if_matched_group and not rule.if_sid and not if_group:
            if_group = rule.if_matched_group
        if_sid = list(rule.if_sid)
        if rule.if_matched_sid is not None and not if_sid and not if_group:
            if_sid = [rule.if_matched_sid]
        if if_sid:
            added = False
            for sid in if_sid:
                parent = self._find_first(self.roots, sid)
                if parent is not None:
                    _insert(parent.children, rule)
                    added = True
            if not added:
                self.skipped.append(f"rule {rule.id}: no parent among if_sid {if_sid} is loaded yet")
                return
        elif if_group:
            parents = [n for n in list(_walk(self.roots))
                       if n.rule.id != rule.id and osmatch_search(if_group, n.rule.group)]
            if not parents:
                self.skipped.append(f"rule {rule.id}: if_group {if_group!r} matches no loaded rule")
                return
            for parent in parents:
                _insert(parent.children, rule)
        else:
            _insert(self.roots, rule)
        self.rules[rule.id] = rule
        # OS_MarkID / OS_MarkGroup: only rules loaded so far (including this one) feed it.
        if rule.if_matched_sid is not None:
            for node in _walk(self.roots):
                if node.rule.id == rule.if_matched_sid:
                    self._sid_lists.setdefault(node.rule.id, []).append(rule.id)
        elif rule.if_matched_group is not None:
            for node in _walk(self.roots):
                if osmatch_search(rule.if_matched_group, node.rule.group):
                    self._group_lists.setdefault(node.rule.id, []).append(rule.id)

    def session(self) -> "Session":
        return Session(self)


@dataclass
class SimulatedAlert:
    """What the simulated manager made of one line."""

    rule_id: int | None
    level: int | None
    description: str | None
    groups: list[str]
    mitre: list[str]
    decoder: str | None
    firedtimes: int
    alert: bool                  # level >= log_alert_level, like logtest's "alert"
    fields: dict[str, str]
    static: dict[str, str]
    note: str = SIMULATION_NOTE

    def __str__(self) -> str:
        lines = [f"[{self.note}]"]
        lines.append(f"  decoder: {self.decoder or 'no decoder matched'}")
        if self.rule_id is None:
            lines.append("  rule: none matched")
        else:
            lines.append(f"  rule: {self.rule_id} (level {self.level}) {self.description}")
            lines.append(f"  groups: {', '.join(self.groups)}")
            if self.mitre:
                lines.append(f"  mitre: {', '.join(self.mitre)}")
            if self.static:
                lines.append("  static: " + ", ".join(f"{k}={v}" for k, v in self.static.items()))
            lines.append(f"  alert: {'yes' if self.alert else 'no (below log_alert_level or level 0)'}")
        return "\n".join(lines)


class Session:
    """One logtest-like session: correlation state survives between its events."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine
        self._lists: dict[int, list[_Stored]] = {}
        self._firedtimes: dict[int, int] = {}

    def process(self, line: str, *, now: float | None = None, location: str = STDIN_LOCATION) -> SimulatedAlert:
        """Decode and match one line; `now` is when the manager receives it (epoch s) and
        `location` where it came from, as a logtest request or the queue carries it:
        a manager file's path, "[id] (agent) ip->path" for an agent, the sender's
        address for remote syslog."""
        now = time.time() if now is None else now
        decoded = decode(line)
        me = _Stored(decoded, now, location=event_location(location))
        matched: Rule | None = None
        if decoded.decoder is not None:
            for node in self.engine.roots:
                matched = self._check(node, me)
                if matched is not None:
                    break
            if matched is not None and matched.level > 0:
                self._store(matched, me)
        return self._alert(matched, decoded)

    # -- OS_CheckIfRuleMatch --------------------------------------------------
    def _check(self, node: _Node, me: _Stored) -> Rule | None:
        rule, ev = node.rule, me.decoded
        if rule.decoded_as is not None and rule.decoded_as != ev.decoder:
            return None
        if rule.location is not None and search(rule.location.type, rule.location.pattern,
                                                me.location) == rule.location.negate:
            return None
        for fc in rule.fields:
            value = ev.find(fc.name)
            if value is None:
                return None
            if search(fc.type, fc.pattern, value) == fc.negate:
                return None
        if rule.is_context and not self._search_last(rule, me):
            return None
        for child in node.children:
            found = self._check(child, me)
            if found is not None:
                return found
        if rule.noalert:
            return None
        self._firedtimes[rule.id] = self._firedtimes.get(rule.id, 0) + 1
        return rule

    # -- Search_LastSids / Search_LastGroups ------------------------------------
    def _search_last(self, rule: Rule, me: _Stored) -> bool:
        events = self._lists.get(rule.id, [])
        timeframe = rule.timeframe if rule.timeframe is not None else DEFAULT_TIMEFRAME
        needed = (rule.frequency - 2) if rule.frequency else 0
        count, first = 0, None
        for past in reversed(events):
            if me.time - past.time > timeframe:
                return False
            if rule.same_fields:
                if not me.decoded.fields or not past.decoded.fields:
                    continue
                if not all((mine := me.decoded.find(f)) is not None and past.decoded.find(f) == mine
                           for f in rule.same_fields):
                    continue
            if rule.different_fields:
                if not me.decoded.fields and not past.decoded.fields:
                    continue
                if any((mine := me.decoded.find(f)) is not None and past.decoded.find(f) == mine
                       for f in rule.different_fields):
                    continue
            if past.matched >= rule.level:
                return False
            if count < needed:
                count += 1
                first = first or past
                continue
            me.matched = rule.level
            if first is not None:
                first.matched = rule.level
            return True
        return False

    def _store(self, rule: Rule, me: _Stored) -> None:
        # An event is kept for the counters that watch the rule it finally matched.
        targets = self.engine._sid_lists.get(rule.id) or self.engine._group_lists.get(rule.id) or []
        for context_rule in targets:
            self._lists.setdefault(context_rule, []).append(me)

    def _alert(self, rule: Rule | None, ev: DecodedEvent) -> SimulatedAlert:
        if rule is None:
            return SimulatedAlert(None, None, None, [], [], ev.decoder, 0, False, ev.as_dict(), dict(ev.static))
        return SimulatedAlert(
            rule_id=rule.id,
            level=rule.level,
            description=expand_description(rule.description or "", ev),
            groups=rule.groups,
            mitre=list(rule.mitre),
            decoder=ev.decoder,
            firedtimes=self._firedtimes.get(rule.id, 0),
            alert=rule.level >= LOG_ALERT_LEVEL,
            fields=ev.as_dict(),
            static=dict(ev.static),
        )


_STATIC_REFS = {"dstuser": "dstuser", "srcuser": "srcuser", "srcip": "srcip", "dstip": "dstip",
                "srcport": "srcport", "dstport": "dstport", "protocol": "protocol", "action": "action",
                "id": "id", "url": "url", "data": "data", "status": "status", "extra_data": "extra_data",
                "system_name": "systemname"}


def expand_description(template: str, ev: DecodedEvent) -> str:
    """ParseRuleComment: $(field) replaced; the raw template if the result reaches 1024 bytes."""
    out: list[str] = []
    size = 0
    rest = template.encode("utf-8")[:OS_COMMENT_MAX].decode("utf-8", "ignore")
    while True:
        start = rest.find("$(")
        if start < 0:
            break
        head = rest[:start]
        size += len(head.encode("utf-8"))
        if size >= OS_COMMENT_MAX:
            return template
        out.append(head)
        end = rest.find(")", start + 2)
        if end < 0:
            rest = rest[start:]
            break
        name = rest[start + 2:end]
        if name in _STATIC_REFS:
            value = ev.static.get(_STATIC_REFS[name])
        elif name in ("program_name", "hostname"):
            value = None
        else:
            value = ev.find(name)
        if value is not None:
            size += len(value.encode("utf-8"))
            if size >= OS_COMMENT_MAX:
                return template
            out.append(value)
        rest = rest[end + 1:]
    size += len(rest.encode("utf-8"))
    if size >= OS_COMMENT_MAX:
        return template
    out.append(rest)
    return "".join(out)
