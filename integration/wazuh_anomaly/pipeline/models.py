"""A scenario's trained model: its detectors, their calibrations, the seasonal profile
that explains anomalies, and the JSON metadata that says what it was trained on.

On disk: `models/<scenario>/<version>/` holds `meta.json`, `profile.json` and each
detector's files (weights as a torch state_dict loaded with weights_only, everything
else JSON); `models/<scenario>/current` names the version in use. Versions are written
to a temporary directory and renamed into place, so a crash never leaves a half model.
Files writable by group or others, or owned by anyone but root or the installing user,
are refused: a model is trusted input.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..core import progress
from ..core.chunks import frames_of, in_chunks, length_of, materialize, ordered
from ..features.calendar import calendar_names, with_calendar
from ..core.config import Scenario
from ..detectors import Calibration, SeasonalProfile, detector_class, library_versions
from ..detectors.base import ScoreTally, alert_probability, severity_for, title_of, worth_raising
from ..core.errors import ModelError
from ..core.findings import Anomaly, FeatureContribution, iso
from .scores import score_quantiles as quantiles_of
from ..core.trust import check_trusted, read_trusted

# 2: calibrations are fitted tails (tail probabilities against the alert budget); a
# model of format 1 (quantile thresholds) is refused with "retrain".
FORMAT = 2
# An entity gets a tail of its own from this many training scores on (four weeks of
# 5-minute buckets); before that every entity shares the pooled tail, whose many
# scores fit the rare end far better than a few days of one entity's.
ENTITY_TAIL_SCORES = 8064
POOLED = "*"
TOP_FEATURES = 5
DRIFT_SAMPLE = 256   # entities of a batch whose scores are kept for the drift check


def every_entity(name: str) -> bool:
    """Whether detector `name` costs so little per entity that it models every entity."""
    return bool(getattr(detector_class(name), "every_entity", False))


def detailed_entities(scenario: Scenario, series: dict[str | None, pd.DataFrame]) -> list | None:
    """The entities the costlier detectors (MVAD) also model: the busiest `entity.mvad_top`
    by volume; None when they model every entity (no entity split, or no detector that
    covers every entity)."""
    if scenario.entity is None or not any(every_entity(n) for n in scenario.detectors):
        return None
    volume = {e: float(np.nansum(f.to_numpy(dtype=float))) for part in in_chunks(series) for e, f in part.items()}
    ranked = sorted(series, key=lambda e: (-volume[e], "" if e is None else e))
    return ranked[:scenario.entity.mvad_top]


def context_entities(scenario: Scenario) -> int:
    """How many entities' last buckets the state keeps as context for the next run: the
    ones a detector needing context scores (the busiest entity.mvad_top), bounded
    however many entities there are."""
    if scenario.entity is None:
        return 1
    if any(every_entity(n) for n in scenario.detectors):
        return max(scenario.entity.mvad_top, 1)
    return 2 * scenario.entity.top if scenario.entity.top is not None else max(scenario.entity.mvad_top, 1)


def training_scores(detector, inputs: dict[str | None, pd.DataFrame], *, chunk: int = 500) -> dict:
    """Each entity's scores of its training frame: together in chunks of entities x buckets
    arrays when the detector can (score_many) and the frames share one index."""
    per_entity: dict = {}
    together = getattr(detector, "score_many", None)
    groups: dict[tuple, list] = {}
    for e, f in inputs.items():
        if together is not None and e is not None and len(f):
            groups.setdefault((len(f), f.index[0], f.index[-1]), []).append(e)
    with progress.steps("scoring entities", len(inputs)) as scoring:
        for members in groups.values():
            index = inputs[members[0]].index
            same = [e for e in members if inputs[e].index.equals(index)]
            for i in range(0, len(same), chunk):
                part = same[i:i + chunk]
                for e, scores in zip(part, together([inputs[e] for e in part], part)):
                    per_entity[e] = scores
                scoring.step(by=len(part))
        for e, f in inputs.items():
            if e not in per_entity:
                scoring.step()
                per_entity[e] = detector.score(f, e)["score"].to_numpy()
    return {e: per_entity[e] for e in inputs}


def _constant(series: dict[str | None, pd.DataFrame]) -> bool:
    """Every value of every frame the same (one frame at a time: never all of them joined)."""
    first = None
    for frame in (f for part in in_chunks(series) for f in part.values()):
        values = frame.to_numpy(dtype=float)
        if not values.size:
            continue
        if first is None:
            first = values.flat[0]
        if not np.all(values == first):
            return False
    return True


def _utc(epoch: float) -> pd.Timestamp:
    return pd.Timestamp(epoch, unit="s", tz="UTC")


def _iso(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, tz=timezone.utc))


def data_hash(series: dict[str | None, pd.DataFrame]) -> str:
    digest = hashlib.sha256()
    order = sorted(series, key=lambda e: "" if e is None else e)
    for entity, frame in ((e, f) for part in in_chunks(ordered(series, order)) for e, f in part.items()):
        digest.update(repr(entity).encode())
        digest.update(np.ascontiguousarray(frame.index.asi8).tobytes())
        digest.update(np.ascontiguousarray(frame.to_numpy(dtype=float)).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class ModelBundle:
    scenario: Scenario
    version: str
    profile: SeasonalProfile
    detectors: dict[str, object]
    calibrations: dict[str, dict[str, Calibration]]   # detector -> entity key (or POOLED) -> calibration
    meta: dict = field(default_factory=dict)
    vocabulary: dict = field(default_factory=dict)     # rare features: value counts at the end of training
    recent_scores: dict = field(default_factory=dict)  # detector -> (bucket epoch, score) scored since loading

    def __post_init__(self) -> None:
        self.apply_budget()

    def apply_budget(self) -> None:
        """Set every calibration's alert probability from the scenario's share of the alert
        budget (scenario.alerts_per_day) spread over its series: every entity trained on,
        times every detector (alerts_probability); more entities or detectors, each alerts
        more rarely, so together they stay within the budget."""
        entities = max(len(self.meta.get("entities") or []), 1)
        p = alert_probability(self.scenario.alerts_per_day, entities * max(len(self.detectors), 1),
                              self.scenario.bucket_minutes)
        self.calibrations = {d: {k: c.with_alert_probability(p) for k, c in cals.items()}
                             for d, cals in self.calibrations.items()}

    @property
    def context_buckets(self) -> int:
        return max(getattr(d, "context_buckets", 0) for d in self.detectors.values())

    @property
    def trained_at(self) -> float:
        return float(self.meta.get("trained_at_epoch", 0.0))

    @property
    def trained_to(self) -> float:
        return float(self.meta.get("trained_to_epoch", 0.0))

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, scenario: Scenario, series: dict[str | None, pd.DataFrame], *, trained_from: float,
              trained_to: float, device: str = "cpu", threads: int | None = None,
              now: float | None = None) -> "ModelBundle":
        """Fit every detector of the scenario and calibrate it on its own training scores."""
        features = scenario.feature_names
        if isinstance(series, dict):
            series = {e: f if list(f.columns) == features else f[features] for e, f in series.items() if len(f)}
        else:
            # Frames built on demand (core.chunks.LazyFrames, with the scenario's columns):
            # only a chunk of entities is held at a time, never every entity's frame.
            series = ordered(series, [e for e in series if length_of(series, e)])
        if not series:
            raise ValueError("no training data")
        profile = SeasonalProfile(features, weekday=scenario.seasonal.weekday,
                                  min_scale=scenario.seasonal.min_scale).fit(series)
        detectors: dict[str, object] = {}
        calibrations: dict[str, dict[str, Calibration]] = {}
        details: dict[str, dict] = {}
        skipped: dict[str, str] = {}
        calendar = calendar_names(scenario)
        score_quantiles: dict[str, list[float]] = {}
        constant = _constant(series)
        detailed = detailed_entities(scenario, series)
        detector_entities: dict[str, list] = {}
        with progress.steps("detector", len(scenario.detectors)) as fitting:
            for name in scenario.detectors:
                cls_ = detector_class(name)
                if getattr(cls_, "needs_variation", False) and constant and len(scenario.detectors) > 1:
                    # A network cannot learn from a flat line; the other detectors still say
                    # "anything above zero is new" until a retrain sees real activity.
                    skipped[name] = "no variation in the training data"
                    continue
                own = series
                if detailed is not None and not getattr(cls_, "every_entity", False):
                    # A costly detector models the busiest entities; the others have the cheap ones.
                    own = frames_of(series, detailed)
                    if not own:
                        skipped[name] = "entity.mvad_top is 0"
                        continue
                    if len(own) < len(series):
                        detector_entities[name] = [e for e in own if e is not None]
                if not hasattr(cls_, "calibration_chunks"):
                    own = materialize(own)     # a detector that learns from every frame at once
                fitting.step(name)
                # Only a detector that asks for them sees the opt-in calendar columns.
                calendared = getattr(cls_, "uses_calendar", False)
                detector = cls_.from_scenario(scenario, features + calendar if calendared else features,
                                              device=device, threads=threads)
                inputs = {e: with_calendar(f, scenario) for e, f in own.items()} if calendared else own
                started = time.monotonic()
                detector.fit(inputs)
                if hasattr(detector, "calibration_chunks"):
                    # Out-of-sample scores where the detector can give them cheaply: in-sample
                    # scores are tighter than any later day's, and the tail would promise too little.
                    parts = detector.calibration_chunks(inputs)
                elif hasattr(detector, "calibration_scores"):
                    parts = iter([detector.calibration_scores(inputs)])
                else:
                    parts = iter([training_scores(detector, inputs)])
                floor = getattr(detector, "threshold_floor", None)
                # Every series' scores go into one tally (what the pooled tail needs of
                # them), a chunk of entities at a time.
                pooled_scores = ScoreTally()
                own_tails: dict[str, Calibration] = {}
                for per_entity in parts:
                    for entity, scores in per_entity.items():
                        pooled_scores.add(scores)
                        # Entities with weeks of history get a tail of their own: a noisy
                        # firewall must not hide a quiet server.
                        if entity is not None and len(scores) >= ENTITY_TAIL_SCORES:
                            own_tails[entity] = Calibration.from_scores(scores, floor=floor)
                score_quantiles[name] = quantiles_of(pooled_scores)   # the yardstick of the drift check
                cals = {POOLED: Calibration.from_scores(pooled_scores, floor=floor), **own_tails}
                detectors[name] = detector
                calibrations[name] = cals
                details[name] = {"fit_seconds": round(time.monotonic() - started, 3),
                                 "training": getattr(detector, "training_", {})}
        now = time.time() if now is None else now
        digest = data_hash(series)
        version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + digest[:8]
        meta = {
            "format": FORMAT, "scenario": scenario.name, "version": version, "features": features,
            "bucket_minutes": scenario.bucket_minutes,
            "entity_field": scenario.entity.field if scenario.entity else None,
            "entities": [e for e in series if e is not None],
            "detectors": list(detectors), "skipped_detectors": skipped, "combine": scenario.combine,
            "detector_entities": detector_entities,
            "trained_at": _iso(now), "trained_at_epoch": now,
            "trained_from": _iso(trained_from), "trained_from_epoch": trained_from,
            "trained_to": _iso(trained_to), "trained_to_epoch": trained_to,
            "buckets": int(sum(length_of(series, e) for e in series)), "data_hash": digest,
            "calibration": {d: {k: c.to_json() for k, c in cals.items()} for d, cals in calibrations.items()},
            "calendar": calendar, "score_quantiles": score_quantiles,
            "fit": details, "library_versions": library_versions(), "wazuh_anomaly": __version__,
        }
        return cls(scenario, version, profile, detectors, calibrations, meta)

    # ------------------------------------------------------------------ persistence
    def save(self, models_dir: Path, *, keep: int = 3) -> Path:
        """Write this version atomically, point `current` at it and prune old versions."""
        scenario_dir = models_dir / self.scenario.name
        scenario_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=scenario_dir))
        try:
            for detector in self.detectors.values():
                detector.save(tmp)
            (tmp / "profile.json").write_text(json.dumps(self.profile.to_json()), encoding="utf-8")
            if self.vocabulary:
                (tmp / "vocabulary.json").write_text(json.dumps(self.vocabulary), encoding="utf-8")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=1), encoding="utf-8")
            for path in tmp.iterdir():
                os.chmod(path, 0o640)
            os.chmod(tmp, 0o750)
            final = scenario_dir / self.version
            old = None
            if final.exists():
                # Same second, same data: move the live copy aside, never delete it first.
                old = scenario_dir / f".old-{self.version}-{os.getpid()}"
                os.replace(final, old)
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer_tmp = scenario_dir / ".current.tmp"
        pointer_tmp.write_text(self.version + "\n", encoding="utf-8")
        os.chmod(pointer_tmp, 0o640)
        os.replace(pointer_tmp, scenario_dir / "current")
        versions = sorted(p for p in scenario_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for old in versions[:-keep] if keep > 0 else []:
            if old.name != self.version:
                shutil.rmtree(old, ignore_errors=True)
        return final

    @classmethod
    def load(cls, models_dir: Path, scenario: Scenario, *, device: str = "cpu",
             threads: int | None = None, version: str | None = None) -> "ModelBundle | None":
        """The current model of a scenario (or the named version), None when there is none yet."""
        scenario_dir = models_dir / scenario.name
        pointer = scenario_dir / "current"
        if version is None:
            if not pointer.exists():
                return None
            check_trusted(scenario_dir)
            check_trusted(pointer)
            version = pointer.read_text(encoding="utf-8").strip()
        check_trusted(scenario_dir)
        directory = scenario_dir / version
        if not version or "/" in version or version.startswith(".") or not directory.is_dir():
            raise ModelError(f"{pointer}: names version '{version}', which does not exist; retrain with 'wazuh-anomaly train'.")
        check_trusted(directory)
        for path in directory.iterdir():
            check_trusted(path)
        try:
            meta = json.loads(read_trusted(directory / "meta.json"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{directory / 'meta.json'}: unreadable ({exc}); retrain with 'wazuh-anomaly train'.") from None
        features = scenario.feature_names
        if meta.get("format") != FORMAT:
            raise ModelError(f"{directory}: model format {meta.get('format')} is not {FORMAT}; retrain with 'wazuh-anomaly train'.")
        if meta.get("features") != features or meta.get("bucket_minutes") != scenario.bucket_minutes:
            raise ModelError(f"{directory}: trained on features {meta.get('features')} in {meta.get('bucket_minutes')}-minute "
                             f"buckets, but scenario '{scenario.name}' now has {features} in "
                             f"{scenario.bucket_minutes}-minute buckets; retrain with 'wazuh-anomaly train'.")
        calendar = calendar_names(scenario)
        if (meta.get("calendar") or []) != calendar:
            raise ModelError(f"{directory}: trained with calendar features {meta.get('calendar') or []}, but scenario "
                             f"'{scenario.name}' now asks for {calendar}; retrain with 'wazuh-anomaly train'.")
        trained = meta.get("detectors") or []
        if not trained or not set(trained) <= set(scenario.detectors):
            raise ModelError(f"{directory}: trained for detectors {meta.get('detectors')}, but the scenario lists "
                             f"{list(scenario.detectors)}; retrain with 'wazuh-anomaly train'.")
        try:
            profile = SeasonalProfile.from_json(json.loads(read_trusted(directory / "profile.json")))
            detectors = {}
            for name in trained:
                cls_ = detector_class(name)
                detectors[name] = cls_.load(directory, features + calendar if getattr(cls_, "uses_calendar", False)
                                            else features, device=device, threads=threads)
            calibrations = {d: {k: Calibration.from_json(v) for k, v in cals.items()}
                            for d, cals in meta["calibration"].items()}
            vocabulary_file = directory / "vocabulary.json"
            vocabulary = json.loads(read_trusted(vocabulary_file)) if vocabulary_file.exists() else {}
        except ModelError:
            raise
        except Exception as exc:  # a damaged file of any kind: one sentence, then retrain
            raise ModelError(f"{directory}: cannot be loaded ({type(exc).__name__}: {exc}); "
                             f"retrain with 'wazuh-anomaly train'.") from None
        return cls(scenario, version, profile, detectors, calibrations, meta, vocabulary)

    # ------------------------------------------------------------------ scoring
    def covers(self, detector: str, entity: str | None) -> bool:
        """Whether `detector` models `entity` (a costly one models only the busiest)."""
        limited = self.__dict__.get("_limited")
        if limited is None:
            limited = self.__dict__["_limited"] = {d: set(es) for d, es in
                                                   (self.meta.get("detector_entities") or {}).items()}
        return detector not in limited or entity in limited[detector]

    def detectors_for(self, entity: str | None) -> dict[str, object]:
        return {n: d for n, d in self.detectors.items() if self.covers(n, entity)}

    def calibration(self, detector: str, entity: str | None) -> Calibration:
        cals = self.calibrations[detector]
        return cals.get(entity, cals[POOLED]) if entity is not None else cals[POOLED]

    def detector_input(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame as detector `name` reads it: with the calendar columns if it asks for them."""
        return with_calendar(frame, self.scenario) if getattr(self.detectors[name], "uses_calendar", False) else frame

    def score(self, frame: pd.DataFrame, entity: str | None, *, first: float) -> list[Anomaly]:
        """Anomalies among the buckets of `frame` starting at epoch `first`; the rows before
        it are context (at least `context_buckets` of them)."""
        features = self.scenario.feature_names
        first_ts = _utc(first)
        scored: dict[str, pd.DataFrame] = {}
        detectors = self.detectors_for(entity)
        for name, detector in detectors.items():
            result = detector.score(self.detector_input(name, frame), entity)
            scored[name] = result[result.index >= first_ts]
            # Every scored bucket's score, for the drift check (scores.record_scores).
            self.recent_scores.setdefault(name, []).extend(
                zip((scored[name].index.asi8 // 10**9).tolist(), scored[name]["score"].tolist()))
        rows = frame[frame.index >= first_ts]
        if rows.empty:
            return []
        deviation = self.profile.deviation(rows, entity)
        expected, _ = self.profile.expected(rows.index, entity)
        anomalies: list[Anomaly] = []
        step = pd.Timedelta(minutes=self.scenario.bucket_minutes)
        # Every bucket's exceedance at once (tail probabilities are array arithmetic).
        exceeding = {name: pd.Series(np.asarray(self.calibration(name, entity).exceedance(result["score"].to_numpy()),
                                                dtype=float).reshape(-1), index=result.index)
                     for name, result in scored.items()}
        # Suppression rules: only features that moved enough, the way that matters, count.
        # A detector of absence (silence: nothing came) is judged by its own score alone;
        # deviations from the expected level say nothing about it (suppressible = False).
        worth = worth_raising(self.scenario.features, rows[features].to_numpy(dtype=float), expected)
        worth_any = worth.any(axis=1)
        judged = {name: (e.reindex(rows.index) > 1.0).to_numpy()
                  & (worth_any if getattr(detectors[name], "suppressible", True) else True)
                  for name, e in exceeding.items()}
        above = np.zeros(len(rows), dtype=bool)
        for flags in judged.values():
            above |= flags
        for i in np.flatnonzero(above):     # only buckets past some detector's threshold
            ts = rows.index[i]
            exceedances = {name: float(e[ts]) for name, e in exceeding.items() if ts in e.index}
            flagged = [n for n in exceedances if judged[n][i]]
            if not flagged or (self.scenario.combine == "all" and len(flagged) < len(detectors)):
                continue
            lead = max(flagged, key=lambda n: exceedances[n])
            severity = severity_for(exceedances[lead], self.scenario.severity)
            if severity is None:
                continue
            # Half the detector's own attribution, half each feature's deviation from its
            # profile: MVAD's pct_weight would otherwise rank volume above the real cause.
            # Calendar columns are inputs, never causes: only the scenario's features are ranked.
            # Only the features that moved enough, the way that matters, are causes.
            causes = worth[i] if worth_any[i] else np.ones(len(features), dtype=bool)
            share = np.asarray([scored[lead].at[ts, f] for f in features], dtype=float) * causes
            share = share / share.sum() if share.sum() > 0 else causes / causes.sum()
            z = np.abs(deviation[i]) * causes
            z_share = z / z.sum() if z.sum() > 0 else np.zeros_like(z)
            blend = 0.5 * share + 0.5 * z_share if z.sum() > 0 else share
            order = np.argsort(-blend, kind="stable")[:TOP_FEATURES]
            top = tuple(FeatureContribution(name=features[j], actual=float(rows.iat[i, j]),
                                            expected=float(expected[i, j]), contribution=float(blend[j]),
                                            deviation=float(deviation[i, j]))
                        for j in order if blend[j] > 0 or len(order) == 1)
            anomalies.append(Anomaly(
                scenario=self.scenario.name, detector="+".join(sorted(flagged, key=list(detectors).index)),
                window_start=ts.to_pydatetime(), window_end=(ts + step).to_pydatetime(),
                bucket_minutes=self.scenario.bucket_minutes,
                score=float(scored[lead].at[ts, "score"]), threshold=self.calibration(lead, entity).threshold,
                severity=severity, top_features=top, model_version=self.version,
                entity_field=self.scenario.entity.field if self.scenario.entity and entity is not None else None,
                entity_value=entity, description=self.scenario.description,
                title=title_of(self.scenario.features[order[0]],
                               getattr(detectors[lead], "direction", None) == "up" if getattr(detectors[lead], "direction", None)
                               else bool(deviation[i, order[0]] >= 0))))
        return anomalies


    def score_many(self, frames: dict[str | None, pd.DataFrame], *, first: float) -> list[Anomaly]:
        """score() of every entity's frame, the cheap detectors of the entities no costly
        detector models scored together as one entities x buckets array: only the entities
        with a bucket above a threshold are then scored one by one (the same anomalies)."""
        batch: dict[tuple, list] = {}
        found: list[Anomaly] = []
        for entity, frame in frames.items():
            names = self.detectors_for(entity)
            if entity is not None and len(names) and all(hasattr(d, "score_many") for d in names.values()):
                batch.setdefault((tuple(names), frame.index[0] if len(frame) else None, len(frame)),
                                 []).append(entity)
            else:
                found.extend(self.score(frame, entity, first=first))
        first_ts = _utc(first)
        for (names, _, _), entities in batch.items():
            flagged = np.zeros(len(entities), dtype=bool)
            index = frames[entities[0]].index
            kept = index >= first_ts
            epochs = (index[kept].asi8 // 10**9).tolist()
            step = max(1, len(entities) // DRIFT_SAMPLE)
            for name in names:
                detector = self.detectors[name]
                scores = detector.score_many([self.detector_input(name, frames[e]) for e in entities], entities)
                scores = scores[:, kept]
                for i, entity in enumerate(entities):
                    if not flagged[i]:
                        flagged[i] = bool(np.any(self.calibration(name, entity).exceedance(scores[i]) > 1.0))
                # A sample of the entities (every step-th) for the drift check: bounded per run.
                sample = scores[::step][:DRIFT_SAMPLE]
                self.recent_scores.setdefault(name, []).extend(
                    (t, float(v)) for row in sample for t, v in zip(epochs, row))
            for i in np.flatnonzero(flagged):
                entity = entities[i]
                recorded = {n: len(self.recent_scores.get(n, [])) for n in names}
                found.extend(self.score(frames[entity], entity, first=first))
                for n, length in recorded.items():   # recorded above already (or left out of the sample)
                    del self.recent_scores[n][length:]
        return found


def list_versions(models_dir: Path, scenario_name: str) -> list[str]:
    directory = models_dir / scenario_name
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
