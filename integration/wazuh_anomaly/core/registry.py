"""Registries: the detectors, aggregations and sources a scenario can name.

Each kind has one `Registry`. An implementation registers itself under its name with a
decorator in its own module:

    from ..core.registry import DETECTORS

    @DETECTORS.register("silence")
    class SilenceDetector: ...

and a scenario names it (`detectors: [silence]`, `aggregation: p95`, `source: syslog`).
Nothing else changes: the scenario check, `backtest --detector` and the pipeline all ask
the registry. The built-in implementations are found the first time a registry is
asked, by importing every module of its home packages (`detectors/`, `features/`,
`sources/`, and the NetFlow flows source), so a new module dropped into one of them is
found without editing a list. Importing a module must stay cheap: heavy libraries
(torch and MVAD) are imported inside the methods that use them.

This module is part of the core: it imports nothing of the package at import time; the
home packages are imported by name when a registry is first used.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .errors import ConfigError


class UnknownName(ConfigError):
    """A scenario or a command names a detector, aggregation or source nobody registered."""


class Registry:
    """Named implementations of one kind (detector, aggregation, source)."""

    def __init__(self, kind: str, *homes: str):
        self.kind = kind
        self.homes = homes           # packages whose modules are imported, or single modules
        self._entries: dict[str, Any] = {}
        self._discovered = False

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` under `name`; as a decorator when `obj` is not given."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a name to be registered under")

        def add(target: Any) -> Any:
            known = self._entries.get(name)
            if known is not None and known is not target and _qualname(known) != _qualname(target):
                raise ValueError(f"{self.kind} '{name}' is already registered by {_qualname(known)}; "
                                 f"choose another name for {_qualname(target)}.")
            self._entries[name] = target
            if getattr(target, "name", None) is None:
                try:
                    target.name = name
                except (AttributeError, TypeError):
                    pass
            return target
        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Forget `name` (a test that registered a toy implementation cleans up with it)."""
        self._entries.pop(name, None)

    def discover(self) -> None:
        """Import the home packages' modules once, so the built-ins register themselves."""
        if self._discovered:
            return
        self._discovered = True      # first: a home module may ask this registry while it is imported
        try:
            for home in self.homes:
                module = importlib.import_module(home)
                for info in pkgutil.iter_modules(getattr(module, "__path__", None) or []):
                    if not info.ispkg and not info.name.startswith("_"):
                        importlib.import_module(f"{home}.{info.name}")
        except BaseException:
            self._discovered = False     # a broken module is reported again, never half a registry
            raise

    def names(self) -> tuple[str, ...]:
        self.discover()
        return tuple(self._entries)     # in the order they registered

    def __contains__(self, name: object) -> bool:
        self.discover()
        try:
            return name in self._entries
        except TypeError:        # a list or a mapping where a name belongs
            return False

    def get(self, name: str) -> Any:
        """The implementation registered as `name`; an error sentence naming the choices."""
        self.discover()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(f"no {self.kind} is named '{name}'; choose one of "
                              f"{', '.join(self.names()) or 'none'}.") from None


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


# Detectors: classes with `from_scenario(scenario, features, device=, threads=)`, `fit`,
# `score`, `save`, `load(directory, features, device=, threads=)`, `context_buckets`,
# `uses_calendar` (fed the scenario's calendar columns) and `needs_variation` (skipped on
# flat training data when the scenario has another detector); see detectors/base.py.
DETECTORS = Registry("detector", "wazuh_anomaly.detectors")
# Aggregations: features/aggregations.py (`Aggregation`).
AGGREGATIONS = Registry("aggregation", "wazuh_anomaly.features")
# Sources: classes with `from_config(config, scenario, resume=)`, `key`, `read(...)`;
# see sources/__init__.py. Scenarios name one with `source:`; "alerts" means the
# installation's own alert source (config.yaml source.type).
SOURCES = Registry("source", "wazuh_anomaly.sources", "wazuh_anomaly.netflow.flows_source")
ALERTS = "alerts"


def scenario_source_names() -> tuple[str, ...]:
    """What a scenario's `source:` may say."""
    return (ALERTS, *SOURCES.names())

