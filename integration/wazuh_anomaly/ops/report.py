"""The report an admin opens: one HTML page with PNG images next to it, per scenario
each feature and the anomaly score over time, the threshold, the anomalies with their
top contributing features and the Wazuh rule they raise, labelled phases shaded, and
the false positives when feedback is given.

Two ways in: from a backtest (`backtest --report DIR`), or from an installation (the
current models, the alerts of the range and the anomalies.json the wodle wrote). The
page has no script and no remote resource, so it works offline and as a mail
attachment (zip the directory).
"""
from __future__ import annotations

import hashlib
import html
import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd

from ..core.timeparse import parse_time_arg
from ..core import progress
from .backtest import CONFIGURED, BacktestResult, load_labels, score_range
from ..core.config import Config, Scenario
from ..core.errors import WazuhAnomalyError
from ..core.registry import AGGREGATIONS
from .evaluation import Phase
from ..features.aggregate import align_down
from ..pipeline.flow import Reader, ScenarioSeries
from ..pipeline.models import ModelBundle
from .runner import parse_time
from ..sources import SourceStats

MAX_ENTITY_FIGURES = 8       # per scenario: the flagged entities first, by their highest score
MAX_OVERVIEW_ROWS = 60       # rows of a scenario's heat map: flagged entities first, then the busiest
SEVERITY_COLORS = {"low": "#e9c46a", "medium": "#f4a261", "high": "#e76f51", "critical": "#9b2226"}
DETECTOR_COLORS = {"mvad": "#1d3557", "seasonal": "#2a9d8f"}
PHASE_COLOR = "#f4a261"
RING_COLOR = "#d62828"


class ReportError(WazuhAnomalyError):
    """A report cannot be written as asked."""


def require_matplotlib() -> None:
    """The plots need matplotlib, an optional extra: say how to install it, before any work."""
    import importlib.util
    import sys
    if importlib.util.find_spec("matplotlib") is None:
        raise ReportError(f"the report needs matplotlib, which is not installed in {sys.prefix}: install the "
                          f"report extra with '{sys.prefix}/bin/pip install \"wazuh-anomaly[report]\"' "
                          f"(or '{sys.prefix}/bin/pip install \"matplotlib>=3.6,<4\"' where the add-on was "
                          f"installed by install.sh).")


# --------------------------------------------------------------------------- rows

@dataclass
class AnomalyRow:
    """One anomaly as the report lists it (from a backtest or from anomalies.json)."""

    id: str
    scenario: str
    entity: str | None
    start: float
    end: float
    detector: str
    severity: str
    score: float
    threshold: float
    top: list[dict]                  # name, actual, expected
    summary: str
    rule_id: int | None
    level: int | None
    rule_description: str | None
    source: str = ""                 # backtest variant, or "anomalies.json"

    @classmethod
    def from_event(cls, event: dict, *, rule_id: int | None, level: int | None, description: str | None,
                   source: str) -> "AnomalyRow":
        a = event["anomaly"]
        return cls(id=a["id"], scenario=a["scenario"], entity=(a.get("entity") or {}).get("value"),
                   start=_epoch(a["window"]["start"]), end=_epoch(a["window"]["end"]),
                   detector=a.get("detector", ""), severity=a.get("severity", "low"),
                   score=float(a.get("score") or 0), threshold=float(a.get("threshold") or 0),
                   top=list(a.get("top_features") or []), summary=a.get("summary", ""),
                   rule_id=rule_id, level=level, rule_description=description, source=source)


def _epoch(text: str) -> float:
    return parse_time_arg(text)   # the one timestamp parser (core/timeparse.py)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


@dataclass
class ReportData:
    title: str
    start: float
    end: float
    series: dict[str, ScenarioSeries]
    anomalies: list[AnomalyRow]
    phases: list[Phase] = field(default_factory=list)
    false_positives: Mapping[str, Any] | None = None
    summary_text: str = ""           # the backtest's per-phase table
    health: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- figures

def _axes_time(ax, start: float, end: float) -> None:
    import matplotlib.dates as mdates
    ax.set_xlim(pd.Timestamp(start, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC"))
    locator = mdates.AutoDateLocator(tz=timezone.utc, minticks=6, maxticks=14)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d\n%H:%M", tz=timezone.utc))
    for a in ax.get_shared_x_axes().get_siblings(ax):
        a.grid(True, axis="both", color="#dddddd", linewidth=0.6)


def _phase_groups(phases: Sequence[Phase], start: float, end: float) -> list[tuple[float, float, str]]:
    """Phases inside the range, neighbours closer than 1% of the range merged for labelling."""
    inside = sorted((max(p.start, start), min(p.end, end), p.label) for p in phases if p.end > start and p.start < end)
    groups: list[list] = []
    gap = 0.01 * (end - start)
    for lo, hi, label in inside:
        if groups and lo - groups[-1][1] <= gap:
            groups[-1][1] = max(groups[-1][1], hi)
            groups[-1][2].append(label)
        else:
            groups.append([lo, hi, [label]])
    out = []
    for lo, hi, labels in groups:
        text = labels[0] if len(labels) == 1 else f"{labels[0]} … {labels[-1]} ({len(labels)} phases)"
        out.append((lo, hi, text))
    return out


def _shade(axes, phases: Sequence[Phase], start: float, end: float, *, label_axis=None) -> bool:
    shaded = False
    for p in phases:
        if p.end <= start or p.start >= end:
            continue
        # A phase of seconds is still drawn a few minutes wide, or it would vanish.
        lo, hi = p.start, max(p.end, p.start + (end - start) / 400)
        for ax in axes:
            ax.axvspan(pd.Timestamp(lo, unit="s", tz="UTC"), pd.Timestamp(hi, unit="s", tz="UTC"),
                       color=PHASE_COLOR, alpha=0.22, linewidth=0, zorder=0)
        shaded = True
    if label_axis is not None:
        import matplotlib.transforms as mtransforms
        trans = mtransforms.blended_transform_factory(label_axis.transData, label_axis.transAxes)
        last_x, level = None, 0
        for lo, hi, text in _phase_groups(phases, start, end):
            mid = pd.Timestamp((lo + hi) / 2, unit="s", tz="UTC")
            # Labels closer than a tenth of the range take turns on two lines.
            level = 1 - level if last_x is not None and (lo - last_x) < 0.12 * (end - start) else 0
            label_axis.text(mid, 1.02 + 0.13 * level, text, transform=trans, ha="center", va="bottom",
                            fontsize=8, color="#8a4b08", clip_on=False)
            last_x = lo
    return shaded


def _severity_legend(fig, severities: Iterable[str], extra: list) -> None:
    from matplotlib.lines import Line2D
    handles = list(extra)
    for sev in ("low", "medium", "high", "critical"):
        if sev in severities:
            handles.append(Line2D([], [], marker="o", linestyle="", markersize=7, markerfacecolor=SEVERITY_COLORS[sev],
                                  markeredgecolor="black", label=f"anomaly: {sev}"))
    fig.legend(handles=handles, loc="lower center", fontsize=8, ncol=min(5, len(handles)), frameon=False)


def _unit(scenario: Scenario, feature: str) -> str:
    spec = next(f for f in scenario.features if f.name == feature)
    return AGGREGATIONS.get(spec.aggregation)().describe(spec.field, scenario.bucket_minutes)


def _wide(values: np.ndarray) -> bool:
    # A flood of thousands next to a baseline of a few: a log axis keeps both readable.
    finite = values[np.isfinite(values)]
    return finite.size > 0 and finite.max() > 50 and finite.max() > 20 * (np.quantile(finite, 0.95) + 1)


def entity_figure(series: ScenarioSeries, entity: str | None, rows: Sequence[AnomalyRow], phases: Sequence[Phase],
                  path: Path, *, numbers: Mapping[str, int]) -> None:
    """Score panel (each detector in units of its threshold) above one panel per feature
    (actual and expected); anomalies marked on the score and on their top features."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    s = series.scenario
    frame, expected = series.frames[entity], series.expected[entity]
    features = list(frame.columns)
    n = len(features) + 1
    height = 1.9 + 1.85 * n
    fig = Figure(figsize=(12, height), dpi=100)
    axes = fig.subplots(n, 1, sharex=True, gridspec_kw={"height_ratios": [1.4] + [1] * len(features)})
    ax = axes[0]
    who = f"{s.entity.field} = {entity}" if s.entity and entity is not None else "all alerts"
    fig.suptitle(f"{s.name} — {who}\n{_utc(series.start)} to {_utc(series.end)} UTC, "
                 f"{s.bucket_minutes}-minute buckets, model {series.model_version}", fontsize=11)
    handles = []
    for detector, per_entity in series.scores.items():
        score = per_entity.get(entity)
        if score is None or score.empty:
            continue
        ax.plot(score.index, score.to_numpy(), drawstyle="steps-post", linewidth=1.0,
                color=DETECTOR_COLORS.get(detector, "black"))
        handles.append(Line2D([], [], color=DETECTOR_COLORS.get(detector, "black"), label=f"{detector} score"))
    ax.axhline(1.0, color="#c1121f", linestyle="--", linewidth=1.0)
    handles.append(Line2D([], [], color="#c1121f", linestyle="--", label="threshold (1.0)"))
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("score / threshold\n(log above 1)")
    step = pd.Timedelta(minutes=s.bucket_minutes)
    marks: list[tuple[pd.Timestamp, float, AnomalyRow]] = []
    for row in rows:
        ts = pd.Timestamp(row.start, unit="s", tz="UTC")
        heights = [per_entity[entity].get(ts, np.nan) for d, per_entity in series.scores.items()
                   if d in row.detector.split("+") and entity in per_entity]
        y = np.nanmax(heights) if heights and not np.all(np.isnan(heights)) else 1.0
        ax.scatter([ts + step / 2], [y], s=46, color=SEVERITY_COLORS.get(row.severity, "grey"),
                   edgecolor="black", linewidth=0.6, zorder=5)
        marks.append((ts, float(y), row))
        for f in row.top[:2]:
            if f["name"] in frame.columns:
                i = features.index(f["name"]) + 1
                value = frame[f["name"]].get(ts, np.nan)
                axes[i].scatter([ts + step / 2], [value], s=80, facecolor="none",
                                edgecolor=RING_COLOR, linewidth=1.6, zorder=5)
    handles += [Line2D([], [], color="#264653", label="feature: actual"),
                Line2D([], [], color="#8d99ae", linestyle=":", label="feature: expected (training median for the hour)"),
                Line2D([], [], marker="o", linestyle="", markersize=8, markerfacecolor="none",
                       markeredgecolor=RING_COLOR, label="top contributor of an anomaly")]
    if phases:
        handles.append(Patch(color=PHASE_COLOR, alpha=0.35, label="labelled phase"))
    _severity_legend(fig, {r.severity for r in rows}, handles)
    top_score = max([float(np.nanmax(p[entity].to_numpy())) for p in series.scores.values()
                     if entity in p and len(p[entity])] + [2.0])
    # Room above the highest score for four lines of labels.
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=top_score * (30 if rows else 4))
    for i, name in enumerate(features, 1):
        a = axes[i]
        values = frame[name].to_numpy(dtype=float)
        a.plot(frame.index, values, drawstyle="steps-post", linewidth=1.0, color="#264653")
        a.plot(expected.index, expected[name].to_numpy(dtype=float), drawstyle="steps-post", linewidth=1.0,
               color="#8d99ae", linestyle=":")
        a.set_ylabel(_wrap(_unit(s, name), 22), fontsize=8)
        a.set_title(name, loc="left", fontsize=9, pad=2)
        highest = float(np.nanmax(np.concatenate([values, expected[name].to_numpy(dtype=float), [0.0]])))
        if _wide(values):
            a.set_yscale("symlog", linthresh=10)
            a.set_ylim(bottom=0, top=highest * 3)
        else:
            # Headroom for the contributor rings; a flat zero still gets a 0..1 axis.
            a.set_ylim(bottom=0, top=max(1.0, highest * 1.18))
    _axes_time(axes[-1], series.start, series.end)     # shared by every panel
    _shade(axes, phases, series.start, series.end, label_axis=axes[0])
    axes[-1].set_xlabel("time (UTC)")
    # Fixed margins in inches: tight_layout costs seconds per figure and gives the same here.
    fig.subplots_adjust(left=0.09, right=0.965, top=1 - 1.05 / height, bottom=1.2 / height, hspace=0.32)
    _label_anomalies(ax, marks, numbers, step, series.end - series.start)
    fig.savefig(path, format="png")


def _label_anomalies(ax, marks: list, numbers: Mapping[str, int], step: pd.Timedelta, span: float) -> None:
    """Number each anomaly on the score panel with its top feature. Labels of anomalies
    close in time stack above the highest of them (four lines; then the number only)."""
    import matplotlib.dates as mdates
    to_points = 72.0 / ax.figure.dpi
    near = 0.09 * span
    placed: list[tuple[float, int]] = []
    # Highest first, so that its label sits right above it and the others stack higher.
    for ts, y, row in sorted(marks, key=lambda m: (m[0], -m[1])):
        x = row.start
        used = {slot for other, slot in placed if abs(other - x) < near}
        free = [slot for slot in range(4) if slot not in used]
        slot = free[0] if free else 4
        if free:
            placed.append((x, slot))
        top = max(h for t, h, _ in marks if abs(t.timestamp() - x) < near)
        point = (mdates.date2num(ts + step / 2), y)
        lift = (ax.transData.transform((point[0], top))[1] - ax.transData.transform(point)[1]) * to_points
        name = row.top[0]["name"] if row.top and free else ""
        ax.annotate(f"#{numbers.get(row.id + row.source)} {name}".strip(), point, xytext=(6, lift + 8 + 11 * slot),
                    textcoords="offset points", fontsize=7.5, color="#333333",
                    arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.5})


def _peak(series: ScenarioSeries, entity: str | None) -> float:
    """The entity's highest score of any detector over the range (0 without scores)."""
    return max([float(np.nanmax(p[entity].to_numpy())) for p in series.scores.values()
                if entity in p and len(p[entity])] + [0.0])


def overview_entities(series: ScenarioSeries, rows: Sequence[AnomalyRow],
                      limit: int = MAX_OVERVIEW_ROWS) -> tuple[list[str | None], int]:
    """The entities the heat map draws, at most `limit` of them, and how many are left out:
    those with an anomaly first (highest score first), then the busiest of the rest (the
    frames come busiest first, by the number of alerts the features counted)."""
    entities = list(series.frames)
    flagged = {r.entity for r in rows if r.entity in series.frames}

    rank = {e: i for i, e in enumerate(entities)}
    first = sorted(flagged, key=lambda e: (-_peak(series, e), rank[e]))    # equal peaks: the busier first
    chosen = (first + [e for e in entities if e not in flagged])[:limit]
    return chosen, len(entities) - len(chosen)


def overview_figure(series: ScenarioSeries, rows: Sequence[AnomalyRow], phases: Sequence[Phase], path: Path,
                    entities: Sequence[str | None], left_out: int = 0) -> None:
    """Every entity's highest detector score over time as a heat map (1 = threshold),
    anomalies as diamonds coloured by severity; `left_out` entities are not drawn."""
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    s = series.scenario
    index = next(iter(series.frames.values())).index
    matrix = np.zeros((len(entities), len(index)))
    for i, entity in enumerate(entities):
        for per_entity in series.scores.values():
            score = per_entity.get(entity)
            if score is not None and len(score):
                matrix[i] = np.maximum(matrix[i], score.reindex(index).fillna(0).to_numpy())
    fig = Figure(figsize=(12, min(2.4 + 0.32 * len(entities), 18.0)), dpi=100)
    ax = fig.subplots()
    start, end = series.start, series.end
    x0, x1 = [pd.Timestamp(t, unit="s", tz="UTC") for t in (start, end)]
    cmap, norm = _threshold_colors(max(10.0, float(matrix.max())))
    image = ax.imshow(np.clip(matrix, norm.vmin, None), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                      extent=(mdates.date2num(x0), mdates.date2num(x1), len(entities) - 0.5, -0.5))
    labels = ["(all)" if e is None else str(e) for e in entities]
    ax.set_yticks(range(len(entities)), labels=labels, fontsize=8)
    field_name = s.entity.field if s.entity else ""
    ax.set_ylabel(f"{field_name} ({len(entities)} shown, {left_out} more left out)" if left_out else field_name)
    step = s.bucket_seconds
    for row in rows:
        if row.entity in entities or (row.entity is None and None in entities):
            y = list(entities).index(row.entity)
            ax.scatter([pd.Timestamp(row.start + step / 2, unit="s", tz="UTC")], [y], s=34, marker="D",
                       color=SEVERITY_COLORS.get(row.severity, "grey"), edgecolor="black", linewidth=0.6, zorder=5)
    _axes_time(ax, start, end)
    ax.grid(False)
    for p in phases:
        if p.end > start and p.start < end:
            for t in (p.start, p.end):
                ax.axvline(pd.Timestamp(t, unit="s", tz="UTC"), color=PHASE_COLOR, linewidth=0.8, alpha=0.8)
    bar = fig.colorbar(image, ax=ax, pad=0.01)
    bar.set_ticks([t for t in (0.1, 0.3, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000) if t <= norm.vmax])
    bar.ax.yaxis.set_major_formatter("{x:g}")
    bar.ax.minorticks_off()
    bar.set_label("highest score / threshold (1 = threshold)")
    ax.set_xlabel("time (UTC)")
    which = (f"{len(entities)} of {len(entities) + left_out} {field_name} values (flagged first, then the busiest; "
             f"{left_out} left out)" if left_out else f"every {field_name or 'series'}")
    ax.set_title(f"{s.name}: {which}, highest detector score per "
                 f"{s.bucket_minutes}-minute bucket (red = above the threshold)", fontsize=10)
    handles = [Line2D([], [], marker="D", linestyle="", markerfacecolor=SEVERITY_COLORS[v], markeredgecolor="black",
                      label=f"anomaly: {v}") for v in SEVERITY_COLORS if v in {r.severity for r in rows}]
    if phases:
        handles.append(Line2D([], [], color=PHASE_COLOR, label="labelled phase start / end"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, format="png")


def _threshold_colors(vmax: float):
    """Greys below the threshold (1.0), reds above it, on a log scale from 0.1."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap, LogNorm
    norm = LogNorm(vmin=0.1, vmax=vmax)
    split = int(round(256 * float(norm(1.0))))
    below = colormaps["Greys"](np.linspace(0.02, 0.35, max(split, 1)))
    above = colormaps["YlOrRd"](np.linspace(0.3, 1.0, max(256 - split, 1)))
    return ListedColormap(np.vstack([below, above])), norm


def _wrap(text: str, width: int) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def _file_name(*parts: str | None) -> str:
    text = "-".join("all" if p is None else str(p) for p in parts)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "figure"
    # Two entities that differ only in characters replaced above still get two files.
    return f"{safe[:80]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.png" if safe != text else f"{safe}.png"


# --------------------------------------------------------------------------- page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
table{border-collapse:collapse;font-size:13px;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.num{text-align:right}pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}
img{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}
.sev-low{background:#fbf3d5}.sev-medium{background:#fde4cf}.sev-high{background:#f8d0c4}.sev-critical{background:#eab0b0}
.note{color:#555;font-size:13px}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, classes: Iterable[str] | None = None) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in headers) + "</tr>"]
    classes = list(classes) if classes is not None else None
    for i, row in enumerate(rows):
        cls = f' class="{_esc(classes[i])}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _top_text(top: Sequence[dict]) -> str:
    return "; ".join(f"{f.get('name')} {_num(f.get('actual'))} (expected {_num(f.get('expected'))})" for f in top[:3])


def _num(x: Any) -> str:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{value:.0f}" if value.is_integer() else f"{value:.3g}"


def _false_positive_rows(false_positives: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for anomaly_id, fb in false_positives.items():
        verdict = str(getattr(fb, "verdict", "false-positive"))
        if verdict.replace("_", "-") != "false-positive":
            continue
        start, end = getattr(fb, "window_start", None), getattr(fb, "window_end", None)
        rows.append([anomaly_id, getattr(fb, "scenario", ""), getattr(fb, "entity", ""),
                     f"{_when(start)} – {_when(end)}", getattr(fb, "note", ""), _when(getattr(fb, "at", None))])
    return sorted(rows, key=lambda r: r[3])


def _when(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        return _utc(float(value))
    if isinstance(value, datetime):
        return _utc(value.timestamp())
    return str(value)


def write_report(data: ReportData, out: Path) -> Path:
    """Write index.html and its PNGs into `out`; returns the page's path."""
    require_matplotlib()
    import matplotlib
    matplotlib.use("Agg")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create the report directory ({exc.strerror}).") from None
    numbers = {r.id + r.source: i for i, r in enumerate(sorted(data.anomalies, key=lambda r: (r.start, r.scenario)), 1)}
    fp = dict(data.false_positives or {})
    body = [f"<h1>{_esc(data.title)}</h1>",
            f"<p>{_esc(_utc(data.start))} to {_esc(_utc(data.end))} UTC · generated "
            f"{_esc(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))} by wazuh-anomaly. Scores are shown in "
            f"units of each model's threshold: 1.0 is the threshold, above it a bucket is an anomaly.</p>"]
    body += [f'<p class="note">{_esc(n)}</p>' for n in data.notes]
    if data.summary_text:
        body.append(f"<h2>Backtest</h2>\n<pre>{_esc(data.summary_text)}</pre>")
    if data.phases:
        body.append("<h2>Labelled phases</h2>")
        body.append(_table(["phase", "start (UTC)", "end (UTC)"],
                           [[p.label, _utc(p.start), _utc(p.end)] for p in data.phases]))
    contents = [f'<li><a href="#{_esc(n)}">{_esc(n)}</a></li>' for n in data.series]
    if contents:
        body.append("<h2>Scenarios</h2><ul>" + "".join(contents) + "</ul>")
    for name, series in progress.each(data.series.items(), "drawing", detail=lambda item: item[0]):
        s = series.scenario
        rows = [r for r in data.anomalies if r.scenario == name]
        body.append(f'<h2 id="{_esc(name)}">{_esc(name)}</h2>')
        body.append(f"<p>{_esc(s.description)} · {len(s.features)} features "
                    f"({_esc(', '.join(s.feature_names))}) · {s.bucket_minutes}-minute buckets"
                    f"{' · per ' + _esc(s.entity.field) if s.entity else ''} · model {_esc(series.model_version)} · "
                    f"{len(rows)} anomalies.</p>")
        entities = list(series.frames)
        if not entities:
            body.append("<p>No alert matched this scenario's features in the range: nothing to draw.</p>")
        if s.entity is not None and entities:
            file = _file_name(name, "overview")
            drawn, left_out = overview_entities(series, rows)
            overview_figure(series, rows, data.phases, out / file, drawn, left_out)
            body.append(f'<img src="{quote(file)}" alt="{_esc(name)}: score of every entity over time">')
            if left_out:
                flagged_out = len({r.entity for r in rows if r.entity in series.frames} - set(drawn))
                also = (f", {flagged_out} of them with an anomaly (listed in the table below)" if flagged_out
                        else ", none of them with an anomaly")
                body.append(f'<p class="note">The map shows {len(drawn)} of {len(entities)} entities: those with '
                            f'an anomaly first, then the busiest. {left_out} are left out{also}.</p>')

        flagged = sorted({r.entity for r in rows if r.entity in series.frames}, key=lambda e: -_peak(series, e))
        chosen = flagged[:MAX_ENTITY_FIGURES] or entities[:1]
        if len(flagged) > MAX_ENTITY_FIGURES:
            body.append(f'<p class="note">{len(flagged) - MAX_ENTITY_FIGURES} more flagged entities are listed '
                        f'in the table but not drawn.</p>')
        for entity in chosen:
            file = _file_name(name, entity)
            mine = [r for r in rows if r.entity == entity]
            entity_figure(series, entity, mine, data.phases, out / file,
                          numbers=numbers)
            body.append(f"<h3>{_esc(s.entity.field if s.entity else 'all alerts')} = {_esc(entity or '(all)')}</h3>")
            body.append(f'<img src="{quote(file)}" alt="{_esc(name)} {_esc(entity)}: score and features over time">')
        if rows:
            body.append("<h3>Anomalies and the rule each raises</h3>")
            table_rows = []
            for r in sorted(rows, key=lambda r: (r.start, r.entity or "")):
                table_rows.append([f"#{numbers[r.id + r.source]}", _utc(r.start), r.entity or "", r.source,
                                   r.detector, r.severity, f"{_num(r.score)} / {_num(r.threshold)}",
                                   _top_text(r.top), "" if r.rule_id is None else r.rule_id,
                                   "" if r.level is None else r.level, r.rule_description or "",
                                   "false positive" if r.id in fp else "", r.id])
            body.append(_table(["#", "bucket (UTC)", "entity", "from", "detector", "severity", "score / threshold",
                                "top contributors (actual, expected)", "rule", "level", "rule description",
                                "feedback", "anomaly id"], table_rows,
                               classes=[f"sev-{row[5]}" for row in table_rows]))
        else:
            body.append("<p>No anomaly in this range.</p>")
    if data.false_positives is not None:
        body.append("<h2>False positives (feedback)</h2>")
        fps = _false_positive_rows(data.false_positives)
        body.append(_table(["anomaly id", "scenario", "entity", "window (UTC)", "note", "marked at"], fps)
                    if fps else "<p>No anomaly has been marked as a false positive.</p>")
    if data.health:
        body.append("<h2>Health events of the detector</h2>")
        body.append(_table(["detected (UTC)", "check", "scenario", "severity", "message"],
                           [[h.get("detected_at", "")[:16].replace("T", " "), h.get("health"), h.get("scenario", ""),
                             h.get("severity"), h.get("message")] for h in data.health]))
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_esc(data.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


# --------------------------------------------------------------------------- entry points

def report_from_backtest(result: BacktestResult, out: Path, *,
                         false_positives: Mapping[str, Any] | None = None) -> Path:
    rows = []
    for variant, v in result.variants.items():
        source = "backtest" if variant == CONFIGURED else f"backtest ({variant})"
        for r in v.alerts:
            rows.append(AnomalyRow.from_event(r.event, rule_id=r.rule_id, level=r.level,
                                              description=r.rule_description, source=source))
    data = ReportData(title=f"wazuh-anomaly backtest: {', '.join(result.scenarios)}", start=result.test.start,
                      end=result.test.end, series=result.series, anomalies=rows, phases=result.phases,
                      false_positives=false_positives, summary_text=result.table())
    return write_report(data, out)


def _read_events(path: Path, start: float, end: float, scenarios: set[str]) -> tuple[list[dict], list[dict], int]:
    """Anomaly and health events of anomalies.json in [start - 1 h, end), in file order;
    the hour before lets escalations show as they did; malformed lines are counted."""
    anomalies, health, bad = [], [], 0
    try:
        from ..core.fileio import open_binary
        handle = io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return anomalies, health, bad
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc.strerror}); run as root or fix its permissions.") from None
    with handle:
        for line in handle:
            try:
                event = json.loads(line)
                a = event["anomaly"]
                if a.get("kind") == "health":
                    at = _epoch(a["detected_at"])
                    if start <= at < end and (a.get("scenario") is None or a.get("scenario") in scenarios):
                        health.append(a)
                    continue
                at = _epoch(a["window"]["start"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            if a.get("scenario") in scenarios and start - 3600 <= at < end:
                anomalies.append(event)
    return anomalies, health, bad


def report_from_installation(config: Config, scenarios: Sequence[Scenario], names: Sequence[str] | None, *,
                             start: str | None = None, end: str | None = None, labels: Path | None = None,
                             out: Path, false_positives: Mapping[str, Any] | None = None,
                             now: float | None = None) -> Path:
    """The report of a range on an installation: its current models score the alerts of
    the range (for the curves), and the anomalies are the ones anomalies.json holds."""
    require_matplotlib()
    now = time.time() if now is None else now
    # Only complete buckets: the newest minutes are still being written by analysisd.
    to = align_down(min(parse_time(end) if end else now, now - config.run.grace_seconds), 60)
    frm = parse_time(start) if start else to - 86400
    if to <= frm:
        raise ReportError(f"--from {_utc(frm)} is not before --to {_utc(to)}; give an earlier --from.")
    known = {s.name: s for s in scenarios}
    if names:
        missing = [n for n in names if n not in known]
        if missing:
            raise ReportError(f"no scenario named '{missing[0]}' in {config.layout.scenarios_dir}; "
                              f"known: {', '.join(sorted(known)) or 'none'}.")
        chosen = [known[n] for n in names]
    else:
        chosen = [s for s in scenarios if s.enabled]
    notes, bundles = [], {}
    reader = Reader(config, resume=False)
    for s in chosen:
        bundle = ModelBundle.load(config.models_dir, s, device=config.run.device, threads=config.run.threads)
        waiting = reader.waiting_message(s)
        if bundle is None and waiting is not None:
            # training it cannot help before its source has events to learn from
            notes.append(f"{s.name}: no model yet, not drawn: {waiting}")
        elif bundle is None:
            notes.append(f"{s.name}: no model yet, not drawn (run 'wazuh-anomaly train --scenario {s.name}').")
        else:
            bundles[s.name] = bundle
    if not bundles:
        raise ReportError(f"no scenario has a model in {config.models_dir}; run 'wazuh-anomaly train' first.")
    phases = load_labels(labels) if labels else []
    stats = SourceStats()
    # Each scenario's own source: a flow scenario's curves come from the NetFlow events.
    series = score_range(config, bundles, frm, to, stats=stats)
    if stats.skipped_total:
        notes.append(f"alerts: {stats.describe()}")
    events, health, bad = _read_events(config.anomalies_file, frm, to, set(bundles))
    if bad:
        notes.append(f"{config.anomalies_file}: {bad} line(s) that are not anomaly events were skipped.")
    from ..ruleset import explain_all
    simulated = explain_all(events) if events else []
    rows = [AnomalyRow.from_event(e, rule_id=a.rule_id, level=a.level, description=a.description,
                                  source="anomalies.json")
            for e, a in zip(events, simulated) if frm <= _epoch(e["anomaly"]["window"]["start"]) < to]
    data = ReportData(title=f"wazuh-anomaly report: {', '.join(bundles)}", start=frm, end=to, series=series,
                      anomalies=rows, phases=phases, false_positives=false_positives, health=health, notes=notes)
    return write_report(data, out)
