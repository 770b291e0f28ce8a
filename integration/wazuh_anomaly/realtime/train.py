"""Training the rare-event models (CLI/wodle side: scikit-learn and numpy are fine here).

Fits scikit-learn's IsolationForest on the hashed features of the history's FIM or
command events and exports what scoring needs as JSON (`rarity.RareEventModel`):
per tree the children, split feature and threshold of each node, and per leaf its
path length, depth + c(samples in the leaf), exactly the quantity score_samples
averages. The threshold is a quantile of the training events' own scores.
"""
from __future__ import annotations

import json
import os
import time

from ..core.errors import ModelError
from .rarity import FORMAT, FORMAT_VERSION, average_path_length, extract, vector
from ..core.fileio import atomic_write, makedirs

MODEL_MODE = 0o640


class TooFewEvents(ModelError):
    """The history holds fewer events than the model's min_training_events."""


def training_rows(spec: dict, alerts) -> list[dict[int, float]]:
    rows = []
    for alert in alerts:
        got = extract(spec["target"], alert, ignore_users=spec["ignore_users"],
                      ignore_path_prefixes=spec["ignore_path_prefixes"])
        if got is not None:
            rows.append(vector(got[1], spec["dimensions"]))
    return rows


def _export_tree(tree) -> dict:
    t = tree.tree_
    left, right = t.children_left.tolist(), t.children_right.tolist()
    depth = [0] * t.node_count
    for node in range(t.node_count):  # parents come before their children in sklearn's arrays
        if left[node] != -1:
            depth[left[node]] = depth[node] + 1
            depth[right[node]] = depth[node] + 1
    samples = t.n_node_samples.tolist()
    return {
        "left": left, "right": right,
        "feature": [int(f) if f >= 0 else 0 for f in t.feature.tolist()],
        "threshold": [round(float(x), 6) for x in t.threshold.tolist()],
        "path_length": [round(depth[n] + average_path_length(samples[n]), 6) if left[n] == -1 else 0
                        for n in range(t.node_count)],
    }


def fit(spec: dict, rows: list[dict[int, float]], *, seed: int = 0) -> dict:
    """The model document for `rows` (sparse hashed vectors)."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    if len(rows) < spec["min_training_events"]:
        raise TooFewEvents(f"model {spec['name']}: {len(rows)} {spec['target']} events in the history, it needs "
                         f"{spec['min_training_events']}; learn from a longer range or lower min_training_events.")
    X = np.zeros((len(rows), spec["dimensions"]))
    for i, row in enumerate(rows):
        for j, v in row.items():
            X[i, j] = v
    sample_size = min(spec["sample_size"], len(rows))
    forest = IsolationForest(n_estimators=spec["trees"], max_samples=sample_size, random_state=seed).fit(X)
    if getattr(forest, "_max_features", X.shape[1]) != X.shape[1] or forest.max_features != 1.0:
        raise ModelError("IsolationForest must use every feature (max_features=1.0) for the export to score alike")
    scores = -forest.score_samples(X)
    threshold = float(np.quantile(scores, spec["quantile"]))
    import sklearn
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "name": spec["name"], "target": spec["target"],
        "dimensions": spec["dimensions"], "threshold": round(threshold, 6),
        "average_path_length": average_path_length(sample_size),
        "training_events": len(rows), "sample_size": sample_size,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sklearn": sklearn.__version__,
        "trees": [_export_tree(est) for est in forest.estimators_],
    }


def save(doc: dict, models_dir: str) -> str:
    makedirs(models_dir, 0o750)
    path = os.path.join(models_dir, f"{doc['name']}.json")
    # Not group-writable: trust.read_trusted refuses a model someone else could have written.
    atomic_write(path, json.dumps(doc, separators=(",", ":")).encode(), mode=MODEL_MODE)
    return path
