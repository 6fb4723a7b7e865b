"""`specwise report`: an experiment's findings as one self-contained HTML file (plots inlined as PNG data
URIs, no script, no CDN: it works offline), plus Markdown and JSON.

Every string from the experiment (names, paths, rule details) reaches the HTML through
jinja2 with autoescape on; the plots are images, so no text of theirs is markup.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specwise.findings import Finding, Findings
from specwise.results import write_json_atomic
from specwise.stats import Estimate

HTML, MARKDOWN, JSON = "report.html", "report.md", "report.json"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
DECISION_COLORS = {"ENABLE": "#1a7f37", "ENABLE_WITH_LIMIT": "#9a6700", "DISABLE": "#cf222e",
                   "INCONCLUSIVE": "#57606a"}


# --------------------------------------------------------------------------------------------- plots

def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(ncols: int = 1, width: float = 5.2, height: float = 3.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def _load_axis(ax: Any, levels: Sequence[float], unit: str) -> None:
    """Loads on a log axis, ticked at the measured levels in plain numbers."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(levels))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{v:g}" for v in sorted(set(levels))])
    ax.set_xlabel(unit)


def _band(ax: Any, xs: Sequence[float], ests: Sequence[Any], color: str, label: str, style: str = "-") -> None:
    pts = [(x, e) for x, e in zip(xs, ests) if e is not None]
    if not pts:
        return
    ax.plot([x for x, _ in pts], [e.value for _, e in pts], style, color=color, marker="o", label=label)
    ci = [(x, e) for x, e in pts if e.low is not None and e.high is not None]
    if ci:
        ax.fill_between([x for x, _ in ci], [e.low for _, e in ci], [e.high for _, e in ci], color=color, alpha=0.15)


def latency_plot(findings: Sequence[Finding], unit: str, metric: str) -> str:
    """P50 and P99 of `metric` (tpot | ttft) vs load: the baseline and every candidate, CI bands."""
    fig, (ax50, ax99) = _figure(2)
    first = findings[0]
    xs = [c.load for c in first.loads]
    for q, ax in (("p50", ax50), ("p99", ax99)):
        _band(ax, xs, [getattr(c.baseline, f"{metric}_{q}") for c in first.loads], "#333333", "baseline", "--")
        for i, f in enumerate(findings):
            _band(ax, [c.load for c in f.loads], [getattr(c.candidate, f"{metric}_{q}") for c in f.loads],
                  COLORS[i % len(COLORS)], f.candidate)
        ax.set(ylabel=f"{metric.upper()} {q.upper()} (ms)", title=f"{metric.upper()} {q.upper()} vs load")
        _load_axis(ax, xs, unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def speedup_plot(findings: Sequence[Finding], unit: str) -> str:
    fig, (ax,) = _figure()
    for i, f in enumerate(findings):
        xs = [c.load for c in f.loads]
        _band(ax, xs, [c.tpot_p50_speedup for c in f.loads], COLORS[i % len(COLORS)], f"{f.candidate} P50 TPOT")
        _band(ax, xs, [c.tpot_p99_speedup for c in f.loads], COLORS[i % len(COLORS)], f"{f.candidate} P99 TPOT", ":")
        cross = next((r.values.get("crossover") for r in f.verdict.rules if r.name == "TPOT speedup"), None)
        if isinstance(cross, float):
            ax.axvline(cross, color=COLORS[i % len(COLORS)], alpha=0.5, linestyle="-.")
            ax.annotate(f"crossover ≈ {cross:.3g}", (cross, 1), fontsize=8, rotation=90, va="bottom")
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set(ylabel="speedup (baseline / candidate)", title="TPOT speedup vs load")
    _load_axis(ax, [c.load for f in findings for c in f.loads], unit)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def acceptance_plot(f: Finding) -> str | None:
    """Per-request acceptance histograms by temperature bucket, and acceptance by draft position."""
    if not f.histogram and not (f.server_acceptance and f.server_acceptance.per_position):
        return None
    fig, (ax, axp) = _figure(2)
    for i, (temp, counts) in enumerate(sorted(f.histogram.items())):
        total = sum(counts) or 1
        edges = [j / len(counts) for j in range(len(counts))]
        ax.bar([e + (i + 0.5) * 0.1 / max(1, len(f.histogram)) for e in edges], [c / total for c in counts],
               width=0.1 / max(1, len(f.histogram)), align="edge", color=COLORS[i % len(COLORS)], label=f"T={temp:g}")
    ax.axvline(0.5, color="black", linestyle=":", linewidth=1)
    ax.set(xlabel="per-request acceptance", ylabel="share of requests", title="acceptance by temperature", xlim=(0, 1))
    if f.histogram:
        ax.legend(fontsize=8)
    per_pos = f.server_acceptance.per_position if f.server_acceptance else {}
    if per_pos:
        positions = [int(p) + 1 for p in per_pos]
        axp.bar(positions, list(per_pos.values()), color=COLORS[0])
        axp.set_xticks(positions)
    axp.set(xlabel="draft position", ylabel="accepted per step", title="acceptance by draft position", ylim=(0, 1))
    for a in (ax, axp):
        a.grid(alpha=0.3)
    return _png(fig)


def kv_plot(findings: Sequence[Finding], unit: str) -> str | None:
    """KV-cache usage over time at the highest load: baseline and candidates."""
    first = findings[0]
    if not first.loads:
        return None
    top = max(first.loads, key=lambda c: c.load)
    series = [("baseline", top.baseline.kv_usage)]
    for f in findings:
        cmp = max(f.loads, key=lambda c: c.load) if f.loads else None
        if cmp:
            series.append((f.candidate, cmp.candidate.kv_usage))
    if not any(points for _, points in series):
        return None
    fig, (ax,) = _figure()
    for i, (name, points) in enumerate(series):
        if points:
            ax.plot([t for t, _ in points], [100 * v for _, v in points], color="#333333" if i == 0 else
                    COLORS[(i - 1) % len(COLORS)], marker=".", label=name)
    ax.set(xlabel="s since the cell's first scrape", ylabel="KV-cache usage (%)",
           title=f"KV-cache usage at {unit} {top.load:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ------------------------------------------------------------------------------------------- writers

def _num(e: Any, digits: int = 2) -> str:
    """A number, or an estimate (object or its JSON dict) with its CI in brackets."""
    if isinstance(e, dict):
        e = Estimate.model_validate(e)
    value = getattr(e, "value", e)
    if not isinstance(value, int | float):
        return "—"
    text = f"{value:.{digits}f}"
    if getattr(e, "low", None) is not None and getattr(e, "high", None) is not None:
        text += f" [{e.low:.{digits}f}–{e.high:.{digits}f}]"
    return text


def _by_workload(findings: Findings) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings.findings:
        out.setdefault(f.workload, []).append(f)
    return out


def markdown(findings: Findings) -> str:
    lines = [f"# specwise report — {findings.experiment}", ""]
    for f in findings.findings:
        v = f.verdict
        lines += [f"## {f.candidate} on {f.workload} (T mix {f.temperatures}): **{v.decision.value}**", "",
                  v.headline, ""]
        if v.limit:
            lines += [f"Limit: {v.limit.unit} ≤ {v.limit.load:g} (batch ≤ {v.limit.batch}); vLLM setting: "
                      f"`{v.limit.vllm_setting}`", ""]
        lines += ["| rule | status | detail |", "|---|---|---|"]
        lines += [f"| {r.name} | {r.status.value} | {r.detail.replace('|', '/')} |" for r in v.rules]
        lines += ["", f"| {f.load_unit} | TPOT P50 speedup | TPOT P99 speedup | E2E P50 speedup | throughput ratio "
                  "| TTFT P50 change | baseline TPOT P50 ms | candidate TPOT P50 ms |", "|---:|---|---|---|---:|---|---:|---:|"]
        for c in f.loads:
            lines.append(f"| {c.load:g} | {_num(c.tpot_p50_speedup)} | {_num(c.tpot_p99_speedup)} | "
                         f"{_num(c.e2e_p50_speedup)} | {_num(c.throughput_ratio)} | {_num(c.ttft_p50_change)} | "
                         f"{_num(c.baseline.tpot_p50, 1)} | {_num(c.candidate.tpot_p50, 1)} |")
        acc = f.server_acceptance.acceptance_rate if f.server_acceptance else None
        lines += ["", f"Server acceptance over the measured windows: {_num(acc)}", ""]
        if f.buckets:
            lines += ["| temperature | requests | P10 | P50 | P90 | pooled |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {b.temperature:g} | {b.requests} | {_num(b.p10)} | {_num(b.p50)} | {_num(b.p90)} | "
                      f"{_num(b.pooled)} |" for b in f.buckets]
            lines.append("")
        for advice in v.advice:
            lines += [f"Advice: {advice}", ""]
    if findings.best:
        lines += ["## Candidate to use, by workload", ""] + [f"- {w}: {b}" for w, b in findings.best.items()] + [""]
    if findings.comparisons:
        lines += ["## Candidates compared", ""] + [f"- {r.status.value}: {r.detail}" for r in findings.comparisons]
    if findings.missing:
        lines += ["", "Cells without results: " + ", ".join(findings.missing)]
    return "\n".join(lines) + "\n"


def html(findings: Findings) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("specwise", "data"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True))
    env.filters["num"] = _num
    groups = []
    for workload, group in _by_workload(findings).items():
        groups.append({
            "workload": workload, "findings": group,
            "tpot_plot": latency_plot(group, findings.load_unit, "tpot") if group[0].loads else None,
            "ttft_plot": latency_plot(group, findings.load_unit, "ttft") if group[0].loads else None,
            "speedup_plot": speedup_plot(group, findings.load_unit) if group[0].loads else None,
            "kv_plot": kv_plot(group, findings.load_unit),
            "acceptance_plots": {f.candidate: acceptance_plot(f) for f in group},
        })
    return env.get_template("report.html.j2").render(findings=findings, groups=groups, colors=DECISION_COLORS)


def write_report(findings: Findings, directory: Path) -> dict[str, Path]:
    paths = {"html": directory / HTML, "markdown": directory / MARKDOWN, "json": directory / JSON}
    paths["html"].write_text(html(findings), encoding="utf-8")
    paths["markdown"].write_text(markdown(findings), encoding="utf-8")
    write_json_atomic(paths["json"], findings.model_dump(mode="json"))
    return paths
