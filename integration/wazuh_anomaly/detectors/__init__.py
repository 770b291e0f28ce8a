"""Detectors share one small interface (see `base.Detector`), so the scoring loop never
knows which one it drives: `fit(series) -> self`, `score(frame) -> DataFrame`,
`save(dir)` / `load(dir)`. Thresholds and severities are computed once, outside them,
in `base.Calibration`."""
from .base import Calibration, Detector, ScoreFrame
from .profile import SeasonalProfile
from .seasonal import SeasonalDetector
from .silence import SilenceDetector

DETECTOR_CLASSES = {"seasonal": SeasonalDetector, "silence": SilenceDetector}


def detector_class(name: str) -> type:
    """The class of a detector by its scenario name; MVAD is imported only when used."""
    if name == "mvad":
        from .mvad import MvadDetector
        return MvadDetector
    return DETECTOR_CLASSES[name]


__all__ = ["Calibration", "Detector", "ScoreFrame", "SeasonalProfile", "SeasonalDetector", "SilenceDetector",
           "detector_class"]
