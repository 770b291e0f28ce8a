"""Model lifecycle: versions an admin can list, inspect and roll back; training data
cleaned of suppressed and false-positive periods; and a drift check that notices when
recent scores no longer look like the training scores.

Versions live in `models/<scenario>/<version>/` (models.py); `current` names the one in
use and the last `run.keep_models` versions are kept. A rollback switches `current`
atomically to an older version after loading it completely (trust check, feature list,
detectors), and is remembered in `state/lifecycle/<scenario>.json` so that the retrain
schedule counts from the rollback instead of replacing the chosen model at once.

Excluded periods (suppressions, false positives) are not cut out of the training
series: MVAD learns from contiguous sliding windows, and dropping every window that
touches an excluded bucket would throw away `sliding_window` buckets around each one
(a weekly two-hour maintenance window alone would remove a day a week). Instead the
excluded buckets are replaced by the seasonal expectation (the median of the same hour,
learned from the buckets that are kept): the series stays contiguous, and the model
learns neither the benign burst nor a silence that never happened.

Drift: each scored bucket's score is kept (per detector, every entity's scores of the
last `training.drift_buckets` buckets, for the current version only). Once that many
are there, they are compared with the training scores (101 percentiles stored in the
model's meta.json) in two ways: the two-sample Kolmogorov-Smirnov distance D, the
largest gap between the two cumulative distributions (drift above
`training.drift_threshold`, 0.3: the whole distribution moved); and the share of recent
scores above the training 99th percentile, in units of the 1% expected (drift above
`training.drift_tail_ratio`, 5: the busy part moved, which D misses when most series
are quiet). Either is a `model_drift` health event (rule 117310). Measured on the AIT
data (README): an ordinary next day gives D <= 0.02 and a tail ratio <= 1.5; the same day
with ten times the volume a tail ratio of 9 (seasonal).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..core.config import Scenario
from ..core.errors import ConfigError, ModelError
from ..pipeline.models import ModelBundle, list_versions
from ..core.state import atomic_write_json, read_json
from ..core.trust import check_trusted, read_trusted

def _fmt(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# --------------------------------------------------------------------------- versions

def current_version(models_dir: Path, scenario: str) -> str | None:
    pointer = Path(models_dir) / scenario / "current"
    try:
        return pointer.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def read_meta(models_dir: Path, scenario: str, version: str) -> dict:
    directory = Path(models_dir) / scenario / version
    try:
        return json.loads(read_trusted(directory / "meta.json"))
    except ValueError as exc:
        raise ModelError(f"{directory / 'meta.json'}: unreadable ({exc}).") from None


def list_models(models_dir: Path, scenario: str) -> list[dict]:
    """Every kept version of a scenario, oldest first, with what it was trained on."""
    current = current_version(models_dir, scenario)
    rows = []
    for version in list_versions(models_dir, scenario):
        row = {"version": version, "current": version == current}
        try:
            meta = read_meta(models_dir, scenario, version)
        except ModelError as exc:
            row["error"] = str(exc)
            rows.append(row)
            continue
        row.update({"trained_at": meta.get("trained_at"), "trained_from": meta.get("trained_from"),
                    "trained_to": meta.get("trained_to"), "buckets": meta.get("buckets"),
                    "excluded_buckets": meta.get("excluded_buckets", 0), "detectors": meta.get("detectors"),
                    "features": meta.get("features"), "calendar": meta.get("calendar", [])})
        rows.append(row)
    return rows


def _lifecycle_file(state_dir: Path, scenario: str) -> Path:
    return Path(state_dir) / "lifecycle" / f"{scenario}.json"


def lifecycle_state(state_dir: Path, scenario: str) -> dict:
    data = read_json(_lifecycle_file(state_dir, scenario), {})
    return data if isinstance(data, dict) else {}


def rollback(config, scenario: Scenario, version: str | None = None, *, now: float | None = None) -> tuple[str, str]:
    """Point `current` at `version` (default: the version before the current one) after
    loading it completely; returns (old, new). Refuses an untrusted or unfitting model."""
    models_dir = Path(config.models_dir)
    versions = list_versions(models_dir, scenario.name)
    old = current_version(models_dir, scenario.name)
    if version is None:
        older = [v for v in versions if old is None or v < old]
        if not older:
            raise ModelError(f"scenario {scenario.name}: no version older than {old} is kept "
                             f"(see 'wazuh-anomaly models list --scenario {scenario.name}').")
        version = older[-1]
    if version not in versions:
        raise ModelError(f"scenario {scenario.name}: no version '{version}'; kept: {', '.join(versions) or 'none'}.")
    if version == old:
        raise ModelError(f"scenario {scenario.name}: version {version} is already current.")
    # Everything a wodle run would check, on the chosen version, before anything changes.
    ModelBundle.load(models_dir, scenario, device=config.run.device, threads=config.run.threads, version=version)
    scenario_dir = models_dir / scenario.name
    check_trusted(scenario_dir)
    pointer_tmp = scenario_dir / f".current.{os.getpid()}.tmp"
    pointer_tmp.write_text(version + "\n", encoding="utf-8")
    os.chmod(pointer_tmp, 0o640)
    os.replace(pointer_tmp, scenario_dir / "current")
    state = lifecycle_state(config.state_dir, scenario.name)
    state["rolled_back_at"] = time.time() if now is None else now
    state["rolled_back_from"], state["rolled_back_to"] = old, version
    atomic_write_json(_lifecycle_file(config.state_dir, scenario.name), state)
    return old or "-", version


def retrain_reference(config, scenario: str, bundle: ModelBundle) -> float:
    """When the retrain clock of the current model started: its training, or a later rollback to it."""
    state = lifecycle_state(config.state_dir, scenario)
    if state.get("rolled_back_to") == bundle.version:
        return max(bundle.trained_at, float(state.get("rolled_back_at") or 0.0))
    return bundle.trained_at


# --------------------------------------------------------------------------- exclusions

@dataclass(frozen=True)
class Exclusion:
    start: float
    end: float
    entity: str | None           # None: every entity of the scenario
    why: str                     # "suppression <id>" or "false positive <id>"


def training_exclusions(config, scenario: Scenario, start: float, end: float) -> list[Exclusion]:
    """Suppressed periods and false-positive anomaly windows of this scenario in [start, end)."""
    from .feedback import load_feedback
    from .suppression import load_suppressions
    lo, hi = (datetime.fromtimestamp(t, tz=timezone.utc) for t in (start, end))
    out: list[Exclusion] = []
    for s in load_suppressions(config):
        if s.scenario is not None and s.scenario != scenario.name:
            continue
        for a, b in s.occurrences(lo, hi):
            out.append(Exclusion(a.timestamp(), b.timestamp(), s.entity, f"suppression {s.id}"))
    for f in load_feedback(config).values():
        if f.false_positive and f.scenario == scenario.name:
            a, b = f.window_start.timestamp(), f.window_end.timestamp()
            if a < end and b > start:
                out.append(Exclusion(a, b, f.entity, f"false positive {f.id}"))
    return out


def exclude_from_training(scenario: Scenario, series: dict[str | None, pd.DataFrame],
                          exclusions: Iterable[Exclusion]) -> tuple[dict[str | None, pd.DataFrame], int]:
    """The series with every excluded bucket replaced by the seasonal median of the kept
    buckets (see the module docstring); returns (series, number of buckets replaced)."""
    from ..detectors import SeasonalProfile
    exclusions = list(exclusions)
    if not exclusions:
        return series, 0
    step = scenario.bucket_seconds
    masks = {}
    for entity, frame in series.items():
        starts = frame.index.asi8 / 1e9
        mask = np.zeros(len(frame), dtype=bool)
        for x in exclusions:
            if x.entity is None or x.entity == entity:
                mask |= (starts < x.end) & (starts + step > x.start)
        masks[entity] = mask
    total = int(sum(m.sum() for m in masks.values()))
    if total == 0:
        return series, 0
    kept = {e: f[~masks[e]] for e, f in series.items() if (~masks[e]).any()}
    if not kept:
        raise ConfigError(f"scenario {scenario.name}: every training bucket is suppressed or marked false "
                          f"positive; nothing is left to learn from. Narrow the suppressions or train on "
                          f"another range.")
    profile = SeasonalProfile(list(next(iter(series.values())).columns), weekday=scenario.seasonal.weekday,
                              min_scale=scenario.seasonal.min_scale).fit(kept)
    out = {}
    for entity, frame in series.items():
        mask = masks[entity]
        if mask.any():
            frame = frame.copy()
            expected, _ = profile.expected(frame.index[mask], entity)
            frame.iloc[np.flatnonzero(mask)] = expected
        out[entity] = frame
    return out, total
