"""MVAD, Microsoft's multivariate anomaly detector (`time-series-anomaly-detector`).

We use the library's real network (`MultivariateGraphAttnDetector`), dataset windowing,
normalisation, loss and `pct_weight` heuristics, and work around its traps (MVAD.md):

- its `fit` writes a checkpoint before thresholds exist and into the working directory:
  we run the same training steps ourselves, keep the best weights in memory and save
  them once, after calibration;
- its default window stride (interval=10) and batch size silently make zero optimiser
  steps on days of buckets: we use interval=1, shrink the batch to the data, count the
  steps and fail loudly below `min_steps`;
- its `is_anomaly` uses a lagged rolling threshold: we only take the score and
  calibrate a threshold from the training scores (base.Calibration);
- it sorts columns alphabetically and saves no names: we keep the scenario's feature
  order and check it on load;
- it halves "volatile" variables (`pct_weight`), which hides security signals in the
  explanation: contributions are reported without that weight, beside each feature's
  deviation from its training profile;
- its loader unpickles (`torch.load(weights_only=False)`): we save the state_dict and a
  JSON config and load with `weights_only=True`;
- importing the package imports mlflow (telemetry, writes under ~) and the univariate
  stack: we import only the multivariate modules we use (see `_library`).
"""
from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import sys
import types
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import progress
from ..core.config import MvadSpec, Scenario
from ..core.registry import DETECTORS
from ..core.errors import ModelError
from ..core.trust import read_trusted
from .base import ScoreFrame, Series

WEIGHTS_FILE = "mvad.pt"
VALIDATION_WINDOWS = 512
CONFIG_FILE = "mvad.json"


class TrainingError(ModelError):
    """Training produced no usable model; the message says why and what to change."""


def quiet_library_environment(cache_dir: Path | None = None) -> None:
    """Keep the library's side effects out of the manager: no telemetry, no progress bars,
    caches under our own directory instead of root's home."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if cache_dir is not None:
        os.environ.setdefault("MPLCONFIGDIR", str(cache_dir / "matplotlib"))
        os.environ.setdefault("XDG_CACHE_HOME", str(cache_dir))
        os.environ.setdefault("XDG_CONFIG_HOME", str(cache_dir / "config"))


_LIB: types.SimpleNamespace | None = None


def _library() -> types.SimpleNamespace:
    """The multivariate modules of `anomaly_detector`, without running the package's
    __init__ (which imports mlflow, its telemetry and the univariate stack)."""
    global _LIB
    if _LIB is not None:
        return _LIB
    quiet_library_environment()
    if "anomaly_detector" not in sys.modules:
        spec = importlib.util.find_spec("anomaly_detector")
        if spec is None or not spec.submodule_search_locations:
            raise ModelError("the package time-series-anomaly-detector is not installed in this "
                             "Python environment; re-run install.sh.")
        root = list(spec.submodule_search_locations)[0]
        for name, path in (("anomaly_detector", root),
                           ("anomaly_detector.multivariate", os.path.join(root, "multivariate"))):
            package = types.ModuleType(name)
            package.__path__ = [path]
            package.__file__ = os.path.join(path, "__init__.py")
            sys.modules[name] = package
    import torch
    from anomaly_detector.multivariate import contract, dataset, module, util
    _LIB = types.SimpleNamespace(torch=torch, contract=contract, dataset=dataset, module=module, util=util)
    return _LIB


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("time-series-anomaly-detector", "torch", "numpy", "pandas"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


@DETECTORS.register("mvad")
class MvadDetector:
    name = "mvad"
    threshold_floor = None
    uses_calendar = True        # the opt-in calendar columns are inputs of the network
    needs_variation = True      # a network cannot learn from a flat line

    @classmethod
    def from_scenario(cls, scenario: Scenario, features: list[str], *, device: str = "cpu",
                      threads: int | None = None) -> "MvadDetector":
        return cls(features, scenario.mvad, device=device, threads=threads)

    @staticmethod
    def library_versions() -> dict[str, str]:
        return library_versions()

    @staticmethod
    def quiet_library_environment(cache_dir: Path | None = None) -> None:
        quiet_library_environment(cache_dir)

    def __init__(self, features: list[str], spec: MvadSpec = MvadSpec(), *, device: str = "cpu",
                 threads: int | None = None):
        self.features = list(features)
        self.spec = spec
        self.device = device
        self.threads = threads
        self.config_ = None
        self.model_ = None
        self.pct_weight_: np.ndarray | None = None
        self.training_: dict = {}

    @property
    def input_size(self) -> int:
        return self.spec.sliding_window // 2

    @property
    def context_buckets(self) -> int:
        return self.input_size

    # ------------------------------------------------------------------ training
    def _config(self, normalize_base) -> object:
        lib = _library()
        return lib.contract.MultiADConfig(
            data_dim=len(self.features), input_size=self.input_size,
            threshold_window=min(200, self.spec.sliding_window - self.input_size),
            epochs=self.spec.epochs, batch_size=self.spec.batch_size, seed=self.spec.seed,
            interval=self.spec.interval, lr=self.spec.lr, device=self.device,
            normalize_base=normalize_base, save="")

    def fit(self, series: Series) -> "MvadDetector":
        lib = _library()
        torch = lib.torch
        if self.threads:
            torch.set_num_threads(self.threads)
        arrays = [f[self.features].to_numpy(dtype=float) for f in series.values() if len(f)]
        usable = [a for a in arrays if len(a) > self.input_size + 1]
        if not usable:
            longest = max((len(a) for a in arrays), default=0)
            raise TrainingError(f"MVAD needs more than {self.input_size + 1} buckets of history per series "
                                f"and has {longest}; wait for more history or lower mvad.sliding_window.")
        # 90% of each series trains, the last 10% validates (the library wastes a further 10%).
        splits = [max(self.input_size + 1, int(len(a) * 0.9)) for a in usable]
        train_parts = [a[:s] for a, s in zip(usable, splits)]
        joined = np.concatenate(train_parts)
        max_values, min_values = joined.max(axis=0), joined.min(axis=0)
        self.pct_weight_ = np.asarray(lib.util.get_multiple_variables_pct_weight_score(
            np.concatenate(usable), self.spec.sliding_window), dtype=float)
        normalize = lib.contract.NormalizeBase(max_values=max_values.tolist(), min_values=min_values.tolist())
        config = self._config(normalize)

        consts = lib.contract.MultiADConstants
        dataset = lib.dataset.MultiADDataset

        def windows(parts, interval, clip_min, clip_max):
            sets = [dataset(p, window_size=self.input_size, interval=interval, horizon=1,
                            max_values=max_values, min_values=min_values, clip_min=clip_min, clip_max=clip_max)
                    for p in parts]
            return torch.utils.data.ConcatDataset([s for s in sets if len(s)])

        train_set = windows(train_parts, self.spec.interval, consts.TRAIN_CLIP_MIN, consts.TRAIN_CLIP_MAX)
        # Validation windows end in the held-out tail but may look back into training rows.
        val_parts = [a[max(0, s - self.input_size):] for a, s in zip(usable, splits) if len(a) - s > 0]
        val_set = windows(val_parts, 1, consts.INFERENCE_CLIP_MIN, consts.INFERENCE_CLIP_MAX) if val_parts else None
        if val_set is not None and len(val_set) > VALIDATION_WINDOWS:
            # A fixed, evenly spread subset: the same yardstick every epoch, at a bounded cost.
            keep = np.linspace(0, len(val_set) - 1, VALIDATION_WINDOWS).round().astype(int).tolist()
            val_set = torch.utils.data.Subset(val_set, keep)
        n_train = len(train_set)
        batch_size = min(self.spec.batch_size, n_train)
        if batch_size < 1:
            raise TrainingError("MVAD found no training windows; wait for more history or lower mvad.sliding_window.")
        config.batch_size = batch_size
        generator = torch.Generator().manual_seed(self.spec.seed)
        # Entity splits multiply the windows; a fresh random sample per epoch keeps the cost
        # of an epoch fixed while every window still gets its turn over the epochs.
        sampler = torch.utils.data.RandomSampler(train_set, replacement=False, generator=generator,
                                                 num_samples=min(n_train, max(self.spec.windows_per_epoch, batch_size)))
        train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, drop_last=True,
                                                   sampler=sampler, num_workers=0)
        torch.manual_seed(self.spec.seed)
        model = lib.module.MultivariateGraphAttnDetector(config).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.spec.lr)
        criterion = lib.module.AnomalyDetectionCriterion().to(self.device)
        best_loss, best_state, best_epoch, steps = float("inf"), None, 0, 0
        history = []
        with progress.steps("epoch", self.spec.epochs) as epochs:
            for epoch in range(self.spec.epochs):
                epochs.step()
                model.train()
                for inputs, target in train_loader:
                    inputs, target = inputs.to(self.device), target.to(self.device)
                    # The library trains on inputs with Gaussian noise (std 0.1); so do we.
                    inputs = inputs + torch.normal(mean=torch.zeros_like(inputs), std=torch.ones_like(inputs) * 0.1)
                    x_pred, x_recon, mu, logv = lib.module.DetectionResults(*model(inputs)).get_loss_items()
                    loss, _, _ = criterion(x_pred, x_recon, target, mu, logv, config.beta)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    steps += 1
                val_loss = self._evaluate(model, criterion, val_set if val_set is not None and len(val_set) else train_set,
                                          batch_size, config.beta)
                history.append(round(val_loss, 6))
                if val_loss < best_loss:
                    best_loss, best_state, best_epoch = val_loss, copy.deepcopy(model.state_dict()), epoch + 1
        if steps < self.spec.min_steps:
            raise TrainingError(
                f"MVAD made only {steps} optimiser steps ({n_train} training windows, batch {batch_size}, "
                f"{self.spec.epochs} epochs; at least {self.spec.min_steps} needed); train on more history "
                f"or raise mvad.epochs.")
        if best_state is None:
            raise TrainingError("MVAD's validation loss was never a number (NaN); check the scenario's features "
                                "for huge or constant values, or use detectors: [seasonal].")
        model.load_state_dict(best_state)
        model.eval()
        self.config_, self.model_ = config, model
        self.training_ = {"steps": steps, "epochs": self.spec.epochs, "best_epoch": best_epoch,
                          "train_windows": n_train, "val_windows": len(val_set) if val_set is not None else 0,
                          "batch_size": batch_size, "val_loss": history}
        return self

    def _evaluate(self, model, criterion, dataset, batch_size: int, beta: float) -> float:
        torch = _library().torch
        loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False)
        total, count = 0.0, 0
        model.eval()
        with torch.no_grad():
            for inputs, target in loader:
                inputs, target = inputs.to(self.device), target.to(self.device)
                x_pred, x_recon, mu, logv = _library().module.DetectionResults(*model(inputs)).get_loss_items()
                loss, _, _ = criterion(x_pred, x_recon, target, mu, logv, beta)
                total += float(loss.item())
                count += len(inputs)
        return total / max(count, 1)

    # ------------------------------------------------------------------ scoring
    def prediction_errors(self, values: np.ndarray) -> np.ndarray:
        """|forecast - actual| per feature of every row after the first input_size rows, in
        the units of the training range (1.0 = the whole range seen in training)."""
        lib = _library()
        torch = lib.torch
        if self.threads:
            torch.set_num_threads(self.threads)
        consts = lib.contract.MultiADConstants
        base = self.config_.normalize_base
        data = lib.dataset.MultiADDataset(values, window_size=self.input_size, interval=1, horizon=1,
                                          max_values=base.max_values, min_values=base.min_values,
                                          clip_min=consts.INFERENCE_CLIP_MIN, clip_max=consts.INFERENCE_CLIP_MAX)
        if len(data) == 0:
            return np.zeros((0, len(self.features)))
        loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=False)
        parts = []
        self.model_.eval()
        with torch.no_grad():
            for inputs, target in loader:
                x_pred, _, _, _ = lib.module.DetectionResults(*self.model_(inputs.to(self.device))).get_loss_items()
                parts.append(torch.abs(x_pred - target.to(self.device)).cpu().numpy())
        return np.concatenate(parts)

    def library_scores(self, frame: pd.DataFrame) -> np.ndarray:
        """The library's own score (`inference`): errors saturated at e-1 and weighted by
        pct_weight. Kept to check that our scoring runs the library's model faithfully."""
        errors = self.prediction_errors(frame[self.features].to_numpy(dtype=float))
        saturated = np.exp(np.minimum(2 * errors, 1.0)) - 1
        return (saturated * self.pct_weight_).mean(axis=1)

    def score(self, frame: pd.DataFrame, entity: str | None = None) -> ScoreFrame:
        if self.model_ is None:
            raise RuntimeError("score() before fit() or load()")
        values = frame[self.features].to_numpy(dtype=float)
        # The mean forecast error, neither saturated nor pct_weighted as the library's score
        # is: its cap at e-1 makes 10,000 alerts score like 50 (every anomaly "low"), and
        # pct_weight halves exactly the volatile features that carry security signals.
        raw = self.prediction_errors(values)
        scores = raw.mean(axis=1) if len(raw) else np.zeros(0)
        totals = raw.sum(axis=1, keepdims=True)
        shares = np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)
        out = pd.DataFrame(shares, index=frame.index[self.input_size:], columns=self.features)
        out.insert(0, "score", scores)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        torch = _library().torch
        config = asdict(self.config_)
        payload = {"features": self.features, "spec": asdict(self.spec), "config": config,
                   "pct_weight": self.pct_weight_.tolist(), "training": self.training_}
        torch.save(self.model_.state_dict(), directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, features: list[str], *, device: str = "cpu",
             threads: int | None = None) -> "MvadDetector":
        lib = _library()
        data = json.loads(read_trusted(directory / CONFIG_FILE))
        if data["features"] != list(features):
            raise ModelError(f"{directory}: the MVAD model was trained on features {data['features']}, "
                             f"but the scenario now has {list(features)}; retrain with 'wazuh-anomaly train'.")
        detector = cls(features, MvadSpec(**data["spec"]), device=device, threads=threads)
        config = dict(data["config"])
        config["normalize_base"] = lib.contract.NormalizeBase(**config["normalize_base"])
        config["device"] = device
        detector.config_ = lib.contract.MultiADConfig(**config)
        model = lib.module.MultivariateGraphAttnDetector(detector.config_)
        # weights_only: a model file is data, never code.
        state = lib.torch.load(io.BytesIO(read_trusted(directory / WEIGHTS_FILE)), map_location=device,
                               weights_only=True)
        model.load_state_dict(state)
        model.to(device).eval()
        detector.model_ = model
        detector.pct_weight_ = np.asarray(data["pct_weight"], dtype=float)
        detector.training_ = data.get("training", {})
        return detector
