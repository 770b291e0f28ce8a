"""What the detectors find, before it becomes a JSON line: anomalies and health events.

These are plain values; `emitter.py` turns them into schema v1 events (DESIGN.md) and
`rules/` turns those into Wazuh alerts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .eventtext import iso, stable_id  # noqa: F401 (re-exported)

SEVERITIES = ("low", "medium", "high", "critical")

# Health checks of the detector itself (rules 117300-117349).
HEALTH_CHECKS = (
    "training_failed",       # a model could not be trained
    "insufficient_history",  # not enough history to train yet
    "source_unreadable",     # alerts file missing, unreadable, or indexer unreachable
    "model_stale",           # model older than the configured maximum age
    "no_data",               # no alerts at all in the scored range
    "scenario_failed",       # scoring a scenario raised an error
    "malformed_input",       # malformed alert lines were skipped
    "config_invalid",        # a scenario file could not be loaded
    "model_drift",           # recent scores no longer look like the training scores
    "shipping_failed",       # the indexer is down or busy: anomalies wait in the spool (rule 117390)
    "shipping_rejected",     # the indexer refused anomalies for good (mapping): kept in spool/rejected (117391)
    "spool_full",            # the shipping spool passed its limit: the oldest were not shipped (117392)
)


@dataclass(frozen=True)
class FeatureContribution:
    """One feature's part in an anomaly: what was seen, what training expected."""

    name: str
    actual: float
    expected: float       # training median for the same bucket (hour of day where known)
    contribution: float   # share of the anomaly score, 0..1, summing to 1 over all features
    deviation: float      # robust z: (actual - expected) / scaled MAD of training


@dataclass(frozen=True)
class Anomaly:
    """One anomalous bucket of one scenario (and entity, when the scenario splits)."""

    scenario: str
    detector: str                 # "mvad", "seasonal" or "mvad+seasonal"
    window_start: datetime
    window_end: datetime
    bucket_minutes: int
    score: float
    threshold: float
    severity: str                 # one of SEVERITIES
    top_features: tuple[FeatureContribution, ...]
    model_version: str
    entity_field: str | None = None
    entity_value: str | None = None
    kind: str = "timeseries"
    description: str = ""         # the scenario's one-line description
    title: str = ""               # what happened, by the leading feature and its direction ("a burst of successful logins")
    suppression_id: str | None = None      # set when an admin's suppression covers it (suppression.py)
    suppression_reason: str | None = None
    # escalation.Repeat, set from the anomaly log's state once written (runner.py), so the
    # shipped document says what the line says.
    repeat: object = field(default=None, compare=False)

    @property
    def suppressed(self) -> bool:
        return self.suppression_id is not None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def id(self) -> str:
        # The model version and the detectors that flagged it are left out on purpose:
        # re-scoring a bucket after a retrain must not raise the same anomaly twice.
        return stable_id("anomaly", self.kind, self.scenario,
                         self.entity_field, self.entity_value, iso(self.window_start))


@dataclass(frozen=True)
class HealthEvent:
    """Something about the detector itself that an admin must see as an alert."""

    check: str                    # one of HEALTH_CHECKS
    message: str                  # one sentence: what, where, what to do
    at: datetime
    scenario: str | None = None
    severity: str = "medium"
    details: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.check not in HEALTH_CHECKS:
            raise ValueError(f"health check {self.check!r} is not one of {HEALTH_CHECKS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")

    @property
    def id(self) -> str:
        # At most one event per check, scenario and hour, however often the wodle runs.
        hour = iso(self.at)[:13]  # 2022-01-24T03
        return stable_id("health", self.check, self.scenario, hour)
