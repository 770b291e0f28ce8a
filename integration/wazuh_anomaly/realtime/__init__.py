"""The real-time path: what `integrations/custom-anomaly` runs once per alert.

wazuh-integratord starts a new process for every alert, so everything imported from
here stays light (standard library only: no numpy, pandas, torch or YAML on that
path). `detectors` holds the first-seen family, `rarity` the rare-event models,
`store` the state shared between concurrent runs, `events` the schema v1 lines,
`integration` the entry point and `response` the active response.
"""
