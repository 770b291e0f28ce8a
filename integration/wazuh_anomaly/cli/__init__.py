"""Command line: thin commands over the library (layer 7; nothing imports it).

The console script is `wazuh_anomaly.cli:main`."""

from .app import main

__all__ = ["main"]
