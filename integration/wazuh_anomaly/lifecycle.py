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

import argparse
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .config import Scenario
from .errors import ConfigError, ModelError
from .models import ModelBundle, list_versions
from .state import atomic_write_json, damaged, read_json
from .trust import check_trusted, read_trusted

SCORE_QUANTILES = np.linspace(0.0, 1.0, 101)


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
    from .detectors import SeasonalProfile
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


# --------------------------------------------------------------------------- drift

def score_quantiles(scores: np.ndarray) -> list[float]:
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    return np.round(np.quantile(scores, SCORE_QUANTILES), 9).tolist() if scores.size else []


def _significant(values: np.ndarray, digits: int = 3) -> np.ndarray:
    values = values[np.isfinite(values)]
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.where(values == 0, 1.0, np.abs(values)))))
    return np.round(values * scale) / scale


def ks_statistic(recent: np.ndarray, training_quantiles: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov D between recent scores and the training scores
    (given as their percentiles): the largest gap between the two empirical CDFs."""
    # Scores to 3 significant digits: the same quiet bucket scores 1e-7 apart in a batch of
    # another size, and a mass of such ties split either way would read as a large gap.
    recent = np.sort(_significant(np.asarray(recent, dtype=float)))
    train = np.sort(_significant(np.asarray(training_quantiles, dtype=float)))
    if not len(recent) or not len(train):
        return 0.0
    grid = np.concatenate([recent, train])
    # The training CDF from its percentiles: the share of percentile points at or below x.
    cdf_recent = np.searchsorted(recent, grid, side="right") / len(recent)
    cdf_train = np.searchsorted(train, grid, side="right") / len(train)
    return float(np.max(np.abs(cdf_recent - cdf_train)))


def tail_ratio(recent: np.ndarray, training_quantiles: list[float]) -> float:
    """Share of recent scores above the training 99th percentile, in units of the 1% expected."""
    recent = _significant(np.asarray(recent, dtype=float))
    if not len(recent) or len(training_quantiles) < 100:
        return 0.0
    q99 = _significant(np.asarray([training_quantiles[99]], dtype=float))[0]
    return float(np.mean(recent > q99)) / 0.01


@dataclass(frozen=True)
class DriftResult:
    detector: str
    statistic: float             # KS D, 0..1
    threshold: float
    tail: float                  # recent share above the training 99th percentile / 1%
    tail_threshold: float
    recent_buckets: int
    needed_buckets: int

    @property
    def ready(self) -> bool:
        return self.recent_buckets >= self.needed_buckets

    @property
    def drifted(self) -> bool:
        return self.ready and (self.statistic > self.threshold or self.tail > self.tail_threshold)

    def describe(self) -> str:
        if not self.ready:
            return f"{self.detector}: {self.recent_buckets} of {self.needed_buckets} recent buckets collected"
        verdict = "DRIFT" if self.drifted else "ok"
        return (f"{self.detector}: KS {self.statistic:.2f} (limit {self.threshold:.2f}), {self.tail:.1f}x the "
                f"training share above its 99th percentile (limit {self.tail_threshold:g}x) over the last "
                f"{self.recent_buckets} buckets: {verdict}")


def drift_of(bundle: ModelBundle, recent: dict[str, list]) -> list[DriftResult]:
    """Drift of each detector's recent scores (every entity of the last drift_buckets buckets)
    against its training scores."""
    spec = bundle.scenario.training
    reference = bundle.meta.get("score_quantiles") or {}
    out = []
    for detector, pairs in recent.items():
        quantiles = reference.get(detector)
        if not quantiles:
            continue  # a model trained before drift checks existed: nothing to compare with
        buckets = len({t for t, _ in pairs})
        scores = np.asarray([v for _, v in pairs], dtype=float)
        out.append(DriftResult(detector, ks_statistic(scores, quantiles), spec.drift_threshold,
                               tail_ratio(scores, quantiles), spec.drift_tail_ratio, buckets, spec.drift_buckets))
    return out


def _drift_file(state_dir: Path, scenario: str) -> Path:
    return Path(state_dir) / "drift" / f"{scenario}.json"


def record_scores(state_dir: Path, bundle: ModelBundle, scores: dict[str, list]) -> dict[str, list]:
    """Add the (bucket epoch, score) pairs of newly scored buckets; keeps, per detector, every
    entity's scores of the last drift_buckets buckets of the current version (a new version
    starts over). Returns what is kept."""
    path = _drift_file(state_dir, bundle.scenario.name)
    kept = _saved_scores(path, bundle)
    span = bundle.scenario.training.drift_buckets * bundle.scenario.bucket_seconds
    for detector, pairs in scores.items():
        new = [[int(t), round(float(v), 9)] for t, v in pairs if np.isfinite(v)]
        # Buckets scored again (a run repeated after a crash) replace their earlier scores.
        since = min((t for t, _ in new), default=None)
        merged = [[int(t), v] for t, v in kept.get(detector, []) if since is None or t < since] + new
        newest = max((t for t, _ in merged), default=0)
        kept[detector] = sorted(p for p in merged if p[0] > newest - span)
    atomic_write_json(path, {"version": bundle.version, "scores": kept})
    return kept


def recent_scores(state_dir: Path, bundle: ModelBundle) -> dict[str, list]:
    return _saved_scores(_drift_file(state_dir, bundle.scenario.name), bundle)


def _saved_scores(path: Path, bundle: ModelBundle) -> dict[str, list]:
    """The kept scores of the current version; a file of another shape is a damaged one."""
    data = read_json(path, {}) or {}
    if isinstance(data, dict) and data.get("version") != bundle.version:
        return {}
    scores = data.get("scores", {}) if isinstance(data, dict) else None
    if not isinstance(scores, dict) or not all(
            isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int
                                            and type(p[1]) in (int, float) for p in pairs)
            for pairs in scores.values()):
        damaged(path, "the drift check starts again from the next scores")
        return {}
    return scores


# --------------------------------------------------------------------------- command

def cmd_models(args: argparse.Namespace, context: Callable) -> int:
    _, config, scenarios, _ = context(args)
    known = {s.name: s for s in scenarios}
    names = [args.scenario] if args.scenario else sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(f"no scenario named '{name}'; known: {', '.join(sorted(known)) or 'none'}.")
    if args.models_command == "list":
        rows = {n: list_models(config.models_dir, n) for n in names}
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        for name, versions in rows.items():
            print(f"{name}: {len(versions)} version(s) kept (run.keep_models {config.run.keep_models})")
            for row in versions:
                mark = "*" if row["current"] else " "
                if "error" in row:
                    print(f" {mark} {row['version']}  unreadable: {row['error']}")
                    continue
                excluded = f", {row['excluded_buckets']} excluded" if row.get("excluded_buckets") else ""
                print(f" {mark} {row['version']}  trained {row['trained_at'][:16]} on {row['trained_from'][:16]} .. "
                      f"{row['trained_to'][:16]} ({row['buckets']} buckets{excluded}; {'+'.join(row['detectors'])})")
        return 0
    if not args.scenario:
        raise ConfigError(f"'models {args.models_command}' needs --scenario NAME.")
    scenario = known[args.scenario]
    if args.models_command == "show":
        version = args.version or current_version(config.models_dir, scenario.name)
        if not version or version not in list_versions(config.models_dir, scenario.name):
            raise ModelError(f"scenario {scenario.name}: no model version '{version}'; see 'wazuh-anomaly models list'.")
        meta = read_meta(config.models_dir, scenario.name, version)
        if args.json:
            print(json.dumps(meta, indent=1))
            return 0
        print(f"{scenario.name} {version}{' (current)' if version == current_version(config.models_dir, scenario.name) else ''}")
        for key in ("trained_at", "trained_from", "trained_to", "buckets", "excluded_buckets", "features",
                    "calendar", "entities", "detectors", "skipped_detectors", "data_hash", "wazuh_anomaly"):
            if meta.get(key) not in (None, [], {}):
                print(f"  {key.replace('_', ' ')}: {meta[key]}")
        for detector, cals in (meta.get("calibration") or {}).items():
            pooled = cals.get("*", {})
            print(f"  {detector} threshold: {pooled.get('threshold', 0):.4g} (median {pooled.get('center', 0):.4g}, "
                  f"{len(cals) - 1} entity thresholds)")
        if meta.get("exclusions"):
            print(f"  excluded from training: {', '.join(meta['exclusions'][:10])}")
        return 0
    old, new = rollback(config, scenario, args.version)
    print(f"{scenario.name}: current model switched from {old} to {new}; the next run scores with it "
          f"(retraining is due {scenario.training.retrain_every_days:g} days from now).")
    return 0
