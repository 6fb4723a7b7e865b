"""The verdict against servers whose behaviour is known exactly (tests/groundtruth.py): for each scenario the
right answer follows from the cost model, and `specwise run` (the experiment executor, on URLs) must reach it.

Costs in ms: a target pass 2 + 0.1 per token in the batch; a draft pass as given. The expected speedups
(`CostModel.speedup`) are printed in each scenario's comment."""

from __future__ import annotations

from pathlib import Path

import pytest
from groundtruth import CostModel, GroundTruthServer

from specwise.experiment import Events, execute_experiment, parse_config
from specwise.verdict import Decision

BASELINE = CostModel()


def run(tmp_path: Path, candidate: CostModel, loads: list[int], temperatures: str = "0", requests: int = 48,
        max_tokens: int = 32):
    with GroundTruthServer(BASELINE, seed=1) as base, GroundTruthServer(candidate, seed=2) as cand:
        config = parse_config(f"""
name: ground-truth
servers:
  - {{name: baseline, role: baseline, url: "{base}"}}
  - {{name: candidate, url: "{cand}", k: {candidate.k}}}
workloads:
  - {{name: w, dataset: structured, temperatures: "{temperatures}"}}
loads: {{concurrency: {loads}}}
requests: {requests}
warmup: 2
max_tokens: {max_tokens}
monitoring: true
""")
        findings = execute_experiment(config, tmp_path / "exp", Events(log=lambda m: None))
    return findings.findings[0]


def test_a_clear_limit(tmp_path: Path) -> None:
    """A 1:10 draft with acceptance 0.8: 2.11× at c=1, 1.32× at c=8, 0.87× at c=32 → speculate up to 8.

    The tail must not blur it: a step yields 1 + A tokens, A = 0…4 accepted with P = .2, .16, .128, .1024,
    .4096 (mean 3.36, sd 1.6). Over a 96-token request (~28 steps) the mean's sd is 0.30, so the 1-in-100
    slowest request runs at ≈ 2.66 tokens/step: P99 TPOT 7.12 / 2.66 = 2.68 ms against the baseline's 2.8
    at c=8 — no P99 regression. (With 32 tokens, ~10 steps, it would be ≈ 2.15 tokens/step and P99 TPOT
    0.85× the baseline's speed: a real regression that caps the limit at 1.)"""
    draft = CostModel(k=4, draft_step_ms=0.2, draft_token_ms=0.01, acceptance={0.0: 0.8})
    assert draft.speedup(BASELINE, 8) > 1.25 and draft.speedup(BASELINE, 32) < 0.9
    f = run(tmp_path, draft, [1, 8, 32], requests=64, max_tokens=96)
    v = f.verdict
    assert v.decision is Decision.ENABLE_WITH_LIMIT, v.headline
    assert v.limit is not None and 8 <= v.limit.load < 32, v.headline
    assert "[[1, 8, 4]" in v.limit.vllm_setting
    assert v.crossover is not None and 8 < v.crossover < 32


def test_a_clear_loss(tmp_path: Path) -> None:
    """A heavy draft (half a target pass) with acceptance 0.4: 0.51× at c=1, worse above → off."""
    heavy = CostModel(k=4, draft_step_ms=1.0, draft_token_ms=0.05, acceptance={0.0: 0.4})
    assert heavy.speedup(BASELINE, 1) < 0.6
    v = run(tmp_path, heavy, [1, 8]).verdict
    assert v.decision is Decision.DISABLE, v.headline
    assert "at concurrency 1" in v.headline


def test_a_mixed_workload_with_one_hurt_bucket(tmp_path: Path) -> None:
    """T=0 accepts 0.9, T=1 accepts 0.05; in the same batches T=0 requests are 2.6× (c=1) and 2.0× (c=4)
    faster, T=1 requests 0.66× and 0.51× — enable for T=0 traffic only, at every load."""
    draft = CostModel(k=4, draft_step_ms=0.2, draft_token_ms=0.01, acceptance={0.0: 0.9, 1.0: 0.05})
    assert draft.speedup(BASELINE, 4, 0.0) > 1.9 and draft.speedup(BASELINE, 4, 1.0) < 0.6
    f = run(tmp_path, draft, [1, 4], temperatures="0:1,1:1", requests=64)
    v = f.verdict
    assert v.decision is Decision.ENABLE_WITH_LIMIT, v.headline
    assert v.limit is not None and v.limit.temperatures == [0.0] and v.limit.load == 4, v.headline
    assert "route T = 1" in v.headline
    by_temp = next(r for r in v.rules if r.name == "speedup by temperature")
    assert by_temp.reason.endswith("T=1 is slower with speculation")


def test_a_cheap_proposer_with_low_acceptance_wins_at_low_load(tmp_path: Path) -> None:
    """An n-gram-like proposer that costs nothing, acceptance 0.3 (below the guide's 0.5): 1.20× at c=1,
    0.67× at c=8 → speculate at c=1 only; the guide's acceptance rule disagrees and is overruled.

    Its tail at c=1: a step yields 1.43 tokens on average (sd 0.7); over 96 tokens (~66 steps) the 1-in-100
    slowest request still makes ≈ 1.23 tokens/step, P99 TPOT 2.5 / 1.23 = 2.03 ms against 2.1 — no P99
    regression (over 32 tokens it would be ≈ 1.08 tokens/step, 0.91× the baseline's speed)."""
    ngram = CostModel(k=4, acceptance={0.0: 0.3})
    assert ngram.speedup(BASELINE, 1) > 1.15 and ngram.speedup(BASELINE, 8) < 0.7
    v = run(tmp_path, ngram, [1, 8], requests=64, max_tokens=96).verdict
    assert v.decision is Decision.ENABLE_WITH_LIMIT, v.headline
    assert v.limit is not None and v.limit.load == 1
    acceptance = next(r for r in v.rules if r.name == "acceptance")
    assert acceptance.agrees is False and "below the guide's 0.5" in acceptance.reason
    # Break-even from the measured step costs: a step costs 2.5 ms against 2.1 ms per baseline token, so it
    # must yield 1.19 tokens: 0.19 accepted per 4 drafted ≈ 0.05, against a measured rate of
    # (0.3 + 0.3² + 0.3³ + 0.3⁴) / 4 = 0.10 (timing noise allowed).
    assert acceptance.values["break_even"] == pytest.approx(0.05, abs=0.03)
    assert acceptance.values["acceptance"] == pytest.approx(0.10, abs=0.02)


def test_a_candidate_that_changes_outputs_is_off_whatever_its_speed(tmp_path: Path) -> None:
    """As fast as the clear-limit draft, but its T=0 outputs are not the baseline's."""
    broken = CostModel(k=4, draft_step_ms=0.2, draft_token_ms=0.01, acceptance={0.0: 0.8}, change_outputs=True)
    v = run(tmp_path, broken, [1]).verdict
    assert v.decision is Decision.DISABLE and "changed the outputs" in v.headline
