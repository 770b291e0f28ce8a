"""Aggregation of alerts into per-bucket feature frames (layer 2)."""
