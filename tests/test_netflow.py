"""NetFlow normaliser, flow detections, follow mode and generator."""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from conftest import REPO, SHARED_DATA, need_shared_data
from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.errors import ConfigError, WazuhAnomalyError
from wazuh_anomaly.netflow.detect import FlowDetector
from wazuh_anomaly.netflow.generate import SCENARIOS, raw_records, tagged_events
from wazuh_anomaly.netflow.normalize import BadRecord, Normalizer
from wazuh_anomaly.netflow.settings import NetflowSettings, load_netflow_settings
from wazuh_anomaly.netflow.stream import FlowPipeline, follow, normalize_file, state_file_for
from wazuh_anomaly.core.paths import Layout

PMACCT = SHARED_DATA / "pmacct"
PMACCTD_LINE = {"event_type": "purge", "ip_src": "147.32.80.40", "ip_dst": "147.32.80.37", "port_src": 36679,
                "port_dst": 902, "tcp_flags": "6", "ip_proto": "tcp", "stamp_inserted": "2026-03-22 22:47:00",
                "stamp_updated": "2026-11-21 23:31:31", "packets": 2, "bytes": 84}
NFACCTD_LINE = {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": "10.1.2.3", "ip_dst": "2001:db8::5",
                "port_src": 0, "port_dst": 8 * 256, "tcp_flags": "0", "ip_proto": "ipv6-icmp",
                "timestamp_start": "2026-03-22 22:47:01.250000", "timestamp_end": "2026-03-22 22:47:03.750000",
                "packets": 3, "bytes": 192}




def events_of(path: Path, settings: NetflowSettings | None = None) -> list[dict]:
    pipeline = FlowPipeline(settings or NetflowSettings())
    return [pipeline.event(json.loads(line)) for line in path.read_text().splitlines()]


# -- normaliser ------------------------------------------------------------------------

def test_pmacctd_print_plugin_record_becomes_the_design_shape():
    event = Normalizer().normalize(dict(PMACCTD_LINE))
    assert event["netflow"] == "true"
    assert event["source"] == {"ip": "147.32.80.40", "port": 36679}
    assert event["destination"] == {"ip": "147.32.80.37", "port": 902}
    assert event["flow"] == {"protocol": "tcp", "direction": "external_to_external", "tcp_flags": "SYN,RST"}
    assert event["network"] == {"bytes": 84, "packets": 2}
    assert event["event"] == {"start": "2026-03-22T22:47:00Z", "type": "connection", "category": "network"}
    assert event["service"] == {"name": "vmware-auth"}
    assert event["anomaly"] == {"tags": []}
    assert event["srcip"] == "147.32.80.40" and event["dstip"] == "147.32.80.37"


def test_nfacctd_record_has_duration_exporter_and_icmp_type_from_port_dst():
    event = Normalizer().normalize(dict(NFACCTD_LINE))
    assert event["flow"]["protocol"] == "icmpv6"
    assert (event["flow"]["icmp_type"], event["flow"]["icmp_code"]) == (8, 0)
    assert "port" not in event["destination"] and "service" not in event
    assert event["event"]["start"] == "2026-03-22T22:47:01.250000Z"
    assert event["event"]["duration"] == 2.5
    assert event["observer"] == {"collector": "nfacctd", "exporter": "10.0.0.1"}
    assert event["flow"]["direction"] == "internal_to_external"


def test_exporter_without_flow_times_falls_back_to_the_bin_stamp():
    record = dict(NFACCTD_LINE, timestamp_start="0000-00-00 00:00:00", timestamp_end="0000-00-00 00:00:00",
                  stamp_inserted="2026-03-22 22:47:00")
    event = Normalizer().normalize(record)
    assert event["event"]["start"] == "2026-03-22T22:47:00Z" and "duration" not in event["event"]


def test_direction_follows_internal_networks_for_ipv4_and_ipv6():
    settings = load_netflow_settings(Layout.from_env("/nonexistent"), internal_networks="147.32.0.0/16,2001:db8::/32")
    n = Normalizer(settings)
    assert n.normalize(dict(PMACCTD_LINE))["flow"]["direction"] == "internal_to_internal"
    assert n.normalize(dict(NFACCTD_LINE))["flow"]["direction"] == "external_to_internal"
    # internal sources never go into the static srcip that firewall-drop acts on
    assert "srcip" not in n.normalize(dict(PMACCTD_LINE))


def test_internal_networks_from_the_environment_and_bad_ones_named(monkeypatch):
    monkeypatch.setenv("WAZUH_ANOMALY_INTERNAL_NETWORKS", "198.51.100.0/24")
    assert load_netflow_settings(Layout.from_env("/nonexistent")).internal_networks == ("198.51.100.0/24",)
    monkeypatch.setenv("WAZUH_ANOMALY_INTERNAL_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ConfigError, match="WAZUH_ANOMALY_INTERNAL_NETWORKS.*10.0.0.0/33"):
        load_netflow_settings(Layout.from_env("/nonexistent"))


def test_settings_file_sets_thresholds_and_names_unknown_keys(tmp_path):
    path = tmp_path / "netflow.yaml"
    path.write_text("internal_networks: [10.0.0.0/8]\nthresholds:\n  port_scan_ports: 5\n")
    s = load_netflow_settings(Layout.from_env(tmp_path), path)
    assert s.thresholds.port_scan_ports == 5 and s.thresholds.port_scan_hosts == 10
    path.write_text("thresholds:\n  port_scan_portz: 5\n")
    with pytest.raises(ConfigError, match="thresholds.port_scan_portz.*did you mean 'thresholds.port_scan_ports'"):
        load_netflow_settings(Layout.from_env(tmp_path), path)


@pytest.mark.parametrize("change, reason", [
    ({"ip_src": None}, "ip_src is missing"),
    ({"ip_dst": "not-an-ip"}, "'not-an-ip' is not an IP address"),
    ({"bytes": -5}, "bytes -5 is a negative count"),
    ({"port_dst": 70000}, "port_dst 70000 is not a port number"),
    ({"stamp_inserted": "yesterday"}, "stamp_inserted 'yesterday' is not a time"),
    ({"tcp_flags": "SYN"}, "tcp_flags 'SYN' is not a number"),
])
def test_bad_records_are_refused_with_the_reason(change, reason):
    record = dict(PMACCTD_LINE, **change)
    record = {k: v for k, v in record.items() if v is not None}
    with pytest.raises(BadRecord, match=reason):
        Normalizer().normalize(record)


def test_bad_lines_are_counted_skipped_and_named_by_file_and_line(tmp_path, caplog):
    src = tmp_path / "flows.json"
    src.write_text(json.dumps(PMACCTD_LINE) + "\nnot json\n" + json.dumps(dict(PMACCTD_LINE, bytes="x")) + "\n"
                   + json.dumps(PMACCTD_LINE) + "\n")
    out = tmp_path / "out.json"
    with caplog.at_level("WARNING", logger="wazuh_anomaly"):
        stats = normalize_file(src, lambda d: out.open("ab").write(d), NetflowSettings())
    assert (stats.records, stats.skipped) == (2, 2)
    assert f"{src}:2: skipped, not a JSON line." in caplog.text
    assert f"{src}:3: skipped, bytes 'x' is not a count." in caplog.text
    assert len(out.read_text().splitlines()) == 2


# -- detections on real data -----------------------------------------------------------

def test_real_icmp_sweep_is_tagged_as_a_port_scan_from_the_sweeper_only():
    need_shared_data("pmacct/test12-icmp-portscan.json")
    events = events_of(PMACCT / "test12-icmp-portscan.json")
    tagged = [e for e in events if "possible_port_scan" in e["anomaly"]["tags"]]
    assert tagged and {e["source"]["ip"] for e in tagged} == {"192.168.1.109"}
    # from the 10th distinct host on (port_scan_hosts), every further probe
    assert len(tagged) == len({e["destination"]["ip"] for e in events if e["source"]["ip"] == "192.168.1.109"}) - 9


def test_real_ssh_brute_force_is_tagged_and_the_servers_replies_are_not_a_port_scan():
    need_shared_data("pmacct/malicious-ssh-bruteforce.json")
    events = events_of(PMACCT / "malicious-ssh-bruteforce.json")
    tags = {(e["source"]["ip"], t) for e in events for t in e["anomaly"]["tags"]}
    # the server answers to 68 different client ports: replies, not a scan of the client
    assert tags == {("147.32.80.40", "possible_brute_force")}


# -- detections on generated data ------------------------------------------------------

@pytest.mark.parametrize("scenario", [n for n, (_, tag) in SCENARIOS.items() if tag])
def test_every_generator_scenario_yields_events_with_its_tag(scenario):
    _, tag = SCENARIOS[scenario]
    events = tagged_events(scenario, 4)
    assert len(events) == 4 and all(tag in e["anomaly"]["tags"] for e in events)


def test_beaconing_is_tagged_while_random_traffic_to_the_same_host_is_not():
    pipeline = FlowPipeline(NetflowSettings())
    beacon = [pipeline.event(r) for r in raw_records("beaconing", 20)]
    control = [pipeline.event(r) for r in raw_records("random_traffic", 40)]
    assert sum("possible_beaconing" in e["anomaly"]["tags"] for e in beacon) == 20
    assert control[0]["destination"] == beacon[0]["destination"]
    assert not any("possible_beaconing" in e["anomaly"]["tags"] for e in control)


def test_beaconing_survives_pmacctd_one_minute_bins():
    # every 90 s: bins alternate 60 and 120 s apart. At one-minute resolution a 90 s beacon
    # is told from random traffic by the counts per block of bins, which takes a few hours
    # of openings (12 were once enough: so was random traffic at 20 s, see issue 15).
    detector = FlowDetector()
    n = Normalizer()
    tags = []
    for i in range(220):
        bin_start = (i * 90) // 60 * 60
        stamp = datetime.fromtimestamp(1774219620 + bin_start, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        rec = dict(PMACCTD_LINE, ip_src="10.0.0.7", ip_dst="198.51.100.9", port_src=40000 + i, port_dst=8443,
                   tcp_flags="27", stamp_inserted=stamp)
        tags.append(detector.observe(n.normalize(rec)))
    assert "possible_beaconing" in tags[-1]


def test_ordinary_browsing_to_many_hosts_is_no_port_scan():
    n, d = Normalizer(), FlowDetector()
    for i in range(60):
        e = n.normalize(dict(PMACCTD_LINE, ip_src="10.0.0.7", ip_dst=f"198.51.100.{i}", port_src=40000 + i,
                             port_dst=443, tcp_flags="27", packets=30))
        assert d.observe(e) == []


def test_windows_persist_between_runs_so_a_scan_split_in_two_is_one_scan():
    records = raw_records("port_scan", 1)
    first = FlowPipeline(NetflowSettings())
    [first.event(r) for r in records[:-1]]
    state = json.loads(json.dumps(first.detector.to_json()))
    second = FlowPipeline(NetflowSettings(), state)
    assert "possible_port_scan" in second.event(records[-1])["anomaly"]["tags"]
    fresh = FlowPipeline(NetflowSettings())
    assert fresh.event(records[-1])["anomaly"]["tags"] == []


def test_scan_probes_older_than_the_window_do_not_count():
    n, d = Normalizer(), FlowDetector()
    for i in range(30):
        minute = i * 10  # one probe every 10 minutes: never 15 in 5 minutes
        e = n.normalize(dict(PMACCTD_LINE, ip_src="10.0.0.9", ip_dst="10.0.0.10", port_src=40000, port_dst=100 + i,
                             tcp_flags="2", stamp_inserted=f"2026-03-22 {minute // 60:02d}:{minute % 60:02d}:00"))
        assert "possible_port_scan" not in d.observe(e)


# -- files, follow mode, CLI -----------------------------------------------------------

@pytest.mark.parametrize("crash", ["after_the_append", "before_the_append", "after_another_writer_appended"])
def test_a_crash_between_append_and_state_save_neither_repeats_nor_loses_a_batch(tmp_path, crash):
    from netflow_mixed import crash_then_resume
    from wazuh_anomaly.netflow.stream import FileOutput

    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_text("".join(json.dumps(dict(PMACCTD_LINE, port_src=p)) + "\n" for p in range(1000, 1010)))
    assert normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state).records == 10
    with src.open("a") as fh:                                  # the batch the crash interrupts
        fh.write("".join(json.dumps(dict(PMACCTD_LINE, port_src=p)) + "\n" for p in range(2000, 2010)))

    crash_then_resume(src, out, state, crash)
    ports = [json.loads(line).get("source", {}).get("port") for line in out.read_text().splitlines()]
    assert sorted(p for p in ports if p) == list(range(1000, 1010)) + list(range(2000, 2010))


def test_second_run_resumes_after_the_saved_offset(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_text(json.dumps(PMACCTD_LINE) + "\n")
    write = lambda d: out.open("ab").write(d)  # noqa: E731
    assert normalize_file(src, write, NetflowSettings(), state_file=state).records == 1
    with src.open("a") as fh:
        fh.write(json.dumps(dict(PMACCTD_LINE, port_src=1)) + "\n" + '{"ip_src": "10.0.0.1", "ip_d')
    assert normalize_file(src, write, NetflowSettings(), state_file=state).records == 1
    assert normalize_file(src, write, NetflowSettings(), state_file=state).records == 0
    assert [json.loads(l)["source"]["port"] for l in out.read_text().splitlines()] == [36679, 1]


def test_follow_reads_growth_and_rotation_without_loss_or_duplicates(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_text("")
    stop = threading.Event()
    result = {}
    written = threading.Condition()

    def write(data):
        with written:
            with out.open("ab") as fh:
                fh.write(data)
            written.notify_all()

    def wait_for_lines(n):
        """Until the follower has written n events (it may take its time: no race)."""
        with written:
            assert written.wait_for(lambda: not worker.is_alive() or len(out.read_text().splitlines()) >= n,
                                    timeout=60), f"the follower wrote {out.read_text()!r}, not {n} events"

    def run():
        result["stats"] = follow(src, write, NetflowSettings(), state_file=state, poll_seconds=0.02, stop=stop.is_set)
    out.write_text("")
    worker = threading.Thread(target=run)
    worker.start()
    try:
        def add(path, port):
            with path.open("a") as fh:
                fh.write(json.dumps(dict(PMACCTD_LINE, port_src=port)) + "\n")
        add(src, 1)
        add(src, 2)
        wait_for_lines(2)                        # the follower has the first file open
        add(src, 3)                              # written just before rotation
        os.rename(src, tmp_path / "flows.json.1")
        add(src, 4)                              # the new file
        wait_for_lines(4)                        # read before the copytruncate empties it
        src.write_text("")                       # copytruncate
        add(src, 5)
        wait_for_lines(5)
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive() and "stats" in result
    ports = [json.loads(l)["source"]["port"] for l in out.read_text().splitlines()]
    assert sorted(ports) == [1, 2, 3, 4, 5]


def test_a_copytruncate_to_the_same_size_right_after_a_read_is_noticed(tmp_path):
    # The follower fingerprints the file's first bytes when it reads them, so a truncation
    # and a rewrite of the same length before its next poll is not taken for old data.
    from wazuh_anomaly.netflow.stream import YamlReader
    src = tmp_path / "flows.json"
    src.write_text(json.dumps(dict(PMACCTD_LINE, port_src=4)) + "\n")
    fd = os.open(src, os.O_RDONLY)
    try:
        reader = YamlReader(fd, src, 0, 0)
        assert len(list(reader.batches())) == 1
        src.write_text(json.dumps(dict(PMACCTD_LINE, port_src=5)) + "\n")      # same size, other flow
        assert os.fstat(fd).st_size == reader.offset
        assert reader.head_changed()
    finally:
        os.close(fd)


def test_a_second_normaliser_on_the_same_input_is_refused_in_one_sentence(tmp_path):
    src = tmp_path / "flows.json"
    src.write_text(json.dumps(PMACCTD_LINE) + "\n")
    state = state_file_for(tmp_path / "state", src)
    stop = threading.Event()
    reading = threading.Event()          # set by its first write: it holds the input's lock by then
    worker = threading.Thread(target=follow, args=(src, lambda d: reading.set(), NetflowSettings()),
                              kwargs={"state_file": state, "poll_seconds": 0.02, "stop": stop.is_set})
    worker.start()
    try:
        assert reading.wait(60), "the first normaliser never read its input"
        with pytest.raises(WazuhAnomalyError, match=f"{src}: another 'wazuh-anomaly netflow normalize' is reading it"):
            normalize_file(src, lambda d: None, NetflowSettings(), state_file=state)
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    assert normalize_file(src, lambda d: None, NetflowSettings(), state_file=state).records == 0


def test_cli_normalize_appends_to_the_output_and_reports(tmp_path, capsys):
    need_shared_data("pmacct/test12-icmp-portscan.json")
    out = tmp_path / "netflow.json"
    (tmp_path / "etc/anomaly").mkdir(parents=True)   # an installation: the resume state is kept under it
    code = main(["--prefix", str(tmp_path), "netflow", "normalize", str(PMACCT / "test12-icmp-portscan.json"),
                 "--output", str(out)])
    assert code == 0
    assert "29 flows written, 9 tagged (tags: 9 possible_port_scan)" in capsys.readouterr().err
    lines = out.read_bytes().splitlines()
    assert len(lines) == 29 and all(orjson.loads(l)["netflow"] == "true" for l in lines)
    assert oct(out.stat().st_mode & 0o777) == "0o640"


def test_cli_normalize_names_a_missing_file_in_one_sentence(tmp_path, capsys):
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    assert main(["--prefix", str(tmp_path), "netflow", "normalize", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "nope.json: flow file not found" in err and "Traceback" not in err


def test_cli_generate_every_scenario_and_refuses_an_unknown_one(capsys):
    assert main(["netflow", "generate", "--count", "2"]) == 0
    events = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert len(events) == 2 * len([n for n, (_, t) in SCENARIOS.items() if t])
    assert all(e["anomaly"]["tags"] for e in events)
    assert main(["netflow", "generate", "--scenario", "port_scam"]) == 2
    assert "no generator scenario named 'port_scam'" in capsys.readouterr().err


def test_generated_raw_records_normalise_to_the_same_events(tmp_path, capsys):
    assert main(["netflow", "generate", "--scenario", "brute_force", "--count", "3", "--raw",
                 "--output", str(tmp_path / "raw.json")]) == 0
    stats = normalize_file(tmp_path / "raw.json", lambda d: None, NetflowSettings())
    assert stats.tags == {"possible_brute_force": 3, "external_inbound_sensitive_service": 22}


# -- shipped collector-side files ----------------------------------------------------------

def test_shipped_netflow_settings_load_and_the_localfile_snippet_reads_the_default_output():
    from lxml import etree
    etc = REPO / "wazuh" / "etc" / "anomaly"
    settings = load_netflow_settings(Layout.from_env("/var/ossec"), etc / "netflow.yaml")
    assert settings == NetflowSettings()
    snippet = etree.parse(str(etc / "netflow" / "localfile-netflow.xml"))
    assert snippet.findtext("localfile/log_format") == "json"
    assert snippet.findtext("localfile/location") == "/var/ossec/logs/anomaly/netflow.json"
    unit = (etc / "netflow" / "wazuh-anomaly-netflow.service").read_text()
    assert "ExecStart=/var/ossec/wodles/anomaly/wazuh-anomaly netflow normalize --follow" in unit


def test_normalising_does_not_import_pandas():
    import subprocess
    import sys
    code = ("import sys; from wazuh_anomaly.cli import main; "
            "main(['netflow', 'generate', '--count', '1']); print('pandas' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "integration")})
    assert done.returncode == 0 and done.stderr.strip().endswith("False"), done.stderr
