"""Sources yield alerts as `(ts, alert)` pairs (UTC epoch seconds, the alert dict), streaming.

The embedded default is the manager's own alert files (`AlertsFileSource`).
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

__all__ = [
    "SKIP_REASONS",
    "AlertFile",
    "AlertsFileSource",
    "ReadCursor",
    "SourceStats",
    "SourceUnreadable",
    "parse_wazuh_timestamp",
]
