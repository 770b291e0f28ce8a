"""`etc/anomaly/realtime.yaml`: the first-seen detectors and rare-event models, as data.

The integration must not import YAML or pydantic on every alert (either costs more than
the whole rest of the run), so the validated configuration (realtime/schema.py, part of
the one configuration schema) is also kept as JSON in `var/anomaly/realtime/config.json`,
tagged with the YAML file's size, mtime and inode; the YAML is parsed and validated again
only when it changed (by the first alert after the change, or any `realtime` command
that reads the configuration). Every error is one sentence naming
the file and the key, all of a file's errors at once.
"""
from __future__ import annotations

import os

from ..core.errors import ConfigError
from ..core import jsonio as fastjson

CACHE_VERSION = 4   # 3: filters in the one filter language (core/filters.py), as condition lists; 4: min_training_events 10


def parse(data, file: str) -> dict:
    """The validated configuration of a parsed realtime.yaml (plain JSON-able dicts);
    the schema is in realtime/schema.py (imported here only: it needs pydantic)."""
    from .schema import parse as parse_with_schema
    return parse_with_schema(data, file)


def load_yaml(path: str) -> dict:
    """Parse and validate realtime.yaml (imports YAML: the slow path)."""
    import yaml
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run install.sh or copy wazuh/etc/anomaly/realtime.yaml there.") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read; give the wazuh group read access (chmod 0640, root:wazuh).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}; fix the syntax.") from None
    except (ValueError, TypeError, RecursionError) as exc:   # e.g. a date YAML resolves that does not exist
        raise ConfigError(f"{path}: cannot be read as YAML ({str(exc)[:120]}); fix the YAML syntax.") from None
    return parse(data, path)


def _signature(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def load(path: str, cache: str | None, *, revalidate: bool = False) -> dict:
    """The configuration, from the JSON cache when it matches the YAML file, else from
    the YAML (and the cache is rewritten for the next run when its directory allows).
    `revalidate` (`realtime validate`): always from the YAML, so the alerts that follow
    find the cache ready and never validate it themselves."""
    try:
        signature = _signature(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run install.sh or copy wazuh/etc/anomaly/realtime.yaml there.") from None
    if cache and not revalidate:
        try:
            cached = fastjson.load_file(cache)
            if cached.get("version") == CACHE_VERSION and cached.get("source") == signature:
                return cached["config"]
        except (OSError, ValueError, AttributeError, KeyError, TypeError):  # damaged: rebuilt from the YAML
            pass
    config = load_yaml(path)
    if cache:
        from ..core.fileio import atomic_write
        from .store import FILE_MODE, ensure_shared_dir
        try:
            ensure_shared_dir(os.path.dirname(cache))
            atomic_write(cache, fastjson.dumps({"version": CACHE_VERSION, "source": signature,
                                                "config": config}).encode(), FILE_MODE)
        except OSError:
            pass  # a read-only state directory only costs the YAML parse next time
    return config
