"""The scheduled pipeline: source, aggregation, detectors, calibration, emitter (layer 5)."""
