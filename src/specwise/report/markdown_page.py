"""The report as Markdown: verdicts, rules, comparisons by load, acceptance by temperature."""

from __future__ import annotations

from typing import Any

from specwise.analysis import Estimate
from specwise.experiment.findings import Findings


def num(e: Any, digits: int = 2) -> str:
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


def by_workload(findings: Findings) -> dict[str, list[Finding]]:
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
        lines += [f"| {r.name} | {r.status.value} | {r.reason.replace('|', '/')} |" for r in v.rules]
        lines += ["", f"| {f.load_unit} | TPOT P50 speedup | TPOT P99 speedup | E2E P50 speedup | throughput ratio "
                  "| TTFT P50 change | baseline TPOT P50 ms | candidate TPOT P50 ms |", "|---:|---|---|---|---:|---|---:|---:|"]
        for c in f.loads:
            lines.append(f"| {c.load:g} | {num(c.tpot_p50_speedup)} | {num(c.tpot_p99_speedup)} | "
                         f"{num(c.e2e_p50_speedup)} | {num(c.throughput_ratio)} | {num(c.ttft_p50_change)} | "
                         f"{num(c.baseline.tpot_p50, 1)} | {num(c.candidate.tpot_p50, 1)} |")
        acc = f.server_acceptance.acceptance_rate if f.server_acceptance else None
        lines += ["", f"Server acceptance over the measured windows: {num(acc)}", ""]
        if f.buckets:
            lines += ["| temperature | requests | P10 | P50 | P90 | pooled |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {b.temperature:g} | {b.requests} | {num(b.p10)} | {num(b.p50)} | {num(b.p90)} | "
                      f"{num(b.pooled)} |" for b in f.buckets]
            lines.append("")
        for advice in v.advice:
            lines += [f"Advice: {advice}", ""]
    if findings.best:
        lines += ["## Candidate to use, by workload", ""] + [f"- {w}: {b}" for w, b in findings.best.items()] + [""]
    if findings.comparisons:
        lines += ["## Candidates compared", ""] + [f"- {r.status.value}: {r.reason}" for r in findings.comparisons]
    if findings.missing:
        lines += ["", "Cells without results: " + ", ".join(findings.missing)]
    return "\n".join(lines) + "\n"
