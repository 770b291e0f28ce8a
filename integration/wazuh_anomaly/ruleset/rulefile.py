"""Reading Wazuh 4.x rule files the way wazuh-analysisd does, into plain values.

Rule files are not single-rooted XML documents (several <group> roots, comments), so
each file is wrapped in a synthetic root before lxml parses it, keeping line numbers.
Files from all rule directories load in the order of their FILE NAME alone
(`src/config/rules-config.c`), which decides whether a parent exists yet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from ..core.errors import WazuhAnomalyError


class RuleFileError(WazuhAnomalyError):
    """A rule or decoder file cannot be read or is not well-formed XML."""


@dataclass(frozen=True)
class FieldCondition:
    """A `<field name=… type=… negate=…>pattern</field>`."""

    name: str
    pattern: str
    type: str          # "osregex" (Wazuh's default), "osmatch" or "pcre2"
    negate: bool
    line: int


@dataclass
class Rule:
    """One `<rule>` with what the checker and the simulator need."""

    id: int
    level: int
    file: Path
    line: int
    group: str                      # Wazuh's group string: <group name> + <group> texts
    attrs: dict[str, str]
    frequency: int | None = None
    timeframe: int | None = None
    if_sid: list[int] = field(default_factory=list)
    if_group: str | None = None
    if_level: str | None = None
    if_matched_sid: int | None = None
    if_matched_group: str | None = None
    decoded_as: str | None = None
    # <location>: where the event came from (OS_Match unless type= says otherwise);
    # several <location> elements are glued into one pattern, as loadmemory does.
    location: FieldCondition | None = None
    fields: list[FieldCondition] = field(default_factory=list)
    same_fields: list[str] = field(default_factory=list)
    different_fields: list[str] = field(default_factory=list)
    description: str | None = None
    mitre: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    noalert: bool = False
    overwrite: bool = False
    # other child elements (tag, text, attributes, line) for checks
    others: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)
    raw_id: str = ""
    raw_level: str = ""
    group_parts: list[str] = field(default_factory=list)   # the pieces `group` is glued from

    @property
    def groups(self) -> list[str]:
        return [g for g in self.group.split(",") if g]

    @property
    def is_context(self) -> bool:
        return self.if_matched_sid is not None or self.if_matched_group is not None


@dataclass
class RuleFile:
    path: Path
    rules: list[Rule]
    root_groups: list[tuple[str, int]]   # (<group name>, line) of every root element
    raw_text: str


_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def parse_xml_fragment(path: Path) -> tuple[etree._Element, str]:
    """The file's top-level elements under one synthetic root, and its raw text."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read the file ({exc.strerror}); check the path and its permissions.") from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8.") from exc
    body = _DECL.sub(lambda m: " " * len(m.group(0).split("\n")[0]) + "\n" * m.group(0).count("\n"), text)
    # Same line: the wrapper adds no newline, so lxml's line numbers are the file's.
    wrapped = "<wazuh_file>" + body + "</wazuh_file>"
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(wrapped.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno or 0
        raise RuleFileError(f"{path}:{line}: not well-formed XML ({exc.msg}); fix the markup at that line.") from exc
    return root, text


def _text(el: etree._Element) -> str:
    return (el.text or "").strip()


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def read_rule_file(path: Path) -> RuleFile:
    """All rules of one file, in file order."""
    root, text = parse_xml_fragment(path)
    rules: list[Rule] = []
    root_groups: list[tuple[str, int]] = []
    for top in root:
        if not isinstance(top.tag, str):
            continue  # comment or processing instruction
        root_groups.append((top.get("name", "") if top.tag == "group" else f"<{top.tag}>", top.sourceline or 0))
        if top.tag != "group":
            continue
        gname = top.get("name", "")
        for el in top:
            if not isinstance(el.tag, str) or el.tag != "rule":
                continue
            rules.append(_read_rule(el, gname, Path(path)))
    return RuleFile(Path(path), rules, root_groups, text)


def _read_rule(el: etree._Element, group_name: str, path: Path) -> Rule:
    attrs = {k: v for k, v in el.attrib.items()}
    raw_id = attrs.get("id", "")
    raw_level = attrs.get("level", "")
    rule = Rule(
        id=_int_or_none(raw_id) or -1,
        level=_int_or_none(raw_level) if _int_or_none(raw_level) is not None else -1,
        file=path,
        line=el.sourceline or 0,
        group=group_name,
        attrs=attrs,
        frequency=_int_or_none(attrs.get("frequency")),
        timeframe=_int_or_none(attrs.get("timeframe")),
        noalert=attrs.get("noalert", "0").strip() == "1",
        overwrite=attrs.get("overwrite", "no").strip().lower() == "yes",
        raw_id=raw_id,
        raw_level=raw_level,
        group_parts=[group_name],
    )
    for child in el:
        if not isinstance(child.tag, str):
            continue
        tag, value, line = child.tag, _text(child), child.sourceline or 0
        if tag == "if_sid":
            rule.if_sid.extend(int(x) for x in re.split(r"[,\s]+", value) if x.isdigit())
            if any(not x.isdigit() for x in re.split(r"[,\s]+", value) if x):
                rule.others.append((tag, value, dict(child.attrib), line))
        elif tag == "if_group":
            rule.if_group = value
        elif tag == "if_level":
            rule.if_level = value
        elif tag == "if_matched_sid":
            rule.if_matched_sid = _int_or_none(value)
            if rule.if_matched_sid is None:
                rule.others.append((tag, value, dict(child.attrib), line))
        elif tag == "if_matched_group":
            rule.if_matched_group = value
        elif tag == "decoded_as":
            rule.decoded_as = value
        elif tag == "location":
            text = child.text or ""
            if rule.location is not None:
                text = rule.location.pattern + text
            rule.location = FieldCondition(
                name="location",
                pattern=text,
                type=(child.get("type") or "osmatch").strip().lower(),
                negate=(child.get("negate") or "no").strip().lower() == "yes",
                line=line,
            )
            rule.others.append((tag, child.text or "", dict(child.attrib), line))   # the checker reads it there
        elif tag == "field":
            rule.fields.append(FieldCondition(
                name=child.get("name", ""),
                pattern=child.text or "",
                type=(child.get("type") or "osregex").strip().lower(),
                negate=(child.get("negate") or "no").strip().lower() == "yes",
                line=line,
            ))
        elif tag == "same_field":
            rule.same_fields.append(value)
        elif tag in ("different_field", "not_same_field"):
            rule.different_fields.append(value)
        elif tag == "description":
            # Wazuh keeps the first newline as a space and concatenates repeats.
            rule.description = (rule.description or "") + (child.text or "").replace("\n", " ", 1)
        elif tag == "group":
            # Concatenated as is: a missing trailing comma glues two group names together.
            rule.group += (child.text or "").replace("\n", "")
            rule.group_parts.append((child.text or "").replace("\n", ""))
        elif tag == "mitre":
            rule.mitre.extend(_text(i) for i in child if isinstance(i.tag, str) and i.tag == "id")
            rule.others.extend((f"mitre/{i.tag}", _text(i), dict(i.attrib), i.sourceline or 0)
                               for i in child if isinstance(i.tag, str) and i.tag != "id")
        elif tag == "options":
            rule.options.extend(o.strip() for o in value.split(",") if o.strip())
        else:
            rule.others.append((tag, child.text or "", dict(child.attrib), line))
    return rule


def load_order(dirs: list[Path], pattern: str = r"\.xml$") -> list[Path]:
    """Rule (or decoder) files of all directories, sorted by file name alone."""
    found: dict[Path, Path] = {}
    rx = re.compile(pattern)
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.is_file() and rx.search(p.name):
                # A directory named twice (or through a symlink) still gives each file once.
                found.setdefault(p.resolve(), p)
    return sorted(found.values(), key=lambda p: (p.name.encode("utf-8"), str(p)))


def read_decoder_names(path: Path) -> list[tuple[str, int]]:
    """(name, line) of every <decoder> in a decoder file."""
    root, _ = parse_xml_fragment(path)
    return [(el.get("name", ""), el.sourceline or 0)
            for el in root if isinstance(el.tag, str) and el.tag == "decoder"]
