"""wazuh-anomaly: learns normal behaviour from a Wazuh manager's alerts and raises
anomalies as native Wazuh alerts (rules 117xxx)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
