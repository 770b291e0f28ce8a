"""MVAD through the real time-series-anomaly-detector, with its traps handled (MVAD.md)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wazuh_anomaly.core.config import MvadSpec
from wazuh_anomaly.detectors.mvad import MvadDetector, TrainingError, _library
from wazuh_anomaly.core.errors import ModelError

SMALL = MvadSpec(sliding_window=16, epochs=4, batch_size=32, windows_per_epoch=256, min_steps=10)
FEATURES = ["logins", "failures", "distinct_users"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-03-01", periods=3 * 288, freq="5min", tz="UTC", name="bucket")
    base = 3 + 2 * np.sin(2 * np.pi * index.hour.to_numpy() / 24)
    frame = pd.DataFrame(np.column_stack([rng.poisson(base), rng.poisson(base / 2), rng.poisson(1, len(index))]).astype(float),
                         index=index, columns=FEATURES)
    cwd = tmp_path_factory.mktemp("cwd")
    old = os.getcwd()
    os.chdir(cwd)
    try:
        detector = MvadDetector(FEATURES, SMALL, threads=1).fit({None: frame})
    finally:
        os.chdir(old)
    return detector, frame, cwd


def test_training_really_steps_on_days_of_buckets(trained):
    detector, _, _ = trained
    # The library's own defaults (interval=10, batch 128, drop_last) make zero steps here.
    assert detector.training_["steps"] >= SMALL.min_steps
    assert detector.training_["train_windows"] > 600
    assert 1 <= detector.training_["best_epoch"] <= SMALL.epochs


def test_training_leaves_no_files_in_the_working_directory(trained):
    _, _, cwd = trained
    assert list(cwd.iterdir()) == []


def test_too_short_history_is_a_clear_error_not_a_random_model():
    index = pd.date_range("2024-03-01", periods=6, freq="5min", tz="UTC")
    frame = pd.DataFrame(np.ones((6, 3)), index=index, columns=FEATURES)
    with pytest.raises(TrainingError, match="buckets of history"):
        MvadDetector(FEATURES, SMALL).fit({None: frame})


def test_too_few_optimiser_steps_fail_instead_of_returning_an_untrained_model(seasonal_frame):
    spec = MvadSpec(sliding_window=16, epochs=1, batch_size=32, windows_per_epoch=64, min_steps=50)
    with pytest.raises(TrainingError, match="optimiser steps"):
        MvadDetector(FEATURES, spec).fit({None: seasonal_frame.set_axis(FEATURES, axis=1)})


def test_scores_cover_every_bucket_after_the_context(trained):
    detector, frame, _ = trained
    scored = detector.score(frame)
    assert len(scored) == len(frame) - detector.context_buckets
    assert list(scored.columns) == ["score", *FEATURES]
    shares = scored[FEATURES].sum(axis=1)
    assert np.allclose(shares[shares > 0], 1.0)


def test_a_burst_scores_higher_than_ordinary_buckets(trained):
    detector, frame, _ = trained
    burst = frame.copy()
    burst.iloc[-1] = [60.0, 40.0, 15.0]
    normal = detector.score(frame)["score"]
    assert detector.score(burst)["score"].iloc[-1] > normal.quantile(0.999)


def test_saved_model_reloads_with_weights_only_and_scores_identically(trained, tmp_path):
    detector, frame, _ = trained
    detector.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mvad.json", "mvad.pt"]
    loaded = MvadDetector.load(tmp_path, FEATURES)
    pd.testing.assert_frame_equal(detector.score(frame), loaded.score(frame))


def test_a_pickled_payload_in_the_weights_file_is_never_executed(trained, tmp_path):
    detector, _, _ = trained
    detector.save(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "mvad.pt").write_bytes(pickle.dumps({"state": Payload()}))
    with pytest.raises(Exception):
        MvadDetector.load(tmp_path, FEATURES)
    assert not marker.exists()


def test_a_model_for_other_features_is_refused(trained, tmp_path):
    detector, _, _ = trained
    detector.save(tmp_path)
    with pytest.raises(ModelError, match="retrain"):
        MvadDetector.load(tmp_path, list(reversed(FEATURES)))


def test_scores_match_the_librarys_own_inference(trained):
    """Our scoring loop reproduces MultivariateAnomalyDetector.inference on the same weights."""
    detector, frame, _ = trained
    from anomaly_detector.multivariate.model import MultivariateAnomalyDetector
    library = MultivariateAnomalyDetector()
    library.config = detector.config_
    library.model = detector.model_
    library.pct_weight = detector.pct_weight_.tolist()
    _, totals, _, _, _, _ = library.inference(frame[FEATURES].to_numpy(dtype=float), compute_attn=False)
    assert np.allclose(detector.library_scores(frame), np.asarray(totals), atol=1e-6)


def test_the_score_grows_with_the_size_of_the_deviation_instead_of_saturating(trained):
    """The library's score caps every feature's error at e-1; ours keeps growing."""
    detector, frame, _ = trained
    big, huge = frame.copy(), frame.copy()
    big.iloc[-1] = [60.0, 40.0, 15.0]
    huge.iloc[-1] = [6000.0, 4000.0, 1500.0]
    assert detector.score(huge)["score"].iloc[-1] > 10 * detector.score(big)["score"].iloc[-1]
    assert np.isclose(detector.library_scores(huge)[-1], detector.library_scores(big)[-1], rtol=0.05)


def test_scoring_does_not_import_mlflow(trained):
    import subprocess
    import sys
    code = ("import sys; from wazuh_anomaly.detectors.mvad import _library; _library(); "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert _library().torch is not None


def test_a_weights_file_others_can_write_is_refused(trained, tmp_path):
    detector, _, _ = trained
    detector.save(tmp_path)
    os.chmod(tmp_path / "mvad.pt", 0o646)
    with pytest.raises(ModelError, match="writable by group or others"):
        MvadDetector.load(tmp_path, FEATURES)


def test_a_symlinked_weights_file_is_refused(trained, tmp_path):
    detector, _, _ = trained
    real = tmp_path / "elsewhere"
    real.mkdir()
    detector.save(real)
    model = tmp_path / "model"
    model.mkdir()
    (model / "mvad.json").write_bytes((real / "mvad.json").read_bytes())
    os.symlink(real / "mvad.pt", model / "mvad.pt")
    with pytest.raises(ModelError, match="symbolic link"):
        MvadDetector.load(model, FEATURES)
