"""The Wazuh indexer (OpenSearch) client and its alert indices (layer 2)."""
