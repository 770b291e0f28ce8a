"""One false-alarm budget for the whole installation (issue 14): every detector's score
becomes a tail probability, and the alert threshold follows from `alerts_per_day` and
the number of series scored, so adding entities does not add false alarms.

Generated data, no attack at all: stationary Poisson counts with a daily cycle, each
series with its own level and amplitude, 30 days (14 to train, 16 scored). Every alert
on it is a false alarm; the measured rate must stay within a factor of 2 of the budget
for 1, 10, 100 and 1,000 series. Quantile thresholds per series (the design before
this one) raise about 0.3 a day with one series and over 200 with a thousand.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from wazuh_anomaly.core.config import parse_scenario
from wazuh_anomaly.pipeline.models import ModelBundle

DAYS, TRAIN_DAYS = 30, 14
BUCKETS_PER_DAY = 288


def cyclic_counts(n_series: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-01", periods=DAYS * BUCKETS_PER_DAY, freq="5min", tz="UTC")
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60
    frames = {}
    for i in range(n_series):
        level, amplitude = rng.uniform(3, 40), rng.uniform(0.2, 0.9)
        rate = level * (1 + amplitude * np.sin(2 * np.pi * (hours - 6) / 24))
        frames[f"host-{i:04d}"] = pd.DataFrame({"events": rng.poisson(rate)}, index=index)
    return frames


def scenario(alerts_per_day: float = 1.0):
    s = parse_scenario({"name": "events", "description": "events per host", "entity": {"field": "agent.name"},
                        "features": [{"name": "events"}], "detectors": ["seasonal"]}, "events.yaml")
    # One scenario alone in its installation: the whole budget is its own.
    return replace(s, alerts_per_day=alerts_per_day)


def false_alarms_per_day(n_series: int, seed: int, alerts_per_day: float = 1.0) -> float:
    frames = cyclic_counts(n_series, seed)
    split = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=TRAIN_DAYS)
    train = {e: f[f.index < split] for e, f in frames.items()}
    bundle = ModelBundle.train(scenario(alerts_per_day), train, trained_from=0.0, trained_to=split.timestamp(),
                               now=split.timestamp())
    alarms = sum(len(bundle.score(f, e, first=split.timestamp())) for e, f in frames.items())
    return alarms / (DAYS - TRAIN_DAYS)


# Installations measured per series count: each alarm rate is pooled over this many
# generated installations (16 scored days each), so that one unlucky draw of a few
# days' training does not decide; a thousand series fit their tail on 4 million scores.
INSTALLATIONS = {1: 4, 10: 3, 100: 2, 1000: 1}


@pytest.mark.parametrize("n_series", [1, 10, 100, 1000])
def test_false_alarms_stay_within_a_factor_of_two_of_the_budget_for_any_number_of_series(n_series):
    runs = INSTALLATIONS[n_series]
    rate = sum(false_alarms_per_day(n_series, seed=1000 * n_series + k) for k in range(runs)) / runs
    assert 0.5 <= rate <= 2.0, f"{n_series} series: {rate:.2f} false alarms a day against a budget of 1"


def test_a_larger_budget_raises_proportionally_more_alarms():
    rate = sum(false_alarms_per_day(30, seed=7 + k, alerts_per_day=5.0) for k in range(2)) / 2
    assert 2.5 <= rate <= 10.0
