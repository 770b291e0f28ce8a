"""Detectors share one small interface (see `base.Detector`), so the scoring loop never
knows which one it drives: `from_scenario(scenario, features, device=, threads=)`,
`fit(series) -> self`, `score(frame) -> DataFrame`, `save(dir)` / `load(dir, features)`.
Thresholds and severities are computed once, outside them, in `base.Calibration`.

Each detector registers itself by name (`core.registry.DETECTORS`); a scenario lists
the names it wants. Every module of this package is imported when the registry is
first used, so a new detector is one module here (docs/architecture.md).
"""
from ..core.registry import DETECTORS
from .base import Calibration, Detector, ScoreFrame
from . import mvad   # noqa: F401  (registers first: names are listed in registration order)
from .profile import SeasonalProfile
from .seasonal import SeasonalDetector
from .silence import SilenceDetector


def detector_class(name: str) -> type:
    """The class of a detector by its scenario name (an error sentence naming the choices)."""
    return DETECTORS.get(name)


def library_versions() -> dict[str, str]:
    """The versions of the libraries the registered detectors depend on, for model metadata."""
    versions: dict[str, str] = {}
    for name in DETECTORS.names():
        versions.update(getattr(DETECTORS.get(name), "library_versions", dict)())
    return versions


def quiet_libraries(cache_dir=None) -> None:
    """Keep every registered detector's libraries quiet and their caches under `cache_dir`
    (set before the libraries are imported)."""
    for name in DETECTORS.names():
        quiet = getattr(DETECTORS.get(name), "quiet_library_environment", None)
        if quiet is not None:
            quiet(cache_dir)


__all__ = ["Calibration", "Detector", "ScoreFrame", "SeasonalProfile", "SeasonalDetector", "SilenceDetector",
           "detector_class", "library_versions", "quiet_libraries"]
