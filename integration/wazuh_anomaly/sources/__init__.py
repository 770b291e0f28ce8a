"""Sources yield alerts as `(ts, alert)` pairs (UTC epoch seconds, the alert dict), streaming.

The embedded default is the manager's own alert files (`AlertsFileSource`); the Wazuh
indexer (`IndexerSource`, source type `indexer`) also computes features itself
(`push_down`).
"""
from .alerts_file import (
    SKIP_REASONS,
    AlertFile,
    AlertsFileSource,
    ReadCursor,
    SourceStats,
    SourceUnreadable,
    parse_wazuh_timestamp,
)



def make_source(config):
    """The alert source the configuration names (source.type)."""
    if config.source_type == "indexer":
        from .indexer import IndexerSource
        return IndexerSource(config.indexer, config.layout.prefix)
    return AlertsFileSource(config.alerts_dir)


__all__ = [
    "make_source",
    "SKIP_REASONS",
    "AlertFile",
    "AlertsFileSource",
    "ReadCursor",
    "SourceStats",
    "SourceUnreadable",
    "parse_wazuh_timestamp",
]
