"""Analytic performance model: a PREDICTION of speculative-decoding speedup, to confirm by measurement.

One forward pass of a model over B sequences with q new tokens each, on one
tensor-parallel rank (roofline, reference-data.md §2):

    T = max(T_mem, T_comp) + T_fixed
    T_mem  = (weight bytes read + KV bytes read) / (bandwidth × η_mem)
    T_comp = (2 × active params × B·q + 4 × L × n_q × d × B·q × context) / (FLOP/s × η_comp)

A speculative step is k draft passes (q = 1) and one target verify (q = k+1)
and yields E(α, k) = (1 − α^(k+1)) / (1 − α) tokens per sequence
(Leviathan et al. 2023, Eq. 1), so

    speedup(B) = E × T_target(B, 1) / (k × T_draft(B, 1) + T_target(B, k+1)).

Because T_target(B, k+1) ≥ T_target(B, 1) the speedup never exceeds E. At low
B both passes are bandwidth-bound and verifying k+1 tokens costs about as much
as one; at high B the verify pass becomes compute-bound and costs up to k+1
times more, so speculation loses. The efficiencies and fixed costs below are
assumptions until calibrated against measured runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from specwise.catalog import GPU
from specwise.plan.memory import Deployed

CONCURRENCY_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
ALPHA_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
MAX_K = 10


@dataclass(frozen=True)
class Efficiency:
    """Achieved fraction of peak, and fixed costs. Defaults are typical of tuned decode kernels."""

    bandwidth: float = 0.80
    compute: float = 0.60
    fixed_ms: float = 0.30          # launch and scheduling per forward pass (CUDA graphs on)
    allreduce_us: float = 8.0       # one small all-reduce over NVLink; two per layer under TP
    ngram_ms: float = 0.05          # prompt lookup runs on the CPU, per step


def tokens_per_step(alpha: float, k: int) -> float:
    """Expected tokens emitted per target step, bonus token included."""
    if alpha >= 1.0:
        return k + 1.0
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def _weight_bytes_read(model: Deployed, tokens: int) -> float:
    arch = model.arch
    if not arch.is_moe:
        return model.weight_bytes_per_gpu
    # Distinct experts a batch touches per layer: E × (1 − (1 − top_k/E)^tokens).
    touched = arch.num_experts * (1.0 - (1.0 - arch.experts_per_token / arch.num_experts) ** tokens)
    dense_part = arch.active_param_count - arch.experts_per_token * _expert_params(model)
    expert_part = touched * _expert_params(model)
    return (dense_part + expert_part) * model.precision.bytes / model.tp


def _expert_params(model: Deployed) -> float:
    arch = model.arch
    moe_layers = arch.num_layers - arch.first_dense_layers
    return moe_layers * 3 * arch.hidden_size * (arch.moe_intermediate_size or arch.intermediate_size)


def forward_time(model: Deployed, gpu: GPU, batch: int, tokens_per_seq: int, context: int,
                 eff: Efficiency = Efficiency()) -> float:
    """Seconds for one forward pass over `batch` sequences of `tokens_per_seq` new tokens."""
    arch = model.arch
    tokens = batch * tokens_per_seq
    kv_read = batch * model.kv_bytes_per_seq(context)
    t_mem = (_weight_bytes_read(model, tokens) + kv_read) / (gpu.bandwidth_tbs * 1e12 * eff.bandwidth)
    matmul = 2.0 * arch.active_param_count * tokens
    attention = 4.0 * arch.num_layers * arch.num_heads * arch.head_dim * tokens * context
    t_comp = (matmul + attention) / model.tp / (gpu.tflops(model.precision) * 1e12 * eff.compute)
    comm = 2 * arch.num_layers * eff.allreduce_us * 1e-6 if model.tp > 1 else 0.0
    return max(t_mem, t_comp) + eff.fixed_ms * 1e-3 + comm


@dataclass(frozen=True)
class SpecSetup:
    target: Deployed
    draft: Deployed | None   # None: n-gram proposer (no GPU model)
    gpu: GPU
    context: int             # mean context a decode step attends to: prompt + half the output
    eff: Efficiency = Efficiency()


def step_times(setup: SpecSetup, batch: int, k: int) -> tuple[float, float, float]:
    """(baseline step, draft part of a speculative step, verify step) in seconds."""
    base = forward_time(setup.target, setup.gpu, batch, 1, setup.context, setup.eff)
    verify = forward_time(setup.target, setup.gpu, batch, k + 1, setup.context, setup.eff)
    if setup.draft is None:
        draft = setup.eff.ngram_ms * 1e-3
    else:
        draft = k * forward_time(setup.draft, setup.gpu, batch, 1, setup.context, setup.eff)
    return base, draft, verify


def speedup(setup: SpecSetup, batch: int, alpha: float, k: int) -> float:
    base, draft, verify = step_times(setup, batch, k)
    return tokens_per_step(alpha, k) * base / (draft + verify)


def alpha_for(tokens: float, k: int) -> float:
    """The acceptance α at which a step yields `tokens` tokens, E(α, k) = tokens (clamped to [0, 1]).
    E grows from 1 at α = 0 to k + 1 at α = 1, so bisection finds it."""
    if tokens <= 1:
        return 0.0
    if tokens >= k + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_step(mid, k) < tokens else (lo, mid)
    return hi


def break_even_alpha(setup: SpecSetup, batch: int, k: int) -> float | None:
    """Smallest acceptance rate at which speculation stops losing: a speculative step must yield as many
    tokens as it costs baseline steps. None if even α = 1 loses."""
    base, draft, verify = step_times(setup, batch, k)
    needed = (draft + verify) / base
    return None if needed > k + 1 else alpha_for(needed, k)


def best_k(setup: SpecSetup, batch: int, alpha: float) -> tuple[int, float]:
    return max(((k, speedup(setup, batch, alpha, k)) for k in range(1, MAX_K + 1)), key=lambda kv: kv[1])


class SpeedupRow(BaseModel):
    concurrency: int
    baseline_tpot_ms: float
    speculative_tpot_ms: float
    speedup: float
    break_even_alpha: float | None
    fits_kv_cache: bool
    speedup_by_alpha: dict[float, float] = {}   # the same row over a range of acceptance


class BestK(BaseModel):
    alpha: float
    concurrency: int
    best_k: int
    speedup: float


class SpeedupPrediction(BaseModel):
    label: str = "prediction from an analytic roofline model; confirm with specwise run"
    alpha: float
    alpha_source: str = "assumed"
    k: int
    tokens_per_step: float
    context: int
    request_tokens: int
    rows: list[SpeedupRow]
    crossover_concurrency: float | None
    best_k: list[BestK]
    assumptions: dict[str, float]


def crossover(points: Sequence[tuple[float, float]]) -> float | None:
    """The load where a speedup curve, given as (load, speedup) points, first crosses 1: linear in the
    speedup between the two points around it, on log(load). Predicted (here) and measured (the verdict)."""
    pts = sorted(points)
    for (l0, s0), (l1, s1) in zip(pts, pts[1:]):
        if (s0 - 1) * (s1 - 1) < 0 and l0 > 0 and l1 > 0:
            f = (s0 - 1) / (s0 - s1)
            return math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0)))
    return None


def predict(setup: SpecSetup, alpha: float, k: int, kv_tokens: int, request_tokens: int,
            grid: tuple[int, ...] = CONCURRENCY_GRID) -> SpeedupPrediction:
    """Speedup by concurrency; a row fits when `concurrency × request_tokens` fit in `kv_tokens`."""
    rows = []
    e = tokens_per_step(alpha, k)
    for batch in grid:
        base, draft, verify = step_times(setup, batch, k)
        rows.append(SpeedupRow(
            concurrency=batch, baseline_tpot_ms=base * 1e3, speculative_tpot_ms=(draft + verify) / e * 1e3,
            speedup=e * base / (draft + verify), break_even_alpha=break_even_alpha(setup, batch, k),
            fits_kv_cache=batch * request_tokens <= kv_tokens,
            speedup_by_alpha={a: tokens_per_step(a, k) * base / (draft + verify) for a in ALPHA_GRID},
        ))
    best = []
    for a in ALPHA_GRID:
        for batch in (1, grid[len(grid) // 2]):
            kk, s = best_k(setup, batch, a)
            best.append(BestK(alpha=a, concurrency=batch, best_k=kk, speedup=s))
    eff = setup.eff
    return SpeedupPrediction(
        alpha=alpha, k=k, tokens_per_step=e, context=setup.context, request_tokens=request_tokens, rows=rows,
        crossover_concurrency=crossover([(r.concurrency, r.speedup) for r in rows]),
        best_k=best, assumptions={"bandwidth_efficiency": eff.bandwidth, "compute_efficiency": eff.compute,
                                  "fixed_ms_per_forward": eff.fixed_ms, "allreduce_us": eff.allreduce_us},
    )
