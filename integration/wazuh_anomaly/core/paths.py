"""Where everything lives under a Wazuh manager's install prefix (default /var/ossec).

The paths and modes are written down once, in wazuh_anomaly/data/layout.tsv, which
install.sh reads too (lib/layout.sh), so that the installer, the CLI and the tests
agree; a sandbox prefix mirrors /var/ossec exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PREFIX = "/var/ossec"
PREFIX_ENV = "WAZUH_ANOMALY_PREFIX"
LAYOUT_FILE = Path(__file__).resolve().parent.parent / "data" / "layout.tsv"


@dataclass(frozen=True)
class LayoutEntry:
    """One line of layout.tsv: a path under the prefix, what it is, and its modes."""

    name: str
    path: str            # relative to the prefix
    kind: str            # dir, data, file, log, runtime or manager
    mode: int | None     # None where install.sh sets none (runtime and manager paths)
    realtime_mode: int | None


def _mode(text: str) -> int | None:
    return None if text == "-" else int(text, 8)


def read_layout(path: Path = LAYOUT_FILE) -> dict[str, LayoutEntry]:
    """The entries of layout.tsv by name (a damaged file is a packaging error: it raises)."""
    entries: dict[str, LayoutEntry] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ValueError(f"{path}, line {number}: expected 5 tab-separated fields, found {len(fields)}.")
        name, rel, kind, mode, realtime_mode = fields
        entries[name] = LayoutEntry(name, rel, kind, _mode(mode),
                                    _mode(mode) if realtime_mode == "-" else _mode(realtime_mode))
    return entries


LAYOUT = read_layout()


def _at(prefix: Path, name: str) -> Path:
    return prefix.joinpath(*LAYOUT[name].path.split("/"))


@dataclass(frozen=True)
class Layout:
    """Paths of one installation, all derived from its prefix."""

    prefix: Path

    @classmethod
    def from_env(cls, prefix: str | os.PathLike | None = None) -> "Layout":
        chosen = prefix or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
        return cls(Path(chosen).absolute())

    # configuration: root:wazuh 0640
    @property
    def etc_dir(self) -> Path:
        return _at(self.prefix, "etc_dir")

    @property
    def config_file(self) -> Path:
        return _at(self.prefix, "config_file")

    @property
    def scenarios_dir(self) -> Path:
        return _at(self.prefix, "scenarios_dir")

    @property
    def ossec_conf(self) -> Path:
        return _at(self.prefix, "ossec_conf")

    @property
    def rules_dir(self) -> Path:
        return _at(self.prefix, "rules_dir")

    @property
    def decoders_dir(self) -> Path:
        return _at(self.prefix, "decoders_dir")

    # models and state: root:wazuh, not world-readable
    @property
    def var_dir(self) -> Path:
        return _at(self.prefix, "var_dir")

    @property
    def models_dir(self) -> Path:
        return _at(self.prefix, "models_dir")

    @property
    def state_dir(self) -> Path:
        return _at(self.prefix, "state_dir")

    @property
    def run_lock(self) -> Path:
        return _at(self.prefix, "run_lock")

    # output read by wazuh-logcollector
    @property
    def logs_dir(self) -> Path:
        return _at(self.prefix, "logs_dir")

    @property
    def anomalies_file(self) -> Path:
        return _at(self.prefix, "anomalies_file")

    # the manager's own alerts, the embedded default source
    @property
    def alerts_dir(self) -> Path:
        return _at(self.prefix, "alerts_dir")

    @property
    def alerts_file(self) -> Path:
        return _at(self.prefix, "alerts_file")

    @property
    def logtest_socket(self) -> Path:
        return _at(self.prefix, "logtest_socket")
