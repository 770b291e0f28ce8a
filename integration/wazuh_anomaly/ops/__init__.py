"""Operating the detector: lifecycle, backtest, report, suppression, feedback, evaluation (layer 6)."""
