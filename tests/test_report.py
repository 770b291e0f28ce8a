"""Report: an HTML page and PNGs an admin opens, for the shared AIT data.

The page must work offline: every image it shows is a PNG file next to it, referenced
relatively, and decodes; every PNG written is shown; the anomalies (with the rule each
raises), the labelled phases and the false positives are listed. Both ways in are
checked: from a backtest, and from an installation's models and anomalies.json.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import lxml.html
import pytest
from matplotlib import image as mpimg

from conftest import AIT_LABELS, REPO
from wazuh_anomaly.cli import app as cli
from wazuh_anomaly.ops.backtest import backtest, load_labels, parse_range
from wazuh_anomaly.core.config import load_config, load_scenarios
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.ops.report import ReportError, report_from_backtest, report_from_installation
from wazuh_anomaly.ops.runner import Runner, parse_time
from wazuh_anomaly.sources.sample import install_sample_alerts

SCENARIOS = ["alert_volume", "rule_diversity"]


@dataclass(frozen=True)
class Feedback:
    """The shape feedback.load_feedback gives (issue 5, suppression and feedback)."""

    verdict: str
    note: str
    at: datetime
    scenario: str
    entity: str | None
    window_start: datetime
    window_end: datetime




def seasonal_prefix(root: Path) -> Path:
    """A sandbox manager with the two shipped scenarios on the seasonal detector (fast)."""
    scenarios = root / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    for name in SCENARIOS:
        text = (REPO / "wazuh/etc/anomaly/scenarios" / f"{name}.yaml").read_text()
        (scenarios / f"{name}.yaml").write_text(text.replace("detectors: [mvad, seasonal]", "detectors: [seasonal]"))
    install_sample_alerts(root / "logs" / "alerts")
    return root


def check_page(page: Path) -> lxml.html.HtmlElement:
    """The page parses strictly, shows every PNG of its directory and nothing else,
    and every image decodes to a readable size."""
    text = page.read_text(encoding="utf-8")
    doc = lxml.html.document_fromstring(text, parser=lxml.html.HTMLParser(recover=False))
    sources = doc.xpath("//img/@src")
    assert sources, "no image in the report"
    assert all("/" not in s and ":" not in s for s in sources), sources     # relative, next to the page
    assert sorted(sources) == sorted(p.name for p in page.parent.glob("*.png"))
    for src in sources:
        pixels = mpimg.imread(page.parent / src)
        height, width = pixels.shape[:2]
        assert width >= 1000 and 300 <= height <= 2000, (src, pixels.shape)
        assert pixels.std() > 0.01, f"{src} is blank"
    assert not doc.xpath("//script") and "http://" not in text and "https://" not in text
    assert all(img.get("alt") for img in doc.xpath("//img"))
    return doc


@pytest.fixture(scope="module")
def backtest_result(tmp_path_factory):
    prefix = seasonal_prefix(tmp_path_factory.mktemp("prefix"))
    layout = Layout(prefix)
    scenarios, _ = load_scenarios(layout.scenarios_dir)
    return backtest(load_config(layout), scenarios, SCENARIOS, parse_range("2022-01-21..2022-01-24", "--train"),
                    parse_range("2022-01-24..2022-01-25", "--test"), phases=load_labels(AIT_LABELS))


@pytest.fixture(scope="module")
def backtest_page(backtest_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    first = backtest_result.variants["configured"].alerts[0]
    false_positives = {
        first.anomaly.id: Feedback("false-positive", "nightly backup on the firewall", datetime(2022, 1, 25, 8, tzinfo=timezone.utc),
                                   first.anomaly.scenario, first.anomaly.entity_value, first.anomaly.window_start,
                                   first.anomaly.window_end),
        "0" * 20: Feedback("true-positive", "the web scan", datetime(2022, 1, 25, 8, tzinfo=timezone.utc),
                           "alert_volume", "intranet_server", first.anomaly.window_start, first.anomaly.window_end),
    }
    return report_from_backtest(backtest_result, out, false_positives=false_positives)


def test_the_backtest_report_references_every_image_and_every_image_decodes(backtest_page):
    doc = check_page(backtest_page)
    names = {Path(s).name for s in doc.xpath("//img/@src")}
    # Per scenario a heat map of every agent, and one figure per flagged agent.
    assert {"alert_volume-overview.png", "rule_diversity-overview.png",
            "alert_volume-intranet_server.png", "rule_diversity-intranet_server.png"} <= names


def test_the_backtest_report_lists_every_anomaly_with_its_rule(backtest_page, backtest_result):
    doc = lxml.html.parse(str(backtest_page)).getroot()
    text = doc.text_content()
    for alert in backtest_result.variants["configured"].alerts:
        row = doc.xpath(f"//tr[count(td)=13][td='{alert.anomaly.id}']")
        assert len(row) == 1, alert.anomaly.id
        cells = [td.text_content() for td in row[0].xpath("td")]
        assert str(alert.rule_id) in cells and str(alert.level) in cells
    assert "wpscan" in text and "privilege_escalation" in text          # phases table
    assert "false alarms outside every phase" in text                   # the backtest's table


def test_false_positives_are_listed_and_marked(backtest_page, backtest_result):
    doc = lxml.html.parse(str(backtest_page)).getroot()
    first = backtest_result.variants["configured"].alerts[0].anomaly
    heading = doc.xpath("//h2[text()='False positives (feedback)']")[0]
    table = heading.getnext()
    rows = table.xpath("tr[td]")
    assert len(rows) == 1                                                # the true positive is not listed
    assert rows[0].xpath("td")[0].text_content() == first.id
    assert "nightly backup on the firewall" in rows[0].text_content()
    marked = doc.xpath(f"//tr[td='{first.id}']/td[text()='false positive']")
    assert len(marked) == 1


def test_the_report_of_an_installation_shows_what_anomalies_json_holds(tmp_path):
    prefix = seasonal_prefix(tmp_path / "prefix")
    layout = Layout(prefix)
    scenarios, _ = load_scenarios(layout.scenarios_dir)
    config = load_config(layout)
    now = parse_time("2022-01-25T00:10:00Z")
    runner = Runner(config, scenarios, now=now)
    runner.train(start=parse_time("2022-01-21"), end=parse_time("2022-01-24"))
    written = runner.detect(parse_time("2022-01-24"), parse_time("2022-01-25")).anomalies
    assert written
    page = report_from_installation(config, scenarios, None, start="2022-01-24", end="2022-01-25",
                                    labels=AIT_LABELS, out=tmp_path / "report", now=now)
    doc = check_page(page)
    ids = {tr.xpath("td")[-1].text_content() for tr in doc.xpath("//tr[td]") if len(tr.xpath("td")) == 13}
    assert ids == {a.id for a in written}
    assert all("anomalies.json" == tr.xpath("td")[3].text_content() for tr in doc.xpath("//tr[td]")
               if len(tr.xpath("td")) == 13)

    # A verdict given with `feedback` shows in the report the `report` command writes.
    marked = sorted(a.id for a in written)[0]
    assert cli.main(["--prefix", str(prefix), "feedback", marked, "false-positive", "--note", "backup window"]) == 0
    assert cli.main(["--prefix", str(prefix), "report", "--from", "2022-01-24", "--to", "2022-01-25",
                     "--out", str(tmp_path / "cli-report")]) == 0
    doc = lxml.html.parse(str(tmp_path / "cli-report" / "index.html")).getroot()
    table = doc.xpath("//h2[text()='False positives (feedback)']")[0].getnext()
    assert [tr.xpath("td")[0].text_content() for tr in table.xpath("tr[td]")] == [marked]
    assert "backup window" in table.text_content()


def test_the_report_command_refuses_an_installation_without_models(tmp_path, capsys):
    prefix = tmp_path / "prefix"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    shutil.copy(REPO / "wazuh/etc/anomaly/scenarios/alert_volume.yaml", prefix / "etc" / "anomaly" / "scenarios")
    assert cli.main(["--prefix", str(prefix), "report", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (f"wazuh-anomaly: no scenario has a model in "
                                               f"{prefix / 'var' / 'anomaly' / 'models'}; run 'wazuh-anomaly train' first.")
    with pytest.raises(ReportError, match="is not before --to"):
        report_from_installation(load_config(Layout(prefix)), [], None, start="2022-01-25", end="2022-01-24",
                                 out=tmp_path / "r")


def test_a_scenario_without_entity_split_is_drawn_as_one_series(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    text = (REPO / "wazuh/etc/anomaly/scenarios/alert_volume.yaml").read_text()
    text = text.replace("entity:\n  field: agent.name\n  top: all\n", "").replace("name: alert_volume", "name: whole_stream")
    (prefix / "etc" / "anomaly" / "scenarios" / "whole_stream.yaml").write_text(
        text.replace("detectors: [mvad, seasonal]", "detectors: [seasonal]"))
    install_sample_alerts(prefix / "logs" / "alerts")
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors and scenarios[0].entity is None
    result = backtest(load_config(layout), scenarios, ["whole_stream"], parse_range("2022-01-21..2022-01-24", "--train"),
                      parse_range("2022-01-24..2022-01-25", "--test"), phases=load_labels(AIT_LABELS))
    assert result.variants["configured"].alerts, result.table()
    doc = check_page(report_from_backtest(result, tmp_path / "report"))
    assert doc.xpath("//img/@src") == ["whole_stream-all.png"]


@pytest.mark.parametrize("command", [["report", "--out", "r"],
                                     ["backtest", "--scenario", "alert_volume", "--train", "2022-01-21..2022-01-24",
                                      "--test", "2022-01-24..2022-01-25", "--report", "r"]])
def test_without_matplotlib_the_report_says_how_to_install_the_report_extra_before_any_work(tmp_path, command):
    import subprocess
    import sys
    prefix = tmp_path / "prefix"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    shutil.copy(REPO / "wazuh/etc/anomaly/scenarios/alert_volume.yaml", prefix / "etc" / "anomaly" / "scenarios")
    # matplotlib is an optional extra: this Python runs as if it were not installed.
    code = ("import sys; sys.modules['matplotlib'] = None; from wazuh_anomaly.cli import main; "
            f"sys.exit(main({['--prefix', str(prefix)] + command!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO / "integration")}, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"wazuh-anomaly: the report needs matplotlib, which is not installed in {sys.prefix}: install the report "
        f"extra with '{sys.prefix}/bin/pip install \"wazuh-anomaly[report]\"' (or '{sys.prefix}/bin/pip install "
        f"\"matplotlib>=3.6,<4\"' where the add-on was installed by install.sh)."]
    assert not (tmp_path / "r").exists()


def many_entities(n: int, flagged: dict[str, float], buckets: int = 12):
    """A scored scenario of n agents (agent-0000 the busiest, frames busiest first as the
    pipeline gives them), with an anomaly for each of `flagged` at its peak score."""
    import numpy as np
    import pandas as pd
    from wazuh_anomaly.core.config import parse_scenario
    from wazuh_anomaly.ops.report import AnomalyRow
    from wazuh_anomaly.pipeline.flow import ScenarioSeries

    scenario = parse_scenario({"name": "fleet", "description": "alerts per agent", "bucket_minutes": 5,
                               "entity": {"field": "agent.name"}, "features": [{"name": "alerts"}],
                               "detectors": ["seasonal"]}, "fleet.yaml")
    start = datetime(2022, 1, 24, tzinfo=timezone.utc).timestamp()
    index = pd.DatetimeIndex(pd.to_datetime(start + 300 * np.arange(buckets), unit="s", utc=True), name="bucket")
    names = [f"agent-{i:04d}" for i in range(n)]
    frames = {e: pd.DataFrame({"alerts": np.full(buckets, float(n - i))}, index=index) for i, e in enumerate(names)}
    scores = {e: pd.Series(np.linspace(0.1, 0.6, buckets) * (1 + (i % 7) / 10), index=index)
              for i, e in enumerate(names)}
    rows = []
    for k, (entity, peak) in enumerate(flagged.items()):
        scores[entity].iloc[5] = peak
        rows.append(AnomalyRow(id=f"{k:020d}", scenario="fleet", entity=entity, start=start + 5 * 300,
                               end=start + 6 * 300, detector="seasonal", severity="medium", score=peak, threshold=1.0,
                               top=[], summary="", rule_id=None, level=None, rule_description=None, source="test"))
    series = ScenarioSeries(scenario, start, start + 300 * buckets, "seasonal-test", frames,
                            {e: f * 0 for e, f in frames.items()}, {"seasonal": scores})
    return series, rows


def test_the_overview_of_1000_agents_draws_60_rows_flagged_first_then_the_busiest_and_says_how_many_are_left_out(
        tmp_path):
    from wazuh_anomaly.ops.report import ReportData, overview_entities, write_report

    flagged = {"agent-0999": 3.0, "agent-0500": 8.0, "agent-0700": 1.5}     # quiet agents with anomalies
    series, rows = many_entities(1000, flagged)
    drawn, left_out = overview_entities(series, rows)
    assert drawn[:3] == ["agent-0500", "agent-0999", "agent-0700"]         # highest score first
    assert drawn[3:] == [f"agent-{i:04d}" for i in range(57)]               # then the busiest
    assert left_out == 1000 - 60
    page = write_report(ReportData("fleet", series.start, series.end, {"fleet": series}, rows), tmp_path / "report")
    doc = check_page(page)                                                 # the map stays a readable height
    note = " ".join(doc.xpath("//p[@class='note']/text()"))
    assert "shows 60 of 1000 entities" in note and "940 are left out, none of them with an anomaly" in note


def test_when_more_entities_have_anomalies_than_rows_the_overview_says_how_many_of_them_are_not_drawn(tmp_path):
    from wazuh_anomaly.ops.report import ReportData, overview_entities, write_report

    flagged = {f"agent-{i:04d}": 2.0 + i / 100 for i in range(100, 170)}    # 70 flagged agents
    series, rows = many_entities(200, flagged)
    drawn, left_out = overview_entities(series, rows)
    assert drawn == [f"agent-{i:04d}" for i in range(169, 109, -1)] and left_out == 140
    doc = check_page(write_report(ReportData("fleet", series.start, series.end, {"fleet": series}, rows),
                                  tmp_path / "report"))
    assert "140 are left out, 10 of them with an anomaly" in " ".join(doc.xpath("//p[@class='note']/text()"))
