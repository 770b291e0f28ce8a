"""`python -m wazuh_anomaly.cli`."""
import sys

from .app import main

sys.exit(main())
