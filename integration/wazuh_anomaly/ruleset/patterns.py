"""The three pattern languages of Wazuh rules: PCRE2, OS_Regex and OS_Match.

PCRE2 runs on the real library (PyPI `pcre2`), compiled on bytes with no options, as
`w_expression_compile` does (`src/shared/expression.c`): byte-wise, case-sensitive.
OS_Regex and OS_Match are Wazuh's own small languages; they are validated and
translated here on a best-effort basis (syntax from the Wazuh/OSSEC regex reference).
"""
from __future__ import annotations

import re
from functools import lru_cache

import pcre2

# OS_Regex escapes: classes, plus escaped specials.
_OSREGEX_CLASSES = {
    "w": r"[A-Za-z0-9@_\-]",
    "W": r"[^A-Za-z0-9@_\-]",
    "d": r"[0-9]",
    "D": r"[^0-9]",
    "s": r" ",
    "S": r"[^ ]",
    "t": r"\t",
    "p": r"[()*+,\-.:;<=>?\[\]!\"'#$%&|{}]",
    ".": r"[\s\S]",
}
_OSREGEX_ESCAPED = {"$": r"\$", "(": r"\(", ")": r"\)", "\\": r"\\\\", "|": r"\|", "<": "<", ">": ">"}


class PatternError(ValueError):
    """A pattern Wazuh would reject or read differently than its author meant."""


@lru_cache(maxsize=1024)
def compile_pcre2(pattern: str):
    """The compiled PCRE2 pattern (bytes mode, no options), or PatternError."""
    try:
        return pcre2.compile(pattern.encode("utf-8"))
    except pcre2.PatternError as exc:  # the library's own message names the position
        raise PatternError(str(exc)) from exc


def pcre2_search(pattern: str, subject: str) -> bool:
    return compile_pcre2(pattern).search(subject.encode("utf-8")) is not None


def osregex_problems(pattern: str) -> list[str]:
    """Constructs OS_Regex does not support or reads differently (best effort)."""
    problems: list[str] = []
    i, depth, prev_class = 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
            if nxt in _OSREGEX_CLASSES:
                prev_class = True
            elif nxt in _OSREGEX_ESCAPED:
                prev_class = False
            else:
                problems.append(f"'\\{nxt}' is not an OS_Regex escape (use \\w \\W \\d \\D \\s \\S \\t \\p \\. or type=\"pcre2\")")
                prev_class = False
            i += 2
            continue
        if c in "+*":
            if not prev_class:
                problems.append(f"'{c}' at position {i} repeats a literal; OS_Regex only repeats a \\w-style class")
            prev_class = False
        elif c in "[]{}?":
            problems.append(f"'{c}' at position {i} is a literal in OS_Regex, not a PCRE construct (use type=\"pcre2\")")
            prev_class = False
        elif c == "(":
            depth += 1
            prev_class = False
        elif c == ")":
            depth -= 1
            if depth < 0:
                problems.append(f"unbalanced ')' at position {i}")
                depth = 0
            prev_class = False
        else:
            prev_class = False
        i += 1
    if depth > 0:
        problems.append("unbalanced '(': OS_Regex needs every group closed")
    return problems


def osmatch_problems(pattern: str) -> list[str]:
    """Regex-looking text in an OS_Match pattern, which matches it literally."""
    problems = []
    for token in ("\\w", "\\d", "\\s", ".*", ".+", "[", "(?", "\\."):
        if token in pattern:
            problems.append(f"'{token}' is matched literally by OS_Match (use type=\"pcre2\" for a regular expression)")
    return problems


@lru_cache(maxsize=1024)
def _osregex_to_python(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(_OSREGEX_CLASSES.get(nxt) or _OSREGEX_ESCAPED.get(nxt) or re.escape(nxt))
            i += 2
            continue
        if c in "^$|()+*":
            out.append(c)
        else:
            out.append(re.escape(c))
        i += 1
    # OS_Regex is case-insensitive unless compiled with OS_CASE_SENSITIVE.
    return re.compile("".join(out), re.IGNORECASE)


def osregex_search(pattern: str, subject: str) -> bool:
    return _osregex_to_python(pattern).search(subject) is not None


def osmatch_search(pattern: str, subject: str) -> bool:
    """OS_Match: '|' alternatives of literal text, '^'/'$' anchors, case-insensitive."""
    text = subject.lower()
    for alt in pattern.lower().split("|"):
        if not alt:
            continue
        start, end = alt.startswith("^"), alt.endswith("$") and not alt.endswith("\\$")
        core = alt[1 if start else 0: -1 if end else None]
        if start and end and text == core:
            return True
        if start and not end and text.startswith(core):
            return True
        if end and not start and text.endswith(core):
            return True
        if not start and not end and core in text:
            return True
    return False


def search(kind: str, pattern: str, subject: str) -> bool:
    if kind == "pcre2":
        return pcre2_search(pattern, subject)
    if kind == "osmatch":
        return osmatch_search(pattern, subject)
    return osregex_search(pattern, subject)
