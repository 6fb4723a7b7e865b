"""The report as Markdown: verdicts, rules, comparisons by load, acceptance by temperature.

Every string from the experiment (names, temperatures, dataset paths in commands, rule texts) goes
through `md`, so that it renders as the text it is: no raw HTML, no link, emphasis or table cell of its own.
"""

from __future__ import annotations

import re
from typing import Any

from specwise.analysis import Estimate
from specwise.experiment.findings import Finding, Findings
from specwise.verdict import Rule


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


_CODE = re.compile(r"(`[^`\n]*`)")
# What can start markup inside a line in CommonMark/GFM: raw HTML and entities become entities (every
# renderer honours those), emphasis, links, code, table cells and strikethrough get a backslash.
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ACTIVE = re.compile(r"([\\`*_\[\]|~])")


def md(text: str) -> str:
    """`text` as inert Markdown; the `code` spans specwise writes (commands, settings) stay code, where
    raw HTML is shown, not rendered."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else _ACTIVE.sub(r"\\\1", "".join(_HTML.get(c, c) for c in part))
                   for i, part in enumerate(parts))


def cell(text: str) -> str:
    """`md` for a table cell, where `|` ends the cell even inside a code span."""
    return md(text.replace("|", "/"))


def by_workload(findings: Findings) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings.findings:
        out.setdefault(f.workload, []).append(f)
    return out


def answer(f: Finding) -> str:
    """One line: what to do, up to which load, for which traffic."""
    v = f.verdict
    line = (f"**{v.decision.value}** — {md(f.candidate)} on {md(f.workload)} (T mix {md(f.temperatures)}): "
            f"{md(v.headline)}")
    if v.limit:
        line += f"; vLLM setting: `{v.limit.vllm_setting}`"
    return line


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _agreement(r: Rule) -> str:
    return "agrees" if r.agrees else "**disagrees**" if r.agrees is False else ""


def markdown(findings: Findings) -> str:
    lines = [f"# specwise report — {md(findings.experiment)}", "", "## The answer", ""]
    lines += [f"- {answer(f)}" for f in findings.findings] + [""]
    for f in findings.findings:
        v = f.verdict
        lines += [f"## {md(f.candidate)} on {md(f.workload)} (T mix {md(f.temperatures)}): **{v.decision.value}**",
                  "", md(v.headline), ""]
        lines += [f"Condition: {md(c)}" for c in v.conditions] + ([""] if v.conditions else [])
        lines += [f"| {f.load_unit} | TPOT P50 speedup | TPOT P99 speedup | E2E P50 speedup | throughput ratio "
                  "| TTFT P50 change | baseline / candidate TPOT P50 ms | errors | short outputs | within SLOs |",
                  "|---:|---|---|---|---:|---|---:|---:|---:|---:|"]
        for c in f.loads:
            lines.append(f"| {c.load:g} | {num(c.tpot_p50_speedup)} | {num(c.tpot_p99_speedup)} | "
                         f"{num(c.e2e_p50_speedup)} | {num(c.throughput_ratio)} | {num(c.ttft_p50_change)} | "
                         f"{num(c.baseline.tpot_p50, 1)} / {num(c.candidate.tpot_p50, 1)} | "
                         f"{c.baseline.requests - c.baseline.ok} / {c.candidate.requests - c.candidate.ok} | "
                         f"{c.baseline.short} / {c.candidate.short} | {_share(c.baseline.goodput)} / "
                         f"{_share(c.candidate.goodput)} |")
        buckets = [(c.load, b) for c in f.loads for b in c.buckets]
        if len({b.temperature for _, b in buckets}) > 1:
            lines += ["", "TPOT P50 speedup by temperature (same prompts in both arms): "
                      + "; ".join(f"T={b.temperature:g} at {load:g}: {num(b.tpot_p50_speedup)}" for load, b in buckets)]
        if f.equivalence:
            q = f.equivalence
            lines += ["", f"Outputs at T = 0: {q.identical} of {q.compared} identical to the baseline's"
                      + (f" (the baseline reproduces itself in {q.floor_identical} of {q.floor_compared})"
                         if q.floor_compared else "")]
        lines += ["", "| rule | role | status | against the measurement | reason |", "|---|---|---|---|---|"]
        lines += [f"| {cell(r.name)} | {r.role.value} | {r.status.value} | {_agreement(r)} | {cell(r.reason)} |"
                  for r in v.rules]
        acc = f.server_acceptance.acceptance_rate if f.server_acceptance else None
        lines += ["", f"Server acceptance over the measured windows: {num(acc)}", ""]
        if f.buckets:
            lines += ["| temperature | requests | P10 | P50 | P90 | pooled |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {b.temperature:g} | {b.requests} | {num(b.p10)} | {num(b.p50)} | {num(b.p90)} | "
                      f"{num(b.pooled)} |" for b in f.buckets]
            lines.append("")
        for advice in v.advice:
            lines += [f"Advice: {md(advice)}", ""]
    if findings.best:
        lines += ["## Candidate to use, by workload", ""] + [f"- {md(w)}: {md(b)}" for w, b in findings.best.items()]
        lines += [""]
    if findings.comparisons:
        lines += ["## Candidates compared", ""] + [f"- {r.status.value}: {md(r.reason)}" for r in findings.comparisons]
    if findings.missing:
        lines += ["", "Cells without results: " + md(", ".join(findings.missing))]
    return "\n".join(lines) + "\n"
