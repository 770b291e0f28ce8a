"""Output: anomaly lines, their text, the exactly-once append and shipping to the indexer (layer 3)."""
