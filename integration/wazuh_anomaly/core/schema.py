"""The machinery of the one configuration schema (pydantic v2), shared by every YAML file.

Each file's shape is declared once, as frozen pydantic dataclasses made with `section`
(core/config.py: config.yaml and the scenarios; netflow/settings.py: netflow.yaml;
realtime/schema.py: realtime.yaml). A key is one line there: its type, default, bounds
and `doc(...)` description, from which docs/configuration.md is generated
(scripts/gen-config-docs.py). `validate` checks a whole file at once and turns every
problem into one sentence naming the file, the dotted key and what to write instead;
all sentences of a file come together in one ConfigError.

Names that other layers define (aggregations, detectors, sources) are checked against
their registries (core/registry.py) in core/config.py.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import PydanticCustomError

from .errors import ConfigError

# Scalars are strict, as a user means them: "5" is not a number, 1 is not true, 7 is not text.
# (A whole number is accepted where a number is asked for.)
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]

# defer_build: a section's validator is built when first used, not at import (start time of every command)
SECTION_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True, defer_build=True)
DOCS_HINT = "check its spelling against docs/configuration.md"


def doc(description: str, default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A key's default, bounds (gt, ge, le, lt) and the sentence the docs show for it."""
    extra = {"description": description}
    if default is dataclasses.MISSING:
        return Field(**extra, **bounds)
    return Field(default, **extra, **bounds)


def problem(message: str, *, key: str = "") -> PydanticCustomError:
    """A validator's complaint, worded as the end of a sentence ("must be 'up' or
    'both'"); `validate` puts the file and the dotted key in front. A section's own check
    names the `key` inside the section it is about; "{at}" in the message stands for the
    section's dotted path (to name a sibling key)."""
    return PydanticCustomError("wazuh_anomaly", "{message}", {"message": message, "key": key})


def _drop_nulls(data: Any) -> Any:
    # `key:` with no value (YAML null) means the default, as if the key were left out.
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if v is not None}
    return data


def section(cls: type) -> type:
    """A frozen pydantic dataclass that forbids unknown keys and reads null as the default."""
    def drop_nulls(_cls: type, data: Any) -> Any:
        return _drop_nulls(data)
    cls._drop_nulls = model_validator(mode="before")(classmethod(drop_nulls))
    return _pydantic_dataclass(frozen=True, config=SECTION_CONFIG)(cls)


# --------------------------------------------------------------------------- reading files

ABSENT = object()


def read_yaml_file(path: Any, *, missing_ok: bool = False) -> Any:
    """The parsed YAML of a file (ABSENT when it is missing and that is allowed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        if missing_ok:
            return ABSENT
        raise ConfigError(f"{path}: file not found; run install.sh or pass --config.") from None
    except OSError as exc:  # permissions, a directory, a symlink loop
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); run as root or fix its permissions.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem_text = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem_text}{where}; fix the YAML syntax.") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a date YAML resolves that does not exist
        raise ConfigError(f"{path}: cannot be read as YAML ({str(exc)[:120]}); fix the YAML syntax.") from None


# --------------------------------------------------------------------------- validation

_ADAPTERS: dict[Any, TypeAdapter] = {}


def adapter(cls: Any) -> TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = TypeAdapter(cls)
    return _ADAPTERS[cls]


def internal_keys(cls: Any) -> set[str]:
    """Keys of a section set by the program (the file a scenario came from), never by a file."""
    return {name for name, info in schema_fields(cls).items()
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("internal")}


def validate(cls: Any, data: Any, file: Any, *, internal: dict | None = None) -> Any:
    """`data` (parsed YAML) as a `cls`; every problem of the file in one ConfigError.
    `internal` gives the values of the keys the program sets itself."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        keys = ", ".join(sorted(set(schema_fields(cls)) - internal_keys(cls)))
        raise ConfigError(f"{file}: the top level must be a mapping of keys to values ({keys}).")
    sentences = [printable(f"{file}: key '{k}' is not a known setting ({DOCS_HINT}).")
                 for k in data if k in internal_keys(cls)]
    data = {**{k: v for k, v in data.items() if k not in internal_keys(cls)}, **(internal or {})}
    try:
        value = adapter(cls).validate_python(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a mapping key that is refused: what its value holds is not reported on top
        bad_keys = [tuple(e["loc"][:-1]) for e in errors if e["loc"] and e["loc"][-1] == "[key]"]
        for error in errors:
            loc = tuple(error["loc"])
            if any(len(loc) > len(k) and loc[:len(k)] == k and loc[len(k)] != "[key]" for k in bad_keys):
                continue
            sentence = explain(cls, error, file)
            if sentence not in sentences:
                sentences.append(sentence)
    except RecursionError:
        sentences.append(f"{file}: is nested too deeply; write a plain mapping of settings.")
    if sentences:
        raise ConfigError("\n".join(sentences), problems=sentences) from None
    return value


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_KINDS = {
    "string_type": "text", "int_type": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "bool_type": "true or false",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list", "frozen_set_type": "a list",
    "dict_type": "a mapping", "dataclass_type": "a mapping", "model_type": "a mapping",
    "literal_error": None,
}


def explain(root: Any, error: dict, file: Any) -> str:
    """One pydantic error as one sentence: `<file>: key '<dotted key>' <what to do>.`"""
    raw = tuple(error["loc"])
    # a mapping key that YAML read as a number (5401:) is a key, not a list position
    loc = tuple(str(p) if i + 1 < len(raw) and raw[i + 1] == "[key]" else p
                for i, p in enumerate(raw) if p != "[key]")
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "wazuh_anomaly":
        at = dotted(loc) + "." if loc else ""
        what = ctx["message"].replace("{at}", at)
        if ctx.get("key"):
            loc = loc + (ctx["key"],)
    elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = known_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
        hint = f"did you mean '{dotted(loc[:-1] + (close[0],))}'?" if close else DOCS_HINT
        what = f"is not a known setting ({hint})"
    elif kind in ("missing", "missing_keyword_argument", "missing_argument"):
        what = "is required"
    elif kind == "literal_error":
        what = f"must be one of {ctx.get('expected', '').replace(' or ', ', ')}, not {_short(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = ctx.get("gt", ctx.get("ge", ctx.get("lt", ctx.get("le"))))
        words = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "below", "less_than_equal": "at most"}[kind]
        if bound == 0 and kind == "greater_than":
            words, bound = "more than zero", ""
        elif bound == 0 and kind == "greater_than_equal":
            words, bound = "zero or more", ""
        what = f"must be {words}{' ' if bound != '' else ''}{bound}, not {_short(value)}"
    elif kind in ("too_short", "too_long"):
        what = f"must hold {'at least' if kind == 'too_short' else 'at most'} " \
               f"{ctx.get('min_length', ctx.get('max_length'))} item(s)"
    elif kind in _KINDS:
        what = f"must be {_KINDS[kind]}, not {_short(value)}"
    else:  # anything else pydantic finds: its own words, never a traceback
        what = str(error.get("msg", "is not valid")).rstrip(".")
        what = what[:1].lower() + what[1:]
    if not loc:
        return printable(f"{file}: {what.rstrip('.')}.")
    return printable(f"{file}: key '{dotted(loc)}' {what.rstrip('.')}.")


def printable(text: str) -> str:
    """A sentence stays one line: a key or value holding a newline or a control
    character shows it escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --------------------------------------------------------------------------- walking the schema

def unwrap(annotation: Any) -> Any:
    """The type under Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def schema_fields(cls: Any) -> dict:
    """name -> pydantic FieldInfo of a section (empty for anything else)."""
    return dict(getattr(cls, "__pydantic_fields__", {}) or {})


def known_keys(root: Any, loc: tuple) -> list[str]:
    """The keys allowed at `loc` (a dotted path into the file) of the schema `root`."""
    node = root
    for part in loc:
        node = unwrap(node)
        fields = schema_fields(node)
        if fields:
            if part not in fields:
                return []
            node = fields[part].annotation
            continue
        origin = typing.get_origin(node)
        args = typing.get_args(node)
        if origin in (tuple, list) and args:
            node = args[0]
        elif origin is dict and len(args) == 2:
            node = args[1]
        else:
            return []
    return list(schema_fields(unwrap(node)))
