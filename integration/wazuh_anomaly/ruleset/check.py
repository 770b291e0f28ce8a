"""`wazuh-anomaly ruleset check`: finds what wazuh-analysisd would reject, warn about or
read differently in our rule files, before a manager restart does.

Each problem names the file, line and rule id and says what to fix. Load order is
Wazuh's: every file of every rule directory, sorted by file name alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..emit.emitter import EVENT_FIELDS
from ..core.eventtext import DEFAULT_FIELD_BYTES, DESCRIPTION_MAX_BYTES, FIELD_BYTES
from ..core.eventtext import RARE_EVENT_FIELDS
from .patterns import PatternError, compile_pcre2, osmatch_problems, osmatch_search, osregex_problems
from .rulefile import Rule, RuleFileError, load_order, read_decoder_names, read_rule_file

# Custom rules must use 100000-120000 (Wazuh documentation, ruleset/custom.html).
CUSTOM_RANGE = (100000, 120000)
# The project's ranges (DESIGN.md): NetFlow, time-series, rare-value, health, response.
PROJECT_RANGES = ((117000, 117399),)
# Rules matched against our event schema (EVENT_FIELDS): time-series, real-time and health.
EVENT_RULE_RANGES = ((117100, 117199), (117200, 117299), (117300, 117349))
# <field name=…> on these is a load error ("Field 'x' is static", rules.c).
STATIC_FIELDS = frozenset({
    "srcip", "dstip", "srcgeoip", "dstgeoip", "srcport", "dstport", "user", "srcuser",
    "dstuser", "url", "id", "data", "extra_data", "status", "protocol", "system_name", "action",
})
# Decoders every 4.x manager ships (ruleset/decoders/0006-json_decoders.xml).
STOCK_DECODERS = frozenset({"json", "json-msgraph"})
RULE_OPTIONS = frozenset({"alert_by_email", "no_email_alert", "log_alert", "no_log", "no_ar",
                          "no_full_log", "no_counter"})
PATTERN_TYPES = frozenset({"osregex", "osmatch", "pcre2"})
MITRE_ID = re.compile(r"^T\d{4}(?:\.\d{3})?$")
DYNAMIC_REF = re.compile(r"\$\(([^)]*)\)")
# Names $(…) resolves without a dynamic field (ParseRuleComment, eventinfo.c).
DESCRIPTION_STATIC = frozenset({"dstuser", "srcuser", "srcip", "dstip", "srcgeoip", "dstgeoip",
                                "srcport", "dstport", "protocol", "action", "id", "url", "data",
                                "status", "extra_data", "system_name", "program_name", "hostname"})


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    rule_id: int | None
    message: str
    severity: str = "error"     # "error": Wazuh rejects or misreads it; "warning": likely a mistake

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        rule = f" rule {self.rule_id}:" if self.rule_id is not None else ""
        return f"{where}: {self.severity}:{rule} {self.message}"


def _in(ranges: Iterable[tuple[int, int]], rid: int) -> bool:
    return any(lo <= rid <= hi for lo, hi in ranges)


def check_ruleset(rules_dirs: Iterable[Path], decoders_dirs: Iterable[Path] = (), *,
                  event_fields: frozenset[str] = EVENT_FIELDS | RARE_EVENT_FIELDS,
                  project_ranges: tuple[tuple[int, int], ...] = PROJECT_RANGES,
                  event_rule_ranges: tuple[tuple[int, int], ...] = EVENT_RULE_RANGES,
                  ours: Callable[[Path], bool] | None = None) -> list[Problem]:
    """Every problem found in the rule files of `rules_dirs`, in load order.

    Every file is loaded (each once), so that parents and duplicate ids are seen as
    analysisd sees them; with `ours`, only the files it accepts are judged (a manager's
    stock local_rules.xml or ruleset/rules files are not ours to fix).
    """
    judged = ours or (lambda _path: True)
    problems: list[Problem] = []
    decoders = set(STOCK_DECODERS)
    for path in load_order(list(decoders_dirs)):
        try:
            decoders.update(name for name, _ in read_decoder_names(path))
        except RuleFileError as exc:
            if judged(path):
                problems.append(Problem(path, 0, None, str(exc)))

    loaded: dict[int, Rule] = {}          # rules already loaded, as analysisd sees them
    for path in load_order(list(rules_dirs)):
        try:
            rf = read_rule_file(path)
        except RuleFileError as exc:
            if judged(path):
                problems.append(Problem(path, 0, None, str(exc)))
            continue
        mine = judged(path)
        if mine:
            problems.extend(_file_problems(rf))
        for rule in rf.rules:
            if mine:
                problems.extend(_rule_problems(rule, loaded, decoders, event_fields,
                                               project_ranges, event_rule_ranges))
            if rule.id in loaded and not rule.overwrite:
                continue  # 7612: only the first occurrence counts
            loaded[rule.id] = rule
    problems.extend(p for p in _escalation_order_problems(loaded) if judged(p.file))
    return problems


def description_worst_bytes(template: str) -> int:
    """Bytes of a rule description expanded with the longest value of each $(field) a
    line of ours can carry (FIELD_BYTES), as ParseRuleComment counts them."""
    fixed = len(DYNAMIC_REF.sub("", template).encode("utf-8"))
    return fixed + sum(FIELD_BYTES.get(ref, DEFAULT_FIELD_BYTES) for ref in DYNAMIC_REF.findall(template))


def _file_problems(rf) -> list[Problem]:
    out = []
    for name, line in rf.root_groups:
        if name.startswith("<"):
            out.append(Problem(rf.path, line, None, f"root element {name} is not allowed; wrap rules in <group name=\"…\">."))
        elif not name:
            out.append(Problem(rf.path, line, None, "<group> without a name attribute; Wazuh refuses the file."))
    # os_xml does not decode entities: "&lt;" would reach the regex as the 4 characters.
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), rf.raw_text, flags=re.S)
    for m in re.finditer(r"&(?:#\d+|#x[0-9a-fA-F]+|\w+);", text):
        line = text.count("\n", 0, m.start()) + 1
        out.append(Problem(rf.path, line, None,
                           f"entity {m.group(0)} is not decoded by Wazuh's XML reader; write the character itself or change the pattern."))
    if "<![CDATA[" in text:
        out.append(Problem(rf.path, 0, None, "CDATA sections are not understood by Wazuh's XML reader; remove them."))
    return out


def _rule_problems(rule: Rule, loaded: dict[int, Rule], decoders: set[str], event_fields: frozenset[str],
                   project_ranges, event_rule_ranges) -> list[Problem]:
    out: list[Problem] = []
    rid = rule.id if rule.id >= 0 else None

    def err(msg: str, line: int | None = None, severity: str = "error") -> None:
        out.append(Problem(rule.file, line or rule.line, rid, msg, severity))

    # ids and levels (getattributes, rules.c)
    if rule.id < 0 or len(rule.raw_id) > 6:
        err(f"id {rule.raw_id!r} is not a number of at most 6 digits; give the rule a numeric id.")
        return out
    if not CUSTOM_RANGE[0] <= rule.id <= CUSTOM_RANGE[1]:
        err(f"id {rule.id} is outside the custom range {CUSTOM_RANGE[0]}-{CUSTOM_RANGE[1]}; stock rules may reuse it.")
    elif project_ranges and not _in(project_ranges, rule.id):
        err(f"id {rule.id} is outside this project's ranges ({_ranges(project_ranges)}); pick an id from those ranges (docs/rules.md).")
    if rule.id in loaded and not rule.overwrite:
        first = loaded[rule.id]
        err(f"duplicate id {rule.id} (first at {first.file.name}:{first.line}); Wazuh keeps only the first (warning 7612). Use a new id.")
    if rule.level < 0 or rule.level > 16:
        err(f"level {rule.raw_level!r} must be a number from 0 to 16.")
    if rule.frequency is not None and not 2 <= rule.frequency <= 9999:
        err(f"frequency {rule.frequency} must be between 2 and 9999.")
    if "frequency" in rule.attrs and rule.frequency is None:
        err(f"frequency {rule.attrs['frequency']!r} must be an integer.")
    if "timeframe" in rule.attrs and (rule.timeframe is None or len(rule.attrs["timeframe"].strip()) > 5):
        err(f"timeframe {rule.attrs['timeframe']!r} must be an integer of at most 5 digits (seconds).")

    # description
    if not rule.description or not rule.description.strip():
        err("no <description>; Wazuh refuses the rule. Write one an analyst understands in the dashboard.")
    else:
        for ref in DYNAMIC_REF.findall(rule.description):
            if _in(event_rule_ranges, rule.id) and ref not in DESCRIPTION_STATIC and ref not in event_fields:
                err(f"description uses $({ref}), which no anomaly event carries; it would expand to nothing.")
        worst = description_worst_bytes(rule.description)
        if _in(project_ranges, rule.id) and worst > DESCRIPTION_MAX_BYTES:
            err(f"description can expand to {worst} bytes with the longest values we write (eventtext.FIELD_BYTES); "
                f"Wazuh shows the raw template from {DESCRIPTION_MAX_BYTES + 1} bytes on. Shorten the text, "
                f"use fewer $(field)s or lower the field's limit.")

    # group string: a missing trailing comma glues the next group name on
    glued = [part for part in rule.group_parts[:-1] if part and not part.endswith(",")]
    if glued or (rule.group and not rule.group.endswith(",")):
        err(f"group string {rule.group!r}: Wazuh glues group names together as written; end each group name with a comma.",
            severity="warning")

    # parents, resolved in load order (OS_AddChild, rules_list.c)
    for sid in rule.if_sid:
        if sid not in loaded:
            err(f"if_sid {sid} is not loaded before this rule (warning 7617); move the parent earlier or into a file whose name sorts first.")
    if rule.if_sid and all(sid not in loaded for sid in rule.if_sid):
        err("no parent of if_sid exists yet, so Wazuh ignores this rule (warning 7619).")
    if rule.if_matched_sid is not None:
        parent = loaded.get(rule.if_matched_sid)
        if parent is None:
            err(f"if_matched_sid {rule.if_matched_sid} is not loaded before this rule (warning 7620).")
        elif parent.level == 0:
            err(f"if_matched_sid {rule.if_matched_sid} has level 0, and level-0 matches are not kept for correlation; give it level 1 with no_log.")
    group_pattern = rule.if_group or (None if rule.if_sid else rule.if_matched_group)
    if group_pattern is not None:
        parents = [r for r in loaded.values() if osmatch_search(group_pattern, r.group) and r.id != rule.id]
        if not parents:
            err(f"if_group/if_matched_group {group_pattern!r} matches no rule loaded before this one (warning 7610).")
        elif rule.if_matched_group and all(p.level == 0 for p in parents):
            err(f"if_matched_group {rule.if_matched_group!r} only matches level-0 rules, which are not kept for correlation.")
    if rule.if_matched_group is not None:
        out.extend(Problem(rule.file, rule.line, rid, f"if_matched_group: {p}", "warning")
                   for p in osmatch_problems(rule.if_matched_group))
    if rule.if_group is not None:
        out.extend(Problem(rule.file, rule.line, rid, f"if_group: {p}", "warning")
                   for p in osmatch_problems(rule.if_group))
    # trust (docs/security.md): a rule without a parent is tried on every event, and any agent
    # or syslog sender can send a JSON line with our fields; only <location> keeps them out.
    root = not (rule.if_sid or rule.if_group or rule.if_matched_sid is not None or rule.if_matched_group)
    if project_ranges and _in(project_ranges, rule.id) and root and rule.location is None:
        err("no parent and no <location>, so a line any agent or syslog sender writes can match it; bind it to our "
            "file on the manager, e.g. <location type=\"pcre2\">^/var/ossec/logs/anomaly/anomalies\\.json$</location>.")
    if project_ranges and _in(project_ranges, rule.id) and rule.location is not None:
        pattern = rule.location.pattern
        if rule.location.negate or not pattern.startswith("^") or not pattern.endswith("$"):
            err(f"<location> {pattern!r} must be anchored (^…$) and not negated, or an agent's location "
                "\"(name) ip->/same/path\" or another file can match it.", rule.location.line)
        if len([t for t in rule.others if t[0] == "location"]) > 1:
            err("more than one <location>: Wazuh glues them into one pattern; write one pattern with alternatives.",
                rule.location.line)
    if rule.decoded_as is not None and rule.decoded_as not in decoders:
        err(f"decoded_as {rule.decoded_as!r} names no known decoder; check the spelling or add the decoder file.")

    # correlation options need if_matched_*
    if (rule.frequency or rule.same_fields or rule.different_fields) and not rule.is_context:
        err("frequency/same_field/different_field without if_matched_sid or if_matched_group; Wazuh refuses the rule.")
    if rule.is_context and rule.frequency is None:
        err("if_matched_* without frequency; add frequency=\"2\" or more.", severity="warning")

    # fields
    own = _in(event_rule_ranges, rule.id)
    for fc in rule.fields:
        if not fc.name:
            err("<field> without a name attribute.", fc.line)
            continue
        if fc.name.lower() in STATIC_FIELDS:
            err(f"<field name=\"{fc.name}\"> is a static field, a load error (\"Field '{fc.name}' is static\"); use <{fc.name}> or a dynamic field.", fc.line)
        elif own and fc.name not in event_fields:
            err(f"<field name=\"{fc.name}\"> is not a field of anomaly events (emitter.EVENT_FIELDS); it never matches.", fc.line)
        if fc.type not in PATTERN_TYPES:
            err(f"<field type=\"{fc.type}\"> is not one of osregex, osmatch, pcre2.", fc.line)
        out.extend(_pattern_problems(rule, fc.type, fc.pattern, fc.line, f"field {fc.name}"))
        if own and fc.type != "pcre2":
            err(f"<field name=\"{fc.name}\"> should use type=\"pcre2\" so the offline simulator and Wazuh agree byte for byte.",
                fc.line, severity="warning")
    for name in rule.same_fields + rule.different_fields:
        if name.lower() in STATIC_FIELDS:
            err(f"same_field/different_field {name!r} is static; use <same_srcip/> and the like instead.")
        elif own and name not in event_fields:
            err(f"same_field/different_field {name!r} is not a field of anomaly events; both events need it.")

    # other pattern elements
    for tag, text, attrs, line in rule.others:
        if tag in ("match", "regex", "program_name", "hostname", "location", "url", "srcip",
                   "user", "id", "status", "action", "extra_data", "system_name", "protocol", "data"):
            default = "osmatch" if tag in ("match", "location", "hostname", "program_name") else "osregex"
            kind = (attrs.get("type") or default).lower()
            if tag in ("srcip", "dstip"):
                continue
            out.extend(_pattern_problems(rule, kind, text, line, tag))
        elif tag in ("if_sid", "if_matched_sid"):
            err(f"<{tag}>{text}</{tag}> must list numeric rule ids.", line)
        elif tag.startswith("mitre/"):
            err(f"<mitre> only takes <id> elements, not <{tag[6:]}>.", line)

    # options and MITRE
    for opt in rule.options:
        if opt not in RULE_OPTIONS:
            err(f"option {opt!r} is not one of {', '.join(sorted(RULE_OPTIONS))}.")
    for mid in rule.mitre:
        if not MITRE_ID.match(mid):
            err(f"MITRE id {mid!r} does not look like T1234 or T1234.001.")
    return out


def _pattern_problems(rule: Rule, kind: str, pattern: str, line: int, what: str) -> list[Problem]:
    out = []
    if pattern != pattern.strip():
        out.append(Problem(rule.file, line, rule.id, f"{what}: pattern has leading or trailing whitespace, which Wazuh matches literally.", "warning"))
    if kind == "pcre2":
        try:
            compile_pcre2(pattern)
        except PatternError as exc:
            out.append(Problem(rule.file, line, rule.id, f"{what}: PCRE2 pattern {pattern!r} does not compile ({exc}); fix the expression."))
    elif kind == "osregex":
        out.extend(Problem(rule.file, line, rule.id, f"{what}: OS_Regex {pattern!r}: {p}.", "warning")
                   for p in osregex_problems(pattern))
    elif kind == "osmatch":
        out.extend(Problem(rule.file, line, rule.id, f"{what}: OS_Match {pattern!r}: {p}.", "warning")
                   for p in osmatch_problems(pattern))
    return out


def _escalation_order_problems(loaded: dict[int, Rule]) -> list[Problem]:
    """if_matched_group only counts rules loaded BEFORE the counting rule (OS_MarkGroup)."""
    out = []
    order = list(loaded.values())
    for pos, rule in enumerate(order):
        if rule.if_matched_group is None:
            continue
        late = [r for r in order[pos + 1:] if osmatch_search(rule.if_matched_group, r.group) and r.level > 0]
        if late:
            ids = ", ".join(str(r.id) for r in late[:8])
            out.append(Problem(rule.file, rule.line, rule.id,
                               f"if_matched_group {rule.if_matched_group!r} also matches rules loaded after it ({ids}); "
                               "Wazuh never counts those. Move this rule after them."))
    return out


def _ranges(ranges) -> str:
    return ", ".join(f"{lo}-{hi}" for lo, hi in ranges)


def format_problems(problems: list[Problem]) -> str:
    """One line per problem and a closing count, as `ruleset check` prints them."""
    lines = [str(p) for p in problems]
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    lines.append(f"{errors} error(s), {warnings} warning(s)" if problems else "ruleset check: no problems found")
    return "\n".join(lines)
