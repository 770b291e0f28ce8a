"""Where everything lives under a Wazuh manager's install prefix (default /var/ossec).

One place for the layout of DESIGN.md, so that the installer, the CLI and the tests
agree; a sandbox prefix mirrors /var/ossec exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PREFIX = "/var/ossec"
PREFIX_ENV = "WAZUH_ANOMALY_PREFIX"


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
        return self.prefix / "etc" / "anomaly"

    @property
    def config_file(self) -> Path:
        return self.etc_dir / "config.yaml"

    @property
    def scenarios_dir(self) -> Path:
        return self.etc_dir / "scenarios"

    @property
    def ossec_conf(self) -> Path:
        return self.prefix / "etc" / "ossec.conf"

    @property
    def rules_dir(self) -> Path:
        return self.prefix / "etc" / "rules"

    @property
    def decoders_dir(self) -> Path:
        return self.prefix / "etc" / "decoders"

    # models and state: root:wazuh, not world-readable
    @property
    def var_dir(self) -> Path:
        return self.prefix / "var" / "anomaly"

    @property
    def models_dir(self) -> Path:
        return self.var_dir / "models"

    @property
    def state_dir(self) -> Path:
        return self.var_dir / "state"

    @property
    def run_lock(self) -> Path:
        return self.var_dir / "run.lock"

    # output read by wazuh-logcollector
    @property
    def logs_dir(self) -> Path:
        return self.prefix / "logs" / "anomaly"

    @property
    def anomalies_file(self) -> Path:
        return self.logs_dir / "anomalies.json"

    # the manager's own alerts, the embedded default source
    @property
    def alerts_dir(self) -> Path:
        return self.prefix / "logs" / "alerts"

    @property
    def alerts_file(self) -> Path:
        return self.alerts_dir / "alerts.json"

    @property
    def logtest_socket(self) -> Path:
        return self.prefix / "queue" / "sockets" / "logtest"
