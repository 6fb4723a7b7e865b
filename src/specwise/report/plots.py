"""The report's plots, as PNG data URIs (no script, no CDN): latency and speedup vs load with CI bands,
acceptance by temperature and by draft position, KV-cache usage over time."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from specwise.analysis.compare import LatencyMetric, Quantile
from specwise.experiment.findings import Finding

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


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


def latency_plot(findings: Sequence[Finding], unit: str, metric: LatencyMetric) -> str:
    """P50 and P99 of `metric` (tpot | ttft) vs load: the baseline and every candidate, CI bands."""
    fig, (ax50, ax99) = _figure(2)
    first = findings[0]
    xs = [c.load for c in first.loads]
    quantiles: tuple[tuple[Quantile, Any], ...] = (("p50", ax50), ("p99", ax99))
    for q, ax in quantiles:
        _band(ax, xs, [c.baseline.latency(metric, q) for c in first.loads], "#333333", "baseline", "--")
        for i, f in enumerate(findings):
            _band(ax, [c.load for c in f.loads], [c.candidate.latency(metric, q) for c in f.loads],
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
        cross = f.verdict.crossover
        if cross is not None:
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


def watch_plot(points: Sequence[tuple[float, float | None, float | None]], break_even: float) -> str:
    """A recorded watch: acceptance over the trailing minute and KV-cache usage, against time."""
    fig, (ax,) = _figure(width=7.0)
    ax.plot([t for t, a, _ in points if a is not None], [a for _, a, _ in points if a is not None],
            color=COLORS[0], marker=".", label="acceptance (1 m)")
    ax.plot([t for t, _, kv in points if kv is not None], [kv for _, _, kv in points if kv is not None],
            color=COLORS[1], linestyle="--", label="KV-cache usage")
    ax.axhline(break_even, color="#333333", linewidth=0.8, linestyle=":", label=f"break-even {break_even:.2f}")
    ax.set(xlabel="s since the watch started", ylabel="share (0–1)", ylim=(0, 1.05), title="Recorded watch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
