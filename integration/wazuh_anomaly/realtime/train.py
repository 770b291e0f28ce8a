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
from .rarity import FORMAT, FORMAT_VERSION, MAX_KNOWN, average_path_length, extract, vector, vector_key
from ..core.fileio import atomic_write, makedirs

MODEL_MODE = 0o640


class TooFewEvents(ModelError):
    """The history holds fewer events than the model's min_training_events."""


# A forest grows each tree on `sample_size` (128) events: more rows than this only cost
# memory (a dense float row of `dimensions` each); beyond it, a uniform sample is kept.
MAX_TRAINING_ROWS = 50_000


class TrainingRows:
    """The hashed vectors of one model's events, collected while the history streams by
    (never the alerts themselves: 30 days of them are gigabytes), from `since` on
    (everything when None); beyond MAX_TRAINING_ROWS a uniform reservoir sample."""

    def __init__(self, spec: dict, since: float | None = None, *, seed: int = 0):
        import random
        self.spec = spec
        self.since = since
        self.rows: list[dict[int, float]] = []
        self.seen = 0
        self._random = random.Random(seed)

    def add(self, alert: dict, t: float | None = None) -> None:
        if self.since is not None and t is not None and t < self.since:
            return
        got = extract(self.spec["target"], alert, ignore_users=self.spec["ignore_users"],
                      ignore_path_prefixes=self.spec["ignore_path_prefixes"])
        if got is None:
            return
        self.seen += 1
        if len(self.rows) < MAX_TRAINING_ROWS:
            self.rows.append(vector(got[1], self.spec["dimensions"]))
            return
        slot = self._random.randrange(self.seen)
        if slot < MAX_TRAINING_ROWS:
            self.rows[slot] = vector(got[1], self.spec["dimensions"])


def training_rows(spec: dict, alerts) -> list[dict[int, float]]:
    collected = TrainingRows(spec)
    for alert in alerts:
        collected.add(alert)
    return collected.rows


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


# What each target learns from, in the words `status` and the health alert use.
EVENTS = {"fim": "file integrity events (syscheck alerts with syscheck.path)",
          "command": "command events (audit EXECVE alerts with data.audit.exe or .command, sudo alerts with data.command)"}


def fit(spec: dict, rows: list[dict[int, float]], *, seed: int = 0, where: str = "the history") -> dict:
    """The model document for `rows` (sparse hashed vectors) read from `where`."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    if len(rows) < spec["min_training_events"]:
        hint = ("no agent reports them (enable syscheck, or leave the model off)" if not rows
                and spec["target"] == "fim" else "no agent reports them (enable auditd EXECVE rules or sudo logging)"
                if not rows else "learn from a longer range (training_days) or lower min_training_events")
        raise TooFewEvents(f"model {spec['name']}: {len(rows)} {EVENTS[spec['target']]} in {where}, it needs "
                           f"{spec['min_training_events']}; {hint}.")
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
    known = sorted({vector_key(row) for row in rows})
    import sklearn
    return {
        "format": FORMAT, "version": FORMAT_VERSION, "name": spec["name"], "target": spec["target"],
        "dimensions": spec["dimensions"], "threshold": round(threshold, 6),
        "average_path_length": average_path_length(sample_size),
        "training_events": len(rows), "sample_size": sample_size,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sklearn": sklearn.__version__,
        "trees": [_export_tree(est) for est in forest.estimators_],
        **({"known": known} if len(known) <= MAX_KNOWN else {}),
    }


def save(doc: dict, models_dir: str) -> str:
    makedirs(models_dir, 0o750)
    path = os.path.join(models_dir, f"{doc['name']}.json")
    # Not group-writable: trust.read_trusted refuses a model someone else could have written.
    atomic_write(path, json.dumps(doc, separators=(",", ":")).encode(), mode=MODEL_MODE)
    return path
