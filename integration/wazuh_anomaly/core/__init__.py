"""The core: config schema, errors, paths, safe file I/O, state, trust, findings, JSON (layer 1; imports nothing else of the package)."""
