"""A/B analysis of an experiment: pure functions over stored bench runs, baseline vs each candidate.

Per cell (candidate × workload × load), the repetitions' measured requests are pooled
and compared with the baseline's: speedups of P50/P99 TPOT, P50 E2E and output
throughput (baseline / candidate, > 1 = faster) with bootstrap CIs (both arms resampled
independently), the TTFT change, and the server's view (acceptance over the measured
windows, KV-cache usage, running requests, preemptions). Per candidate × workload:
the crossover load, acceptance by temperature bucket (per request, P10/P50/P90) and by
draft position, and the evidence the verdict is decided on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field

from specwise.metrics import SpecCounters
from specwise.results import RequestRecord, Run
from specwise.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE, Estimate, bootstrap_percentiles, percentile
from specwise.summary import Bucket, ServerWindow, acceptance, server_window, span_s

KV_KEYS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


@dataclass(frozen=True)
class CellRuns:
    server: str
    workload: str
    load: float
    runs: tuple[Run, ...]

    @property
    def records(self) -> list[RequestRecord]:
        return [r for run in self.runs for r in run.requests if not r.warmup]

    @property
    def ok(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]


class Point(BaseModel):
    """One arm at one load: latencies in ms (P50/P99 with CIs), throughput, the server's window."""

    requests: int
    ok: int
    tpot_p50: Estimate | None = None
    tpot_p99: Estimate | None = None
    ttft_p50: Estimate | None = None
    ttft_p99: Estimate | None = None
    e2e_p50: Estimate | None = None
    e2e_p99: Estimate | None = None
    output_tok_s: float = 0.0
    server: ServerWindow | None = None
    kv_usage: list[tuple[float, float]] = Field(default_factory=list, description="(s since the cell's start, 0–1)")


class LoadComparison(BaseModel):
    load: float
    baseline: Point
    candidate: Point
    tpot_p50_speedup: Estimate | None = None
    tpot_p99_speedup: Estimate | None = None
    e2e_p50_speedup: Estimate | None = None
    throughput_ratio: float | None = None
    ttft_p50_change: Estimate | None = Field(None, description="candidate / baseline P50 TTFT")


def _ms(values: Sequence[float | None]) -> list[float]:
    return [1e3 * v for v in values if v is not None]


def _boot(values: list[float], q: float, rng: np.random.Generator) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    return np.percentile(data[rng.integers(0, data.size, size=(BOOTSTRAP_RESAMPLES, data.size))], q, axis=1)


def ratio(numerator: list[float], denominator: list[float], q: float, seed: int = 0) -> Estimate | None:
    """percentile_q(numerator) / percentile_q(denominator), CI from resampling both independently."""
    if not numerator or not denominator:
        return None
    value = percentile(numerator, q) / percentile(denominator, q)
    if len(numerator) < 5 or len(denominator) < 5:
        return Estimate(value=value)
    rng = np.random.default_rng(seed)
    dist = _boot(numerator, q, rng) / _boot(denominator, q, rng)
    tail = 100 * (1 - CONFIDENCE) / 2
    return Estimate(value=value, low=float(np.percentile(dist, tail)), high=float(np.percentile(dist, 100 - tail)))


def _estimate(values: list[float], q: float, seed: int) -> Estimate | None:
    return bootstrap_percentiles(values, [q], seed=seed).get(q)


def _throughput(runs: Sequence[Run]) -> float:
    rates = []
    for run in runs:
        measured = [r for r in run.requests if not r.warmup]
        span = span_s(measured)
        if span > 0:
            rates.append(sum(r.tokens for r in measured if r.ok) / span)
    return float(np.mean(rates)) if rates else 0.0


def _window(runs: Sequence[Run]) -> ServerWindow | None:
    """The server's counters over every repetition's measured window, pooled."""
    windows = [w for w in (server_window([s.values for s in run.samples if s.error is None]) for run in runs) if w]
    if not windows:
        return None
    positions = sorted({p for w in windows for p in w.per_position})
    pooled = SpecCounters(sum(w.drafts for w in windows), sum(w.draft_tokens for w in windows),
                          sum(w.accepted_tokens for w in windows),
                          {p: sum(w.per_position.get(p, 0.0) * w.drafts for w in windows) for p in positions})
    kv_max = [w.kv_cache_usage_max for w in windows if w.kv_cache_usage_max is not None]
    running = [w.running_max for w in windows if w.running_max is not None]
    preempt = [w.preemptions for w in windows if w.preemptions is not None]
    return ServerWindow(
        scrapes=sum(w.scrapes for w in windows), drafts=pooled.drafts, draft_tokens=pooled.draft_tokens,
        accepted_tokens=pooled.accepted, acceptance_rate=pooled.acceptance_rate,
        mean_acceptance_length=pooled.mean_acceptance_length,
        per_position={p: n / pooled.drafts for p, n in pooled.accepted_per_pos.items()} if pooled.drafts else {},
        kv_cache_usage_max=max(kv_max) if kv_max else None, running_max=max(running) if running else None,
        preemptions=sum(preempt) if preempt else None)


def _kv_series(runs: Sequence[Run]) -> list[tuple[float, float]]:
    series = []
    for run in runs[:1]:  # one repetition's timeline is enough to show the squeeze
        samples = [s for s in run.samples if s.error is None]
        if not samples:
            continue
        t0 = samples[0].t_s
        for s in samples:
            value = next((s.values[k] for k in KV_KEYS if k in s.values), None)
            if value is not None:
                series.append((s.t_s - t0, value))
    return series


def point(cell: CellRuns, seed: int = 0) -> Point:
    ok = cell.ok
    tpot, ttft, e2e = _ms([r.tpot_s for r in ok]), _ms([r.ttft_s for r in ok]), _ms([r.e2e_s for r in ok])
    return Point(requests=len(cell.records), ok=len(ok),
                 tpot_p50=_estimate(tpot, 50, seed), tpot_p99=_estimate(tpot, 99, seed),
                 ttft_p50=_estimate(ttft, 50, seed), ttft_p99=_estimate(ttft, 99, seed),
                 e2e_p50=_estimate(e2e, 50, seed), e2e_p99=_estimate(e2e, 99, seed),
                 output_tok_s=_throughput(cell.runs), server=_window(cell.runs), kv_usage=_kv_series(cell.runs))


def compare(baseline: CellRuns, candidate: CellRuns, seed: int = 0) -> LoadComparison:
    b, c = baseline.ok, candidate.ok
    b_tpot, c_tpot = _ms([r.tpot_s for r in b]), _ms([r.tpot_s for r in c])
    b_pt, c_pt = point(baseline, seed), point(candidate, seed)
    return LoadComparison(
        load=candidate.load, baseline=b_pt, candidate=c_pt,
        tpot_p50_speedup=ratio(b_tpot, c_tpot, 50, seed), tpot_p99_speedup=ratio(b_tpot, c_tpot, 99, seed),
        e2e_p50_speedup=ratio(_ms([r.e2e_s for r in b]), _ms([r.e2e_s for r in c]), 50, seed),
        throughput_ratio=c_pt.output_tok_s / b_pt.output_tok_s if b_pt.output_tok_s else None,
        ttft_p50_change=ratio(_ms([r.ttft_s for r in c]), _ms([r.ttft_s for r in b]), 50, seed))


def buckets(cells: Sequence[CellRuns], k: int | None) -> list[Bucket]:
    """Per-request acceptance by temperature bucket, over all of a candidate's loads for one workload."""
    return acceptance([r for cell in cells for r in cell.records], [], k).buckets


def histogram(cells: Sequence[CellRuns], bins: int = 10) -> dict[float, list[int]]:
    """Counts of per-request acceptance in `bins` equal bins over [0, 1], by temperature."""
    by_temp: dict[float, list[float]] = {}
    for cell in cells:
        for r in cell.records:
            if r.acceptance is not None:
                by_temp.setdefault(r.temperature, []).append(r.acceptance)
    return {t: np.histogram(np.clip(v, 0, 1), bins=bins, range=(0, 1))[0].tolist() for t, v in sorted(by_temp.items())}


def pooled_acceptance(cells: Sequence[CellRuns]) -> ServerWindow | None:
    return _window([run for cell in cells for run in cell.runs])
