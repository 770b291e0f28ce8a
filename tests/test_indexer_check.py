"""`wazuh-anomaly check` and the indexer connection, on a real OpenSearch with TLS and
basic auth: each failure is one sentence that says what to do, and no secret leaks."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from indexer_fixtures import REPO, ait_indexed, opensearch  # noqa: F401 (fixtures)
from wazuh_anomaly.core.config import IndexerSpec, parse_scenario
from wazuh_anomaly.features.aggregate import FeatureAggregator
from wazuh_anomaly.core.indexer import IndexerError, check, resolve_credentials
from wazuh_anomaly.sources import SourceUnreadable
from wazuh_anomaly.sources.indexer import IndexerSource

NOWHERE = Path("/nonexistent")


def failed(lines):
    bad = [line for line in lines if not line.ok]
    assert len(bad) == 1, lines
    return bad[0]


def test_check_reports_every_step_on_a_healthy_indexer(opensearch, ait_indexed):
    lines = check(opensearch.spec(), NOWHERE)
    assert [line.name for line in lines] == ["credentials", "reachable", "tls", "auth", "health", "indices", "time field"]
    assert all(line.ok for line in lines), lines
    assert "verified against" in lines[2].message


def test_wrong_password_is_one_sentence_naming_the_fix(opensearch):
    line = failed(check(opensearch.spec(password="wrong-password", retries=0), NOWHERE))
    assert line.name == "auth"
    assert "rejected the username or password" in line.message and "wazuh-keystore" in line.message
    assert "wrong-password" not in line.message


def test_a_certificate_from_another_ca_fails_tls_verification(opensearch, tmp_path):
    other = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(other)], check=True, capture_output=True)
    line = failed(check(opensearch.spec(ca=str(other), retries=0), NOWHERE))
    assert line.name == "tls"
    assert "not signed by the CA" in line.message and "indexer.ca" in line.message


def test_an_unreadable_ca_file_is_named(opensearch):
    line = failed(check(opensearch.spec(ca="/nonexistent/root-ca.pem"), NOWHERE))
    assert "/nonexistent/root-ca.pem cannot be read" in line.message


def test_no_alert_index_is_reported_with_the_fix(opensearch):
    line = failed(check(opensearch.spec(index="wazuh-alerts-none-*"), NOWHERE))
    assert line.name == "indices"
    assert "No index matches wazuh-alerts-none-*" in line.message


def test_an_unreachable_host_is_reported(opensearch):
    line = failed(check(opensearch.spec(hosts=("https://127.0.0.1:1",), retries=1), NOWHERE))
    assert line.name == "reachable" and "unreachable" in line.message


def test_a_time_field_that_is_not_a_date_is_reported(opensearch, ait_indexed):
    line = failed(check(opensearch.spec(time_field="rule.id"), NOWHERE))
    assert line.name == "time field" and "not as a date" in line.message


STRING_MAX = {"name": "string_max", "description": "max of a keyword field", "entity": {"field": "agent.name"},
              "features": [{"name": "top_agent", "aggregation": "max", "field": "agent.ip"}]}


def test_a_numeric_feature_on_a_keyword_field_is_a_clear_error(opensearch, ait_indexed):
    scenario = parse_scenario(STRING_MAX, "string_max.yaml")
    line = failed(check(opensearch.spec(), NOWHERE, [scenario]))
    assert "agent.ip, which the alert indices map as keyword, not a number" in line.message
    source = IndexerSource(opensearch.spec(), NOWHERE)
    with pytest.raises(SourceUnreadable, match="map it as a number in the index template"):
        source.push_down([FeatureAggregator(scenario, 1642723200, 1642723200 + 3600)], 1642723200, 1642723200 + 3600)


def test_credentials_come_from_config_then_environment_then_keystore(tmp_path):
    spec = IndexerSpec(username="", password="", keystore=True)
    assert resolve_credentials(spec, tmp_path, environ={}) is None
    env = {"WAZUH_ANOMALY_INDEXER_USERNAME": "reader", "WAZUH_ANOMALY_INDEXER_PASSWORD": "s3cret"}
    creds = resolve_credentials(spec, tmp_path, environ=env)
    assert (creds.username, creds.password) == ("reader", "s3cret") and "s3cret" not in repr(creds)
    # a manager's keystore: bin/wazuh-keystore -f indexer -k <key> prints the value
    tool = tmp_path / "bin" / "wazuh-keystore"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = \"-f indexer -k\" ] || exit 1\n"
                    "case $4 in username) echo kbuser;; password) echo kbpass;; *) exit 1;; esac\n")
    tool.chmod(stat.S_IRWXU)
    creds = resolve_credentials(spec, tmp_path, environ={})
    assert (creds.username, creds.password, creds.origin) == ("kbuser", "kbpass", "the wazuh-keystore")
    creds = resolve_credentials(IndexerSpec(username="admin"), tmp_path, environ={})
    assert (creds.username, creds.password) == ("admin", "kbpass")
    with pytest.raises(IndexerError, match="password is not set"):
        resolve_credentials(IndexerSpec(username="admin", keystore=False), tmp_path, environ={})


def test_the_check_command_prints_one_line_per_step_and_exits_nonzero_on_failure(opensearch, ait_indexed, tmp_path):
    prefix = tmp_path / "ossec"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (prefix / "etc" / "anomaly" / "config.yaml").write_text(
        f"source:\n  type: indexer\nindexer:\n  hosts: ['{opensearch.url}']\n  ca: {opensearch.ca}\n  username: admin\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "integration"), WAZUH_ANOMALY_INDEXER_PASSWORD=opensearch.password)
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "check"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   indices: " in done.stdout
    env["WAZUH_ANOMALY_INDEXER_PASSWORD"] = "nope"
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "check"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "FAIL auth: The indexer" in done.stdout and "Traceback" not in done.stderr
    assert opensearch.password not in done.stdout + done.stderr
