"""Sources yield alerts as `(ts, alert)` pairs (UTC epoch seconds, the alert dict), streaming.

Every source registers itself by name (`core.registry.SOURCES`) and is built from the
configuration with `from_config(config, scenario, resume=)`; it has a `key` (sources
with equal keys are read in one pass) and `read(start, end, cursor=, stats=,
slack_seconds=)`. Optional: `push_down(aggregators, start, end)` (the source computes
features itself, as the indexer does), `position()` ('file:line' of the last alert, for
skip messages), `skip_message(stats)` and `waiting_message(scenario)` (why a scenario
cannot run yet, e.g. no NetFlow file).

The embedded default is the manager's own alert files (`alerts_file`); the Wazuh
indexer (`indexer`) computes features itself; `sample` reads the bundled sample; the
normalised NetFlow events (`flows`) live in netflow/flows_source.py.
"""
from ..core.registry import ALERTS, SOURCES
from .alerts_file import (
    SKIP_REASONS,
    AlertFile,
    AlertsFileSource,
    ReadCursor,
    SourceStats,
    SourceUnreadable,
    parse_wazuh_timestamp,
)


def source_name(config, scenario=None) -> str:
    """The registered source a scenario reads: its `source:`, where "alerts" means the
    installation's own alert source (config.yaml source.type)."""
    name = getattr(scenario, "source", ALERTS) if scenario is not None else ALERTS
    return config.source_type if name == ALERTS else name


def source_for(config, scenario=None, *, resume: bool = True):
    """The source a scenario reads (the installation's alert source without one)."""
    return SOURCES.get(source_name(config, scenario)).from_config(config, scenario, resume=resume)


def make_source(config):
    """The installation's alert source (config.yaml source.type)."""
    return source_for(config)


__all__ = [
    "make_source",
    "source_for",
    "source_name",
    "SKIP_REASONS",
    "AlertFile",
    "AlertsFileSource",
    "ReadCursor",
    "SourceStats",
    "SourceUnreadable",
    "parse_wazuh_timestamp",
]
