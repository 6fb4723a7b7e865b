"""Analysis and findings over stored runs (synthetic records with known timings), and the report's writers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from specwise.analysis import CellRuns, compare, ratio
from specwise.experiment import parse_config
from specwise.experiment import build_findings, control_cells
from specwise.metrics import ACCEPTED, DRAFT_TOKENS, DRAFTS, per_pos_key
from specwise.report import html, markdown, write_report
from specwise.results import Manifest, MetricSample, RequestRecord, Run
from specwise.verdict import Decision

CONFIG = """
name: synthetic
servers:
  - {name: base, role: baseline, url: "http://127.0.0.1:1"}
  - {name: spec, url: "http://127.0.0.1:2", k: 4}
workloads:
  - {name: code, dataset: structured, temperatures: "0"}
  - {name: chat, dataset: mixed, temperatures: "0:1,1.0:1"}
loads: {concurrency: [1, 8]}
requests: 40
"""


def run(tpot_ms: float | dict[float, float], temps: tuple[float, ...] = (0.0,), n: int = 40, tokens: int = 33,
        acceptance: dict[float, float] | None = None, counters: tuple[float, float, float] | None = None,
        seed: int = 0) -> Run:
    """A run whose requests have the given TPOT (by temperature if a dict), ±3 % noise."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        t = temps[i % len(temps)]
        tpot = (tpot_ms[t] if isinstance(tpot_ms, dict) else tpot_ms) / 1e3 * rng.uniform(0.97, 1.03)
        start = i * 2.0
        chunks = [start + 0.1 + j * tpot for j in range(tokens)]
        acc = acceptance.get(t) if acceptance else None
        records.append(RequestRecord(index=i, prompt_id=f"p{i}", temperature=t, scheduled_s=start, sent_s=start,
                                     end_s=chunks[-1] + 0.001, chunk_s=chunks, chunk_tokens=[1] * tokens,
                                     output_tokens=tokens, acceptance=acc,
                                     acceptance_source="server" if acc is not None else "none"))
    samples = []
    if counters:
        drafts, draft_tokens, accepted = counters
        samples = [MetricSample(t_s=0, phase="before", values={DRAFTS: 0, DRAFT_TOKENS: 0, ACCEPTED: 0,
                                                               per_pos_key(0): 0, "vllm:kv_cache_usage_perc": 0.1}),
                   MetricSample(t_s=80, phase="after", values={DRAFTS: drafts, DRAFT_TOKENS: draft_tokens,
                                                               ACCEPTED: accepted, per_pos_key(0): 0.9 * drafts,
                                                               "vllm:kv_cache_usage_perc": 0.3})]
    manifest = Manifest(specwise_version="t", started_at="t", complete=True, url="u", api="completions", model="m",
                        seed=0, config={"k": 4}, hardware={})
    return Run(directory=Path("."), manifest=manifest, requests=records, samples=samples)


def test_ratio_has_a_ci_around_the_true_speedup() -> None:
    base, cand = run(20.0), run(10.0, seed=1)
    cmp = compare(CellRuns("base", "code", 1, (base,)), CellRuns("spec", "code", 1, (cand,)))
    assert cmp.tpot_p50_speedup is not None and cmp.tpot_p50_speedup.low is not None
    s = cmp.tpot_p50_speedup
    assert 1.9 < s.low < s.value < s.high < 2.1  # type: ignore[operator]  # ±3 % noise around 2×
    assert cmp.throughput_ratio is not None
    assert ratio([], [1.0], 50) is None


def cells_for(code_spec: dict[float, Run], chat_spec: dict[float, Run]) -> dict:
    cells = {}
    for level in (1.0, 8.0):
        cells[("base", "code", level)] = [run(20.0, seed=int(level))]
        cells[("base", "chat", level)] = [run(20.0, temps=(0.0, 1.0), seed=int(level) + 10)]
        cells[("spec", "code", level)] = [code_spec[level]]
        cells[("spec", "chat", level)] = [chat_spec[level]]
    return cells


def test_homogeneous_and_mixed_workloads_get_different_diagnoses(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    # code (T=0): high acceptance, faster at c=1, slower at c=8 → enable with a limit.
    code = {1.0: run(12.0, acceptance={0.0: 0.8}, counters=(1000, 4000, 3200)),
            8.0: run(26.0, acceptance={0.0: 0.8}, counters=(1000, 4000, 3200))}
    # chat (T 0 and 1): T=0 requests fast, T=1 requests slow → P50 better, P99 worse; acceptance 0.45.
    chat = {lv: run({0.0: 10.0, 1.0: 30.0}, temps=(0.0, 1.0), acceptance={0.0: 0.8, 1.0: 0.1},
                    counters=(1000, 4000, 1800)) for lv in (1.0, 8.0)}
    findings = build_findings(config, cells_for(code, chat))
    by = {f.workload: f for f in findings.findings}
    assert by["code"].verdict.decision is Decision.ENABLE_WITH_LIMIT
    assert by["code"].verdict.limit is not None and by["code"].verdict.limit.batch == 1
    assert by["code"].server_acceptance.acceptance_rate == pytest.approx(0.8)  # type: ignore[union-attr]
    chat_v = by["chat"].verdict
    # Measured on the same prompts: T=0 requests 2× faster, T=1 requests 1.5× slower → speculate for T=0 only.
    assert chat_v.decision is Decision.ENABLE_WITH_LIMIT and chat_v.limit is not None
    assert chat_v.limit.temperatures == [0.0] and "route T = 1" in chat_v.headline
    status = {r.name: r.status.value for r in chat_v.rules}
    assert status["speedup by temperature"] == "FAIL" and status["per-request acceptance tail"] == "FAIL"
    assert status["P50–P99 divergence"] == "FAIL" and status["temperature"] == "FAIL"
    # External servers: the control is prescribed, not run.
    assert by["chat"].control is not None and "specwise bench --url http://127.0.0.1:2" in (
        by["chat"].control.prescription or "")
    assert control_cells(config, findings) == []
    # Histograms by temperature bucket and per-position acceptance come through.
    assert set(by["chat"].histogram) == {0.0, 1.0}
    assert by["chat"].server_acceptance.per_position == {0: pytest.approx(0.9)}  # type: ignore[union-attr]

    paths = write_report(findings, tmp_path)
    md = paths["markdown"].read_text()
    assert "ENABLE_WITH_LIMIT" in md and "T = 0 traffic only" in md
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") >= 6 and "<script" not in page


def test_the_control_runs_for_launched_servers_and_classifies() -> None:
    config = parse_config(CONFIG.replace('url: "http://127.0.0.1:2", k: 4', "launch: {mode: draft, k: 4}")
                          .replace('url: "http://127.0.0.1:1"', "launch: {mode: baseline}"))
    code = {lv: run(12.0, acceptance={0.0: 0.8}, counters=(1000, 4000, 3200)) for lv in (1.0, 8.0)}
    chat = {lv: run({0.0: 10.0, 1.0: 30.0}, temps=(0.0, 1.0), acceptance={0.0: 0.8, 1.0: 0.1},
                    counters=(1000, 4000, 1800)) for lv in (1.0, 8.0)}
    cells = cells_for(code, chat)
    findings = build_findings(config, cells)
    todo = control_cells(config, findings)
    assert [(w.name, w.temperatures, level, names) for w, level, names in todo] == [
        ("chat-control", "0", 1.0, ["base", "spec"])]
    # The control tightens P99: a mixed-workload problem.
    cells[("base", "chat-control", 1.0)] = [run(20.0, seed=5)]
    cells[("spec", "chat-control", 1.0)] = [run(10.0, seed=6)]
    rule = next(r for r in build_findings(config, cells).findings if r.workload == "chat").verdict.rules
    div = next(r for r in rule if r.name == "P50–P99 divergence")
    assert div.values["diagnosis"] == "mixed workload"
    # It regresses too: a speculative-decoding problem.
    cells[("spec", "chat-control", 1.0)] = [run(30.0, seed=6)]
    rule = next(r for r in build_findings(config, cells).findings if r.workload == "chat").verdict.rules
    assert next(r for r in rule if r.name == "P50–P99 divergence").values["diagnosis"] == "speculative decoding"


def test_everything_embedded_in_html_is_escaped() -> None:
    config = parse_config(CONFIG.replace("dataset: mixed", "dataset: structured"))
    cells = cells_for({lv: run(12.0) for lv in (1.0, 8.0)}, {lv: run(12.0) for lv in (1.0, 8.0)})
    findings = build_findings(config, cells)
    evil = '<script>alert("x")</script>'
    findings.findings[0].candidate = evil
    findings.findings[0].verdict.rules[0].reason = evil
    findings.experiment = evil
    page = html(findings)
    assert evil not in page and "&lt;script&gt;" in page and "<script" not in page
    # Markdown renderers pass raw HTML through: report.md escapes it as well.
    page_md = markdown(findings)
    assert "<script" not in page_md and '&lt;script&gt;alert("x")&lt;/script&gt;' in page_md


def test_report_opens_in_chromium_with_plots_and_no_console_error(tmp_path: Path) -> None:
    from chromium import coloured_share, open_page

    config = parse_config(CONFIG)
    code = {lv: run(12.0 if lv == 1.0 else 26.0, acceptance={0.0: 0.8}, counters=(1000, 4000, 3200))
            for lv in (1.0, 8.0)}
    chat = {lv: run({0.0: 10.0, 1.0: 30.0}, temps=(0.0, 1.0), acceptance={0.0: 0.8, 1.0: 0.1},
                    counters=(1000, 4000, 1800)) for lv in (1.0, 8.0)}
    paths = write_report(build_findings(config, cells_for(code, chat)), tmp_path)
    page = open_page(paths["html"], tmp_path / "report.png")
    assert page.console_errors == []
    assert coloured_share(page.screenshot, (31, 119, 180)) > 0.0005   # the candidates' plot lines
    # The check can fail: a page with a script error, and a page without plots.
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>no plots</p><script>undefinedFunction();</script></body></html>")
    bad = open_page(broken, tmp_path / "broken.png")
    assert any("undefinedFunction" in e for e in bad.console_errors), bad.console_messages
    assert coloured_share(bad.screenshot, (31, 119, 180)) == 0.0


def test_a_typical_acceptance_launch_gives_up_exact_outputs() -> None:
    config = parse_config(CONFIG.replace('url: "http://127.0.0.1:2", k: 4',
                                         'launch: {mode: draft, k: 4, extra_args: ["--spec-decoding-acceptance-method",'
                                         ' "typical_acceptance_sampler"]}'))
    assert not next(s for s in config.servers if s.name == "spec").exact_by_design
    assert config.baseline.exact_by_design
