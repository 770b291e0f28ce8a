"""NetFlow: pmacct/nfacctd flow records -> normalised flow events with anomaly tags,
appended to a file Wazuh reads (`<localfile>` json), raising rules 117000-117009 and 117040.

normalize  pmacct record -> normalised event (direction, protocol, service, TCP flags, ISO times)
detect     sliding-window flow detections that add `anomaly.tags`
stream     one pass or follow mode over a pmacct file, resume offset and windows persisted
generate   synthetic flows for every detection (wazuh-logtest validation, rule tests)
cases      the rule tests of tests/ruleset/wazuh_anomaly_netflow_rules.ini
flows_source  the normalised flow events as a source for learned flow baselines
(the `wazuh-anomaly netflow …` subcommands are in cli/netflow.py)
"""
