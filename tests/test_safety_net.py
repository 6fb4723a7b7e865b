"""Safety net: tests that fail on small planted bugs the rest of the suite let through.

Each test names the bug it guards (numbered as in the mutation report) and how its expected
values were derived: by hand arithmetic written out in the comments, from vLLM's KV formula,
or from statistics on seeded simulated data. No expected value is computed by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from faultserver import FaultServer

from specwise.analysis import (CellRuns, Estimate, acceptance, bootstrap_percentiles, drafted_accepted, point, ratio,
                               server_view, server_window, summarize)
from specwise.catalog import Precision, resolve_gpu
from specwise.engine.server import free_port
from specwise.experiment import CellRunner, Events, ExperimentConfig, cell_complete, cell_dir
from specwise.load import Endpoint, per_request_acceptance, send, Connections
from specwise.metrics import ACCEPTED, DRAFT_TOKENS, DRAFTS, increase, per_pos_key, window
from specwise.plan.memory import Deployed, overhead_per_gpu, plan_memory
from specwise.workload import Planned, Prompt
from specwise.results import MANIFEST, Manifest, MetricSample, RequestRecord, Run, load_run
from specwise.verdict import Evidence, LoadEvidence, Status
from specwise.verdict.rules import rule_squeeze

PREEMPT = "vllm:num_preemptions_total"
KV = "vllm:kv_cache_usage_perc"


def manifest(complete: bool = True, k: int | None = 4) -> Manifest:
    return Manifest(specwise_version="t", started_at="t", complete=complete, url="u", api="completions", model="m",
                    seed=0, config={"k": k}, hardware={})


def record(i: int = 0, *, chunk_s: list[float] | None = None, chunk_tokens: list[int] | None = None,
           scheduled_s: float = 0.0, sent_s: float = 0.0, end_s: float | None = None, error: str | None = None,
           output_tokens: int | None = None, temperature: float = 0.0, k: int | None = None) -> RequestRecord:
    """A request record; with `k`, its acceptance is estimated as load.send does (per_request_acceptance)."""
    chunk_s = chunk_s if chunk_s is not None else [sent_s + 0.1]
    chunk_tokens = chunk_tokens if chunk_tokens is not None else [1] * len(chunk_s)
    acc, source, merged = per_request_acceptance(chunk_tokens, None, k) if k else (None, "none", 0)
    return RequestRecord(index=i, prompt_id=f"p{i}", temperature=temperature, scheduled_s=scheduled_s, sent_s=sent_s,
                         end_s=end_s if end_s is not None else chunk_s[-1], chunk_s=chunk_s,
                         chunk_tokens=chunk_tokens, error=error, output_tokens=output_tokens, acceptance=acc,
                         acceptance_source=source, merged_chunks=merged)


def run_of(records: list[RequestRecord], samples: list[MetricSample] | None = None) -> Run:
    return Run(directory=Path("."), manifest=manifest(), requests=records, samples=samples or [])


# ------------------------------------------------------------------ 1–3: bootstrap confidence intervals

def test_bug1_bootstrap_ci_has_width_on_noisy_data():
    """Bug 1 (bootstrap resamples nothing): on 200 spread-out values the CI cannot collapse to its point.

    Standard error of a median of N(0, 1), n=200: ≈ 1.2533/√200 ≈ 0.089, so a 95 % CI is ≈ 0.35 wide;
    anything under 0.1 is a collapsed interval.
    """
    data = np.random.default_rng(1).normal(0.0, 1.0, 200)
    est = bootstrap_percentiles(list(data), [50.0, 90.0], seed=3)
    for q in (50.0, 90.0):
        e = est[q]
        assert e.low < e.value < e.high
    assert 0.1 < est[50.0].high - est[50.0].low < 0.8


def test_bug1_ratio_ci_has_width_on_noisy_data():
    """Bug 1 in analysis.ratio: two noisy arms (±10 %) → the speedup CI has a width, around 2."""
    rng = np.random.default_rng(2)
    base, cand = list(rng.normal(20.0, 2.0, 100)), list(rng.normal(10.0, 1.0, 100))
    r = ratio(base, cand, 50, seed=0)
    assert r is not None and r.low is not None and r.high is not None
    assert r.low < r.value < r.high
    # Each median's s.e. ≈ 1.2533 × 10 %/√100 ≈ 1.25 %; the ratio's ≈ √2 × 1.25 % ≈ 1.8 % of 2 → CI ≈ ±0.07.
    assert 0.03 < r.high - r.low < 0.4


def test_bug2_bootstrap_ci_covers_the_true_percentile_95_percent_of_the_time():
    """Bug 2 (95 % → 50 % CONFIDENCE): coverage on 400 seeded datasets of n=200 from Exp(1).

    True median = ln 2, true P90 = ln 10. A 95 % percentile-bootstrap CI covers them in ≈ 95 % of datasets
    (binomial s.d. over 400 ≈ 1.1 %); a 50 % CI would cover ≈ 50 %.
    """
    rng = np.random.default_rng(12345)
    hits = {50.0: 0, 90.0: 0}
    truth = {50.0: np.log(2.0), 90.0: np.log(10.0)}
    for i in range(400):
        est = bootstrap_percentiles(list(rng.exponential(1.0, 200)), [50.0, 90.0], seed=i, resamples=200)
        for q in hits:
            hits[q] += est[q].low <= truth[q] <= est[q].high
    for q, n in hits.items():
        assert 0.88 <= n / 400 <= 0.99, (q, n / 400)


def test_bug2_3_speedup_ci_covers_the_true_ratio():
    """Bugs 2 and 3: coverage of analysis.ratio on 400 seeded pairs of arms N(20, 2) and N(10, 1), n=100.

    The true ratio of medians is 20/10 = 2. Resampling both arms gives ≈ 95 % coverage; a 50 % CI gives
    ≈ 50 %; resampling one arm only shrinks the interval by √2 → coverage ≈ P(|Z| < 1.96/√2) ≈ 83 %.
    (Fewer resamples than the default, for speed.)
    """
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(400):
        r = ratio(list(rng.normal(20.0, 2.0, 100)), list(rng.normal(10.0, 1.0, 100)), 50, seed=i, resamples=200)
        assert r is not None and r.low is not None and r.high is not None
        hits += r.low <= 2.0 <= r.high
    assert 0.88 <= hits / 400 <= 0.99, hits / 400


@pytest.mark.parametrize("noisy_first", [True, False])
def test_bug3_ratio_resamples_both_arms(noisy_first):
    """Bug 3 (one arm not resampled): with one arm exactly constant, all the CI's width comes from the
    other arm, so it must be wide whichever side (numerator or denominator) the noisy arm is on.

    Noisy arm N(10, 1), n=200: s.e. of its median ≈ 1.2533/√200 ≈ 0.089 → the ratio's 95 % CI is ≈ ±1.7 %
    of the value; the constant arm's bootstrap is the constant itself.
    """
    noisy = list(np.random.default_rng(5).normal(10.0, 1.0, 200))
    const = [10.0] * 200
    num, den = (noisy, const) if noisy_first else (const, noisy)
    r = ratio(num, den, 50, seed=0)
    assert r is not None and r.low is not None and r.high is not None
    assert r.low < r.value < r.high
    assert (r.high - r.low) / r.value > 0.01


# ------------------------------------------------------------------ 4–5: per-request timings

def test_bug4_itl_spreads_each_gap_over_the_chunks_tokens():
    """Bug 4: chunks at 1.0, 1.2, 1.5 s carrying 1, 4, 1 tokens.

    Gap 1.0→1.2 = 0.2 s over the 4 tokens of the later chunk → four ITLs of 0.05 s;
    gap 1.2→1.5 = 0.3 s over 1 token → one of 0.3 s. TPOT = (1.5 − 1.0)/(6 − 1) = 0.1 s.
    """
    r = record(chunk_s=[1.0, 1.2, 1.5], chunk_tokens=[1, 4, 1], sent_s=0.9)
    assert r.itl_s == pytest.approx([0.05, 0.05, 0.05, 0.05, 0.3])
    assert r.tpot_s == pytest.approx(0.1)
    failed = record(chunk_s=[1.0, 1.2], chunk_tokens=[1, 4], sent_s=0.9, error="stream_reset")
    assert failed.itl_s == []


def test_bug4_summary_itl_is_spread_per_token():
    """Bug 4 through the summary: one request as above → 5 ITLs (ms): 50, 50, 50, 50, 300 → mean 100, P50 50."""
    s = summarize(run_of([record(chunk_s=[1.0, 1.2, 1.5], chunk_tokens=[1, 4, 1], sent_s=0.9, end_s=1.5)]))
    assert s.itl_ms is not None and s.itl_ms.count == 5
    assert s.itl_ms.mean == pytest.approx(100.0)
    assert s.itl_ms.p50.value == pytest.approx(50.0)


def test_bug5_e2e_and_ttft_run_from_the_send_not_the_schedule():
    """Bug 5: scheduled at 1.0 s, sent 0.5 s late at 1.5 s, first chunk 1.8 s, end 2.1 s.

    E2E = 2.1 − 1.5 = 0.6 s (not 1.1 s from the schedule), TTFT = 1.8 − 1.5 = 0.3 s, send lag = 0.5 s.
    """
    r = record(chunk_s=[1.8, 1.9, 2.0], scheduled_s=1.0, sent_s=1.5, end_s=2.1)
    assert r.e2e_s == pytest.approx(0.6)
    assert r.ttft_s == pytest.approx(0.3)
    assert r.send_lag_s == pytest.approx(0.5)
    s = summarize(run_of([r]))
    assert s.e2e_ms is not None and s.e2e_ms.p50.value == pytest.approx(600.0)
    assert s.ttft_ms is not None and s.ttft_ms.p50.value == pytest.approx(300.0)


# ------------------------------------------------------------------ 6: merged-chunk boundary

def test_bug6_merged_chunk_boundary_is_k_plus_1():
    """Bug 6: one verify step emits at most k accepted + 1 bonus token = k + 1 tokens.

    k=4: a chunk of 5 is one step (all 4 drafts accepted → (5 − 1)/4 = 1.0); a chunk of 6 cannot be one
    step → merged, no estimate. k=2: [1, 3, 3] → (3 − 1)/2 = 1.0; a 4-token chunk is merged.
    """
    assert per_request_acceptance([1, 5], None, 4) == (1.0, "chunks", 0)
    assert per_request_acceptance([1, 6], None, 4) == (None, "none", 1)
    assert per_request_acceptance([1, 5, 6, 2, 6], None, 4) == (None, "none", 2)
    assert per_request_acceptance([1, 3, 3], None, 2) == (1.0, "chunks", 0)
    assert per_request_acceptance([1, 3, 4], None, 2) == (None, "none", 1)


def test_bug6_summary_pooled_acceptance_leaves_merged_requests_out():
    """Bug 6 through summary.drafted_accepted / acceptance (records built as load.send builds them), k=4.

    [1, 5, 1]: 2 steps → drafted 2 × 4 = 8, accepted (5 − 1) + (1 − 1) = 4.
    [1, 5, 5]: drafted 8, accepted 8.
    [1, 6, 1]: a 6-token chunk (k + 2) is merged → no estimate, not pooled.
    Pooled = (4 + 8)/(8 + 8) = 0.75; one merged request.
    """
    a = record(0, chunk_s=[1.0, 1.1, 1.2], chunk_tokens=[1, 5, 1], k=4)
    b = record(1, chunk_s=[1.0, 1.1, 1.2], chunk_tokens=[1, 5, 5], k=4)
    merged = record(2, chunk_s=[1.0, 1.1, 1.2], chunk_tokens=[1, 6, 1], k=4)
    assert drafted_accepted(a, 4) == (8.0, 4.0)
    assert drafted_accepted(b, 4) == (8.0, 8.0)
    assert drafted_accepted(merged, 4) is None
    acc = acceptance([a, b, merged], 4)
    assert acc.per_request_pooled == pytest.approx(0.75)
    assert acc.merged_chunk_requests == 1
    (bucket,) = acc.buckets
    assert bucket.pooled == pytest.approx(0.75) and bucket.with_acceptance == 2
    s = summarize(run_of([a, b, merged]))  # the manifest's k is 4
    assert s.acceptance.per_request_pooled == pytest.approx(0.75)
    assert s.acceptance.merged_chunk_requests == 1


# ------------------------------------------------------------------ 7, 16: counter windows

RESTART = [  # drafts / draft tokens / accepted: the server restarts between the 2nd and 3rd scrape
    {DRAFTS: 50, DRAFT_TOKENS: 200, ACCEPTED: 100},
    {DRAFTS: 70, DRAFT_TOKENS: 280, ACCEPTED: 160},
    {DRAFTS: 5, DRAFT_TOKENS: 20, ACCEPTED: 10},
    {DRAFTS: 15, DRAFT_TOKENS: 60, ACCEPTED: 40},
]


def test_bug7_counter_window_survives_a_restart():
    """Bug 7 (last − first instead of the reset-safe increase).

    accepted 100 → 160 (+60), restart → 10 (+10 counted from 0), → 40 (+30): 100 (last − first = −60).
    draft tokens 200 → 280 (+80), → 20 (+20), → 60 (+40): 140.  drafts 20 + 5 + 10 = 35.
    Acceptance 100/140 = 0.714…, mean acceptance length 1 + 100/35.
    """
    assert increase([100, 160, 10, 40]) == 100
    values = window(RESTART)
    assert values[ACCEPTED] == 100 and values[DRAFT_TOKENS] == 140 and values[DRAFTS] == 35
    w = server_window([RESTART])
    assert w is not None
    assert w.accepted_tokens == 100 and w.draft_tokens == 140 and w.drafts == 35
    assert w.acceptance_rate == pytest.approx(100 / 140)
    assert w.mean_acceptance_length == pytest.approx(1 + 100 / 35)


def test_bug16_counter_missing_from_one_scrape_is_not_a_restart():
    """Bug 16 (a real bug at the time of writing): a scrape that lacks a counter is not a reset.

    A counter absent from the first scrape and present later counts from 0 (as today): missing, 50 → 50.
    A counter read 100, then missing from one scrape, then 150 grew by 150 − 100 = 50, not 150.
    """
    assert window([{DRAFTS: 1}, {DRAFTS: 2, ACCEPTED: 50}])[ACCEPTED] == 50
    assert window([{DRAFTS: 1, ACCEPTED: 100}, {DRAFTS: 2}, {DRAFTS: 3, ACCEPTED: 150}])[ACCEPTED] == 50


# ------------------------------------------------------------------ 8: pooled server acceptance

def _samples(before: dict[str, float], after: dict[str, float]) -> list[MetricSample]:
    return [MetricSample(t_s=0.0, phase="before", values=before), MetricSample(t_s=10.0, phase="after", values=after)]


def test_bug8_server_acceptance_pools_every_repetitions_window():
    """Bug 8 (only the first run's window used): two repetitions with different counters.

    Run A: drafts 0→100, draft tokens 0→400, accepted 0→300, pos0 0→90, pos1 0→70, preemptions 0→2, KV max 0.4.
    Run B: drafts 1000→1300 (300), draft tokens 4000→5200 (1200), accepted 2000→2400 (400),
           pos0 500→710 (210), pos1 400→530 (130), preemptions 5→6 (1), KV max 0.7.
    Pooled: drafts 400, draft tokens 1600, accepted 700 → acceptance 700/1600 = 0.4375 (A alone: 0.75),
    mean acceptance length 1 + 700/400 = 2.75, per position (90 + 210)/400 = 0.75 and (70 + 130)/400 = 0.5,
    preemptions 2 + 1 = 3, KV max 0.7.
    """
    p0, p1 = per_pos_key(0), per_pos_key(1)
    a = _samples({DRAFTS: 0, DRAFT_TOKENS: 0, ACCEPTED: 0, p0: 0, p1: 0, PREEMPT: 0, KV: 0.1},
                 {DRAFTS: 100, DRAFT_TOKENS: 400, ACCEPTED: 300, p0: 90, p1: 70, PREEMPT: 2, KV: 0.4})
    b = _samples({DRAFTS: 1000, DRAFT_TOKENS: 4000, ACCEPTED: 2000, p0: 500, p1: 400, PREEMPT: 5, KV: 0.2},
                 {DRAFTS: 1300, DRAFT_TOKENS: 5200, ACCEPTED: 2400, p0: 710, p1: 530, PREEMPT: 6, KV: 0.7})
    reqs = [record(i, chunk_s=[i + 0.1, i + 0.2], sent_s=float(i)) for i in range(3)]
    cell = CellRuns("spec", "code", 1.0, (run_of(reqs, a), run_of(reqs, b)))
    for w in (point(cell).server, server_view([cell])):
        assert w is not None
        assert (w.drafts, w.draft_tokens, w.accepted_tokens) == (400, 1600, 700)
        assert w.acceptance_rate == pytest.approx(0.4375)
        assert w.mean_acceptance_length == pytest.approx(2.75)
        assert w.per_position == {0: pytest.approx(0.75), 1: pytest.approx(0.5)}
        assert w.preemptions == 3 and w.kv_cache_usage_max == pytest.approx(0.7)
    # Across cells (a candidate's loads) too: the same two runs split over two cells.
    split = [CellRuns("spec", "code", 1.0, (run_of(reqs, a),)), CellRuns("spec", "code", 8.0, (run_of(reqs, b),))]
    pooled = server_view(split)
    assert pooled is not None and pooled.acceptance_rate == pytest.approx(0.4375)


# ------------------------------------------------------------------ 9: KV-squeeze boundary

@pytest.mark.parametrize("kv_max,status", [(0.90, Status.FAIL), (0.899, Status.PASS), (0.95, Status.FAIL)])
def test_bug9_kv_squeeze_boundary_is_90_percent_inclusive(kv_max, status):
    """Bug 9: verdict's rule: KV-cache usage at or above 90 % is a squeeze (0.90 FAILs, 0.899 PASSes)."""
    ev = Evidence(loads=[LoadEvidence(load=1.0, tpot_speedup=Estimate(value=1.5, low=1.4, high=1.6), requests=50,
                                      kv_usage_max=kv_max, preemptions=0, baseline_preemptions=0)])
    assert rule_squeeze(ev).status is status


# ------------------------------------------------------------------ 10–11: memory plan

# Parameter counts by hand from the architectures (untied embeddings and lm_head, GQA with 8 KV heads):
#   70B: 2 × 128256 × 8192 = 2,101,346,304 (embed + lm_head)
#        per layer: q,o 2 × 8192² + k,v 2 × 8192 × 1024 = 150,994,944; MLP 3 × 8192 × 28672 = 704,643,072;
#        norms 2 × 8192 → 855,654,400 × 80 layers = 68,452,352,000; final norm 8192 → 70,553,706,496
#   8B:  2 × 128256 × 4096 = 1,050,673,152
#        per layer: 2 × 4096² + 2 × 4096 × 1024 = 41,943,040; MLP 3 × 4096 × 14336 = 176,160,768;
#        norms 8192 → 218,112,000 × 32 = 6,979,584,000; final norm 4096 → 8,030,261,248
P70, P8 = 70_553_706_496, 8_030_261_248
# KV bytes per token per GPU at TP 2 (vLLM: 2 × layers × KV heads per rank × head dim × dtype bytes):
KV70 = 2 * 80 * (8 // 2) * 128 * 2   # 163,840 B (160 KiB; ×2 GPUs = the README's 320 KiB)
KV8 = 2 * 32 * (8 // 2) * 128 * 2    # 65,536 B (64 KiB; ×2 GPUs = 128 KiB)
# Overhead per GPU (memory.py's docstring): non-torch 0.5 GB + NCCL 0.5 GB (TP > 1) + CUDA graphs 0.5 GB
# + activation peak of an 8192-token batch, the larger of target and draft:
#   16-bit (2 B) × 8192 × ((2 × intermediate + (heads + 2 × KV heads) × head dim)/TP + 2 × hidden)
#   + fp32 (4 B) logits for 256 sequences × vocab / TP
#   70B, TP 2: (2 × 28672 + (64 + 16) × 128)/2 + 2 × 8192 = 50,176 → × 2 × 8192 = 822,083,584
#              + 256 × 128256 × 4 / 2 = 65,667,072 → 887,750,656
#   8B, TP 2:  (2 × 14336 + (32 + 16) × 128)/2 + 2 × 4096 = 25,600 → 419,430,400 + 65,667,072 = 485,097,472
#   8B, TP 1:  (2 × 14336 + 6144) + 8192 = 43,008 → 704,643,072 + 131,334,144 = 835,977,216
ACT70_TP2, ACT8_TP2, ACT8_TP1 = 887_750_656, 485_097_472, 835_977_216


def test_bug10_readme_plan_counts_the_drafts_own_kv(models):
    """Bug 10 (draft's KV bytes dropped): README example, 70B int8 + 8B bf16 on 2× H100 SXM, util 0.92, 4096 ctx.

    Per GPU: usable 80e9 × 0.92 = 73.6e9; weights 70.5537e9/2 (int8) + 2 × 8.0303e9/2 (bf16); overhead
    1.5e9 + 887,750,656 → KV budget 73.6e9 − 35.2769e9 − 8.0303e9 − 2.3878e9 = 27.905e9 bytes.
    With the draft: (163,840 + 65,536) B × 4096 = 939,524,096 B/seq → floor(29.70) = 29 sequences.
    Without: budget + 8.0303e9 = 35.935e9 over 163,840 × 4096 = 671,088,640 B/seq → floor(53.55) = 53.
    """
    target = Deployed(models["llama-3.1-70b"], Precision.int8, 2)
    draft = Deployed(models["llama-3.1-8b"], Precision.bf16, 2)
    plan = plan_memory(target, draft, resolve_gpu("h100-sxm"), 2, util=0.92, context=4096)
    overhead = 1.5e9 + ACT70_TP2
    budget = 80e9 * 0.92 - P70 * 1 / 2 - P8 * 2 / 2 - overhead
    assert budget / ((KV70 + KV8) * 4096) == pytest.approx(29.70, abs=0.01)
    assert (budget + P8) / (KV70 * 4096) == pytest.approx(53.55, abs=0.01)
    assert plan.target_kv_bytes_per_token == 2 * KV70 == 327_680
    assert plan.draft_kv_bytes_per_token == 2 * KV8 == 131_072
    for gpu in plan.per_gpu:
        assert gpu.kv_bytes_per_token == KV70 + KV8 == 229_376
        assert gpu.kv_budget_gb == pytest.approx(budget / 1e9, rel=1e-9)
        assert gpu.kv_tokens == int(budget // (KV70 + KV8))  # 121,656 (the README's KV tokens)
    assert plan.per_gpu[0].kv_tokens == 121_656
    c = plan.concurrency
    assert (c.max_seqs_with_draft, c.max_seqs_without_draft, c.draft_cost_seqs) == (29, 53, 24)
    assert c.kv_tokens_without_draft == int((budget + P8) // KV70)


def test_bug11_overhead_includes_activation_and_nccl(models):
    """Bug 11 (activation peak and NCCL dropped): overheads per GPU by hand from memory.py's formula."""
    t70 = Deployed(models["llama-3.1-70b"], Precision.int8, 2)
    d8 = Deployed(models["llama-3.1-8b"], Precision.bf16, 2)
    # TP 2, CUDA graphs: 0.5 + 0.5 (NCCL) + 0.5 GB + the larger activation peak (the 70B's).
    assert overhead_per_gpu(t70, d8, 2, False, 8192) == [pytest.approx(1.5e9 + ACT70_TP2, rel=1e-12)] * 2
    # The 8B alone at TP 2: 1.5e9 + 485,097,472.
    assert overhead_per_gpu(d8, None, 2, False, 8192) == [pytest.approx(1.5e9 + ACT8_TP2, rel=1e-12)] * 2
    # The 8B on one GPU, eager: non-torch 0.5 GB only (no NCCL, no graphs) + 835,977,216.
    one = Deployed(models["llama-3.1-8b"], Precision.bf16, 1)
    assert overhead_per_gpu(one, None, 1, True, 8192) == [pytest.approx(0.5e9 + ACT8_TP1, rel=1e-12)]


# ------------------------------------------------------------------ 13: resuming complete cells

EXPERIMENT = {
    "name": "resume",
    "servers": [{"name": "base", "role": "baseline", "url": "URL"}, {"name": "spec", "url": "URL", "k": 1}],
    "workloads": [{"name": "code", "dataset": "structured", "temperatures": "0"}],
    "loads": {"concurrency": [1]}, "requests": 5, "warmup": 0, "max_tokens": 8,
}


def _config(url: str) -> ExperimentConfig:
    data = json.loads(json.dumps(EXPERIMENT).replace("URL", url))
    return ExperimentConfig.model_validate(data)


def _write_cell(directory: Path, complete: bool) -> dict[str, tuple[bytes, int]]:
    directory.mkdir(parents=True)
    (directory / MANIFEST).write_text(manifest(complete=complete).model_dump_json())
    (directory / "requests.jsonl").write_text("stale\n")
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


class _Planned(Events):
    def __init__(self) -> None:
        super().__init__(log=lambda m: None)
        self.counts: list[int] = []

    def planned(self, count: int) -> None:
        self.counts.append(count)


def test_bug13_cell_complete_reads_the_manifest(tmp_path):
    """Bug 13: a manifest with complete=true is complete; complete=false, a missing or torn one is not."""
    done, partial, empty, torn = (tmp_path / n for n in ("done", "partial", "empty", "torn"))
    _write_cell(done, True)
    _write_cell(partial, False)
    empty.mkdir()
    torn.mkdir()
    (torn / MANIFEST).write_text('{"schema_version": 1, "comp')
    assert cell_complete(done) is True
    assert cell_complete(partial) is False
    assert cell_complete(empty) is False and cell_complete(torn) is False


def test_bug13_runner_never_reruns_a_complete_cell(tmp_path):
    """Bug 13: a complete cell is skipped — no server contacted (its URL has no listener), nothing deleted."""
    config = _config(f"http://127.0.0.1:{free_port()}")
    base = config.baseline
    directory = cell_dir(tmp_path, "code", "concurrency", 1.0, base.name, 0)
    before = _write_cell(directory, True)
    events = _Planned()
    with CellRunner(config, tmp_path, events) as runner:
        runner.run([(0, base, config.workloads[0], 1.0)])  # an attempt would raise "cannot reach"
    assert events.counts == [0]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()} == before


def test_bug13_runner_redoes_an_incomplete_cell(tmp_path):
    """Bug 13, the other side: an incomplete cell is deleted and rerun whole (against an in-process server)."""
    with FaultServer(tokens=4, chunk=1, gap_s=0.001) as server:
        config = _config(server.url)
        base = config.baseline
        directory = cell_dir(tmp_path, "code", "concurrency", 1.0, base.name, 0)
        _write_cell(directory, False)
        events = _Planned()
        with CellRunner(config, tmp_path, events) as runner:
            runner.run([(0, base, config.workloads[0], 1.0)])
    assert events.counts == [1]
    assert cell_complete(directory)
    run = load_run(directory)
    assert "stale" not in (directory / "requests.jsonl").read_text()
    assert len(run.requests) == 5 and all(r.ok for r in run.requests)


# ------------------------------------------------------------------ 14: throughput counts ok requests

def test_bug14_throughput_counts_only_ok_requests():
    """Bug 14: 4 ok requests of 10 tokens and 1 failed one (3 tokens streamed before its error), all within
    the window 0 s (first send) → 2 s (last end).

    Request throughput 4/2 = 2 req/s (not 5/2); output throughput 4 × 10/2 = 20 tok/s (not 43/2).
    """
    ok = [record(i, chunk_s=[0.5 * i + 0.1 * j for j in range(1, 11)], sent_s=0.5 * i, end_s=0.5 * i + 1.0,
                 output_tokens=10) for i in range(3)]
    ok.append(record(3, chunk_s=[0.2 + 0.1 * j for j in range(1, 11)], sent_s=0.2, end_s=2.0, output_tokens=10))
    failed = record(4, chunk_s=[0.3, 0.4, 0.5], sent_s=0.1, end_s=0.6, error="stream_reset")
    s = summarize(run_of(ok + [failed]))
    assert s.duration_s == pytest.approx(2.0)
    assert s.requests == 5 and s.ok == 4
    assert s.request_throughput_rps == pytest.approx(2.0)
    assert s.output_throughput_tok_s == pytest.approx(20.0)


# ------------------------------------------------------------------ 15: truncated streams

class NoDoneServer(FaultServer):
    """The fault server, plus `FAULT:nodone`: a well-formed stream that ends without `data: [DONE]`."""

    async def _completion(self, writer, request):  # type: ignore[no-untyped-def]
        text = request.get("prompt") or request["messages"][-1]["content"]
        if "FAULT:nodone" not in text:
            return await super()._completion(writer, request)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                     b"connection: close\r\n\r\n")
        for i in range(3):
            data = f"data: {json.dumps({'choices': [{'text': f't{i}', 'logprobs': {'tokens': [f't{i}']}}]})}\n\n"
            writer.write(f"{len(data.encode()):x}\r\n".encode() + data.encode() + b"\r\n")
        writer.write(b"0\r\n\r\n")  # a clean end of the body: no [DONE]
        await writer.drain()


def _send(url: str, prompt: str) -> RequestRecord:
    async def go() -> RequestRecord:
        async with Connections() as session:
            return await send(session, Endpoint(url, "m", k=1), Planned(0, Prompt("p", prompt), 0.0, False, 0),
                              zero=time.perf_counter(), scheduled_s=0.0, max_tokens=8)
    return asyncio.run(go())


def test_bug15_stream_without_done_is_truncated():
    """Bug 15: content chunks, then the body ends without [DONE] → error `truncated_stream`; a normal stream
    of the same server (4 chunks of 2 tokens, [DONE]) is ok."""
    with NoDoneServer(tokens=8, chunk=2, gap_s=0.001) as server:
        cut = _send(server.url, "say hi FAULT:nodone")
        good = _send(server.url, "say hi")
    assert cut.error == "truncated_stream" and not cut.ok
    assert cut.chunk_tokens == [1, 1, 1]
    assert good.ok and good.chunk_tokens == [2, 2, 2, 2] and good.output_tokens == 8


def test_repetitions_are_clusters_of_the_speedup_bootstrap():
    """Each repetition shifts a server's latencies by its own N(0, 4 %) (a restart's noise). Over 150 seeded
    experiments of 3 repetitions × 40 requests per arm, the two-stage (repetitions, then requests) interval
    covers the true ratio 2 far more often than resampling pooled requests, which ignores the shifts;
    the baseline's spread between repetitions sees them too."""
    from specwise.analysis import clustered_ratio, spread_between

    rng = np.random.default_rng(11)
    covered = {"clustered": 0, "pooled": 0}
    for i in range(150):
        arms = [[list((20.0 if arm == 0 else 10.0) * (1 + rng.normal(0, 0.04)) * rng.normal(1, 0.05, 40))
                 for _ in range(3)] for arm in (0, 1)]
        c = clustered_ratio(arms[0], arms[1], 50, seed=i, resamples=200)
        p = ratio([x for rep in arms[0] for x in rep], [x for rep in arms[1] for x in rep], 50, seed=i, resamples=200)
        covered["clustered"] += c.low <= 2.0 <= c.high
        covered["pooled"] += p.low <= 2.0 <= p.high
    # Three clusters are few for a bootstrap (it under-covers, ~0.77 here); pooling ignores the shifts (~0.47).
    assert covered["clustered"] / 150 >= 0.7 and covered["pooled"] / 150 < 0.55, covered
    assert clustered_ratio([[1.0] * 10], [[2.0] * 10], 50) == ratio([1.0] * 10, [2.0] * 10, 50)
    assert spread_between([[10.0] * 5, [12.0] * 5]) == pytest.approx(1 / 11)   # pooled P50 11: 10 and 12 are 1/11 off
    assert spread_between([[10.0] * 5]) is None


def test_repetitions_widen_the_interval_by_their_spread():
    """Two repetitions per arm whose P50 TPOTs stray 10 % (baseline 10 and 12 ms: pooled P50 11, each 1/11
    off) and not at all (candidate 5 ms): the interval is stretched by √((1/11)² + 0²) = 9.1 %."""
    from specwise.analysis import CellRuns, compare, widened
    from specwise.analysis.stats import Estimate as E

    assert widened(E(value=2.0, low=1.8, high=2.2), 0.1) == E(value=2.0, low=1.8 * 0.9, high=2.2 * 1.1)
    assert widened(E(value=2.0, low=1.8, high=2.2), None) == E(value=2.0, low=1.8, high=2.2)

    def arm(*tpots_ms: float) -> tuple:
        return tuple(Run(directory=Path("."), manifest=Manifest(specwise_version="t", started_at="t", url="u",
                                                                api="completions", model="m", seed=0,
                                                                config={"max_tokens": 3}, hardware={}),
                         requests=[RequestRecord(index=i, prompt_id=str(i), temperature=0.0, scheduled_s=0, sent_s=0,
                                                 end_s=1, chunk_s=[0.01, 0.01 + t / 1e3, 0.01 + 2 * t / 1e3],
                                                 chunk_tokens=[1, 1, 1])
                                   for i in range(20)], samples=[]) for t in tpots_ms)

    cmp = compare(CellRuns("b", "w", 1, arm(10.0, 12.0)), CellRuns("c", "w", 1, arm(5.0, 5.0)))
    assert cmp.run_to_run == pytest.approx(1 / 11)
    one = compare(CellRuns("b", "w", 1, arm(10.0)), CellRuns("c", "w", 1, arm(5.0)))
    assert one.run_to_run is None
