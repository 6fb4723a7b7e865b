"""Derived files: a bench run's summary.json, and an experiment's report (HTML, Markdown and JSON side by
side in its directory)."""

from __future__ import annotations

from pathlib import Path

from specwise.analysis import BenchSummary, summarize
from specwise.experiment.findings import Findings
from specwise.report.html_page import html
from specwise.report.markdown_page import markdown
from specwise.results import SUMMARY, load_run, write_json_atomic

HTML, MARKDOWN, JSON = "report.html", "report.md", "report.json"


def write_report(findings: Findings, directory: Path) -> dict[str, Path]:
    paths = {"html": directory / HTML, "markdown": directory / MARKDOWN, "json": directory / JSON}
    paths["html"].write_text(html(findings), encoding="utf-8")
    paths["markdown"].write_text(markdown(findings), encoding="utf-8")
    write_json_atomic(paths["json"], findings.model_dump(mode="json"))
    return paths


def write_summary(run_dir: Path, slo_ms: dict[str, float] | None = None) -> BenchSummary:
    """A bench run's summary (under `slo_ms` for goodput), recomputed from its files and written beside them."""
    summary = summarize(load_run(run_dir), slo_ms or None)
    write_json_atomic(run_dir / SUMMARY, summary.model_dump(mode="json"))
    return summary
