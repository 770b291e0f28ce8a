"""Calendar awareness, opt-in per scenario (`calendar: {hour_of_day: true, weekday: true}`):
the time of day and the day of the week as extra MVAD inputs, so that a burst that comes
every Monday morning is part of normal instead of an anomaly.

Each is a sine/cosine pair (23:55 sits next to 00:00, Sunday next to Monday), computed
from the bucket's start in UTC. They are inputs only: they are never ranked among an
anomaly's top contributors, and the model's meta.json lists them so that a model trained
without them is refused (retrain) once a scenario turns them on, and the other way round.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

HOUR_OF_DAY = ("calendar_hour_sin", "calendar_hour_cos")
WEEKDAY = ("calendar_weekday_sin", "calendar_weekday_cos")
CALENDAR_FEATURES = HOUR_OF_DAY + WEEKDAY


def calendar_names(scenario) -> list[str]:
    """The calendar columns a scenario adds to MVAD's input, in a fixed order."""
    spec = scenario.calendar
    return [*(HOUR_OF_DAY if spec.hour_of_day else ()), *(WEEKDAY if spec.weekday else ())]


def calendar_columns(index: pd.DatetimeIndex, names: list[str]) -> np.ndarray:
    hours = np.asarray(index.hour) + np.asarray(index.minute) / 60.0
    days = np.asarray(index.weekday) + hours / 24.0
    angle = {"hour": 2 * np.pi * hours / 24.0, "weekday": 2 * np.pi * days / 7.0}
    columns = []
    for name in names:
        _, unit, fn = name.split("_")
        columns.append((np.sin if fn == "sin" else np.cos)(angle[unit]))
    return np.column_stack(columns) if columns else np.zeros((len(index), 0))


def with_calendar(frame: pd.DataFrame, scenario) -> pd.DataFrame:
    """The frame with the scenario's calendar columns appended (the frame itself when none)."""
    names = calendar_names(scenario)
    if not names:
        return frame
    extra = pd.DataFrame(calendar_columns(frame.index, names), index=frame.index, columns=names)
    return pd.concat([frame, extra], axis=1)
