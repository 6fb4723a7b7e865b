"""A/B comparison: baseline vs a candidate at one load, pooled over the repetitions (pure).

Speedups are baseline / candidate (> 1: the candidate is faster) of P50/P99 TPOT and P50
E2E, with bootstrap CIs that resample both arms independently; the output throughput
ratio; the TTFT change (candidate / baseline); the server's view of each arm.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from specwise.analysis.acceptance import by_temperature
from specwise.analysis.server import ServerWindow, server_window
from specwise.analysis.stats import (Estimate, bootstrap_percentiles, clustered_ratio, ratio, spread_between,
                                     widened)
from specwise.analysis.summary import measured, meets, scrapes, server_timed, span_s
from specwise.metrics import KV_USAGE
from specwise.results import RequestRecord, Run

LatencyMetric = Literal["tpot", "ttft", "e2e"]
Quantile = Literal["p50", "p99"]


@dataclass(frozen=True)
class CellRuns:
    """One arm at one load: a server's repetitions of a workload at a load level."""

    server: str
    workload: str
    load: float
    runs: tuple[Run, ...]

    @property
    def records(self) -> list[RequestRecord]:
        return [r for run in self.runs for r in measured(run)]

    @property
    def ok(self) -> list[RequestRecord]:
        return [r for r in self.records if r.ok]

    @property
    def timed(self) -> list[RequestRecord]:
        """The successful requests whose latencies are the server's (see `summary.server_timed`)."""
        return server_timed(self.records)


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
    errors: dict[str, int] = Field(default_factory=dict, description="failed requests by kind")
    short: int = Field(0, description="successful requests that returned fewer tokens than asked")
    client_bound: int = Field(0, description="measured requests the load generator held back or timed late: left "
                              "out of the latencies")
    goodput: float | None = Field(None, description="share of the measured requests that met every SLO of their run "
                                  "(None: no SLO given)")
    complete: bool = True
    decoding_batch: float | None = Field(None, description="sequences decoding at once, on average over the measured "
                                         "window (their decode time / the window, per repetition, averaged): the "
                                         "batch a closed loop of N really holds, below N as requests start and end")
    server: ServerWindow | None = None
    kv_usage: list[tuple[float, float]] = Field(default_factory=list, description="(s since the cell's start, 0–1)")

    def latency(self, metric: LatencyMetric, q: Quantile) -> Estimate | None:
        return {("tpot", "p50"): self.tpot_p50, ("tpot", "p99"): self.tpot_p99, ("ttft", "p50"): self.ttft_p50,
                ("ttft", "p99"): self.ttft_p99, ("e2e", "p50"): self.e2e_p50, ("e2e", "p99"): self.e2e_p99}[(metric, q)]

    def p99_ms(self) -> dict[LatencyMetric, float]:
        """The measured P99s, by metric."""
        out: dict[LatencyMetric, float] = {}
        for metric in ("tpot", "ttft", "e2e"):
            est = self.latency(metric, "p99")
            if est is not None:
                out[metric] = est.value
        return out


class BucketComparison(BaseModel):
    """One temperature at one load: A and B sent the same prompts at it."""

    temperature: float
    requests: int                       # per arm (the smaller)
    tpot_p50_speedup: Estimate | None = None
    tpot_p99_speedup: Estimate | None = None


class LoadComparison(BaseModel):
    load: float
    baseline: Point
    candidate: Point
    tpot_p50_speedup: Estimate | None = None
    tpot_p99_speedup: Estimate | None = None
    e2e_p50_speedup: Estimate | None = None
    throughput_ratio: float | None = None
    ttft_p50_change: Estimate | None = Field(None, description="candidate / baseline P50 TTFT")
    buckets: list[BucketComparison] = Field(default_factory=list)
    run_to_run: float | None = Field(None, description="the repetitions' spread of P50 TPOT, both arms combined "
                                     "(√(baseline² + candidate²), relative), by which the speedup intervals are "
                                     "widened; None: one repetition")


def latencies_ms(records: Sequence[RequestRecord], metric: LatencyMetric) -> list[float]:
    values = (r.tpot_s if metric == "tpot" else r.ttft_s if metric == "ttft" else r.e2e_s for r in records)
    return [1e3 * v for v in values if v is not None]


def _throughput(runs: Sequence[Run]) -> float:
    """Output tokens/s of the successful requests, each repetition over its own span, averaged."""
    rates = []
    for run in runs:
        records = measured(run)
        span = span_s(records)
        if span > 0:
            rates.append(sum(r.tokens for r in records if r.ok) / span)
    return float(np.mean(rates)) if rates else 0.0


def _kv_series(runs: Sequence[Run]) -> list[tuple[float, float]]:
    series = []
    for run in runs[:1]:  # one repetition's timeline is enough to show the squeeze
        samples = [s for s in run.samples if s.error is None]
        if not samples:
            continue
        t0 = samples[0].t_s
        for s in samples:
            value = next((s.values[k] for k in KV_USAGE if k in s.values), None)
            if value is not None:
                series.append((s.t_s - t0, value))
    return series


def server_view(cells: Sequence[CellRuns]) -> ServerWindow | None:
    """The server's counters over every repetition's measured window of these cells, pooled."""
    return server_window([scrapes(run) for cell in cells for run in cell.runs])


def short_outputs(runs: Sequence[Run]) -> int:
    """Successful requests that returned fewer tokens than their run asked for (judged only where the count is
    trustworthy: a chunk count without logprobs undercounts every chunk that carried several tokens)."""
    count = 0
    for run in runs:
        asked = run.manifest.config.get("max_tokens")
        count += sum(1 for r in measured(run) if r.ok and (r.max_tokens or asked) and r.token_source != "chunks"
                     and r.tokens < (r.max_tokens or asked))
    return count


def goodput(runs: Sequence[Run]) -> float | None:
    """The share of measured requests that met every SLO their run was given (failed ones do not)."""
    judged = [meets(r, run.manifest.config["slo_ms"]) for run in runs if run.manifest.config.get("slo_ms")
              for r in measured(run)]
    return sum(judged) / len(judged) if judged else None


def decoding_batch(runs: Sequence[Run]) -> float | None:
    values = []
    for run in runs:
        records = [r for r in measured(run) if r.ttft_s is not None]   # ttft_s: ok and streamed
        window = span_s(records)
        if window > 0:
            values.append(sum(r.end_s - r.chunk_s[0] for r in records) / window)
    return sum(values) / len(values) if values else None


def point(cell: CellRuns, seed: int = 0) -> Point:
    ok = cell.ok
    est: dict[tuple[str, str], Estimate | None] = {}
    for metric in ("tpot", "ttft", "e2e"):
        found = bootstrap_percentiles(latencies_ms(cell.timed, metric), [50, 99], seed=seed)
        est[(metric, "p50")], est[(metric, "p99")] = found.get(50), found.get(99)
    return Point(requests=len(cell.records), ok=len(ok),
                 **{f"{metric}_{q}": value for (metric, q), value in est.items()},
                 output_tok_s=_throughput(cell.runs), errors=dict(Counter(r.error for r in cell.records if r.error)),
                 short=short_outputs(cell.runs), client_bound=sum(1 for r in cell.records if r.client_bound),
                 complete=all(run.manifest.complete for run in cell.runs),
                 goodput=goodput(cell.runs), decoding_batch=decoding_batch(cell.runs),
                 server=server_view([cell]), kv_usage=_kv_series(cell.runs))


def repetitions(cell: CellRuns, metric: LatencyMetric) -> list[list[float]]:
    """A latency of the successful requests, one list per repetition (the clusters of the bootstrap)."""
    return [latencies_ms(server_timed(measured(run)), metric) for run in cell.runs]


def run_to_run(baseline: list[list[float]], candidate: list[list[float]]) -> float | None:
    """How far repetitions stray from each other, both arms combined; None with one repetition."""
    spreads = [s for s in (spread_between(baseline), spread_between(candidate)) if s is not None]
    return math.sqrt(sum(s * s for s in spreads)) if spreads else None


def compare(baseline: CellRuns, candidate: CellRuns, seed: int = 0) -> LoadComparison:
    """Speedups with intervals that resample repetitions as well as requests (`clustered_ratio`), widened
    by the repetitions' own spread (`widened`)."""
    b, c = baseline.timed, candidate.timed
    b_tpot, c_tpot = repetitions(baseline, "tpot"), repetitions(candidate, "tpot")
    b_pt, c_pt = point(baseline, seed), point(candidate, seed)
    spread = run_to_run(b_tpot, c_tpot)
    return LoadComparison(
        load=candidate.load, baseline=b_pt, candidate=c_pt,
        tpot_p50_speedup=widened(clustered_ratio(b_tpot, c_tpot, 50, seed), spread),
        tpot_p99_speedup=widened(clustered_ratio(b_tpot, c_tpot, 99, seed), spread),
        e2e_p50_speedup=widened(clustered_ratio(repetitions(baseline, "e2e"), repetitions(candidate, "e2e"), 50,
                                                seed), spread),
        run_to_run=spread,
        throughput_ratio=c_pt.output_tok_s / b_pt.output_tok_s if b_pt.output_tok_s else None,
        ttft_p50_change=ratio(latencies_ms(c, "ttft"), latencies_ms(b, "ttft"), 50, seed),
        buckets=bucket_speedups(b, c, seed))


def bucket_speedups(baseline: Sequence[RequestRecord], candidate: Sequence[RequestRecord],
                    seed: int = 0) -> list[BucketComparison]:
    """The P50 and P99 TPOT speedups per temperature: which traffic speculation helps and which it hurts."""
    b_groups, c_groups = by_temperature(baseline), by_temperature(candidate)
    out = []
    for t in sorted(b_groups.keys() & c_groups.keys()):
        b, c = latencies_ms(b_groups[t], "tpot"), latencies_ms(c_groups[t], "tpot")
        out.append(BucketComparison(temperature=t, requests=min(len(b), len(c)), tpot_p50_speedup=ratio(b, c, 50, seed),
                                    tpot_p99_speedup=ratio(b, c, 99, seed)))
    return out
