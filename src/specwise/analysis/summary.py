"""A bench run's summary: a pure function of what is on disk (results.Run), so a partial run has one too.

Latencies are in milliseconds over the measured (non-warm-up), successful requests that the load generator
did not hold back or time late (`client_bound`); a generator-bound run reports none.
Acceptance is reported twice, from independent sources: the server's counters
over the run's window (increase between the first and last scrape, surviving
restarts), and per request (exact from the server's per-request metrics, or
estimated from tokens per chunk), pooled and by temperature bucket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from specwise.analysis.acceptance import Acceptance, acceptance
from specwise.analysis.stats import Estimate, bootstrap_percentiles, percentile
from specwise.results import SCHEMA_VERSION, RequestRecord, Run
from specwise.thresholds import GENERATOR_BOUND_MIN, GENERATOR_BOUND_SHARE

QUANTILES = (50.0, 95.0, 99.0)


class Latency(BaseModel):
    count: int
    mean: float
    p50: Estimate
    p95: Estimate
    p99: Estimate


class Goodput(BaseModel):
    slo_ms: dict[str, float]
    requests: int
    fraction: float
    rate_rps: float


class Generator(BaseModel):
    """The load generator's view of itself: which measured requests it may have held back or timed late, and
    whether that makes the run generator-bound (its figures the client's, not the server's)."""

    senders: int = 1
    client_bound: int = Field(0, description="measured requests marked client_bound")
    reasons: dict[str, int] = Field(default_factory=dict)
    bound: bool = Field(False, description="more than GENERATOR_BOUND_SHARE of the measured requests (and at least "
                        "GENERATOR_BOUND_MIN) were marked: "
                        "the run's latencies are withheld and its throughput is the generator's limit")
    stall_ms_p99: float | None = Field(None, description="P99 over requests of the sender's longest event-loop stall "
                                       "while each was in flight: how late its chunk times may be")
    busy_share_max: float | None = Field(None, description="the busiest sender's highest busy share (running or waiting for a core) over a window")


class BenchSummary(BaseModel):
    schema_version: int = SCHEMA_VERSION
    complete: bool
    stop_reason: str | None
    requests: int
    ok: int
    errors: dict[str, int]
    warmup: int
    duration_s: float
    request_throughput_rps: float
    output_throughput_tok_s: float
    goodput: Goodput | None = None
    ttft_ms: Latency | None = None
    tpot_ms: Latency | None = None
    itl_ms: Latency | None = None
    e2e_ms: Latency | None = None
    send_lag_ms: dict[str, float] = Field(default_factory=dict)
    estimated_tokens: int = Field(0, description="successful requests whose token count is only the chunk count "
                                  "(no logprobs, no sane usage): left out of TPOT and ITL")
    generator: Generator = Field(default_factory=Generator)
    acceptance: Acceptance


def latency(values_s: list[float], seed: int) -> Latency | None:
    if not values_s:
        return None
    ms = [1e3 * v for v in values_s]
    est = bootstrap_percentiles(ms, QUANTILES, seed=seed)
    return Latency(count=len(ms), mean=sum(ms) / len(ms), p50=est[50.0], p95=est[95.0], p99=est[99.0])


def meets(record: RequestRecord, slo_ms: dict[str, float]) -> bool:
    values = {"ttft": record.ttft_s, "tpot": record.tpot_s, "e2e": record.e2e_s}
    return record.ok and all(values[name] is not None and 1e3 * values[name] <= limit  # type: ignore[operator]
                             for name, limit in slo_ms.items())


def scrapes(run: Run) -> list[dict[str, float]]:
    """The run's successful /metrics scrapes."""
    return [s.values for s in run.samples if s.error is None]


def measured(run: Run) -> list[RequestRecord]:
    """The requests a run's figures are over: all but the warm-up."""
    return [r for r in run.requests if not r.warmup]


def server_timed(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    """The successful requests whose latencies are the server's: not held back or timed late by the client."""
    return [r for r in records if r.ok and not r.client_bound]


def generator_bound(marked: int, total: int) -> bool:
    """`marked` of `total` requests client-bound make their run (or arm) generator-bound."""
    return marked >= GENERATOR_BOUND_MIN and marked > GENERATOR_BOUND_SHARE * total


def generator(run: Run, records: Sequence[RequestRecord]) -> Generator:
    marked = [r for r in records if r.client_bound]
    stalls = [r.client_stall_ms for r in records if r.client_stall_ms is not None]
    shares = [s["busy_share"]["max"] for s in run.manifest.senders
              if isinstance(s.get("busy_share"), dict) and isinstance(s["busy_share"].get("max"), (int, float))]
    return Generator(senders=max(1, len(run.manifest.senders), len({r.sender for r in records})),
                     client_bound=len(marked), reasons=dict(Counter(why for r in marked for why in r.client_bound)),
                     bound=generator_bound(len(marked), len(records)), stall_ms_p99=percentile(stalls, 99) if stalls else None,
                     busy_share_max=max(shares) if shares else None)


def span_s(measured: Sequence[RequestRecord]) -> float:
    """The measured window: first send → last end (throughputs are counts over it)."""
    return max(r.end_s for r in measured) - min(r.sent_s for r in measured) if measured else 0.0


def summarize(run: Run, slo_ms: dict[str, float] | None = None, seed: int = 0) -> BenchSummary:
    records = measured(run)
    ok = [r for r in records if r.ok]
    gen = generator(run, records)
    # A generator-bound run's latencies are the client's: none are reported. Otherwise the few marked requests
    # are left out of them.
    timed = [] if gen.bound else server_timed(records)
    duration = span_s(records)
    per_s = 1 / duration if duration > 0 else 0.0
    lags = [1e3 * r.send_lag_s for r in records]
    k = run.manifest.config.get("k")
    good = [r for r in ok if meets(r, slo_ms)] if slo_ms else []
    return BenchSummary(
        complete=run.manifest.complete, stop_reason=run.manifest.stop_reason, requests=len(records), ok=len(ok),
        errors=dict(Counter(r.error for r in records if r.error)), warmup=len(run.requests) - len(records),
        duration_s=duration, request_throughput_rps=len(ok) * per_s,
        output_throughput_tok_s=sum(r.tokens for r in ok) * per_s,
        goodput=Goodput(slo_ms=slo_ms, requests=len(good), fraction=len(good) / len(records) if records else 0.0,
                        rate_rps=len(good) * per_s) if slo_ms else None,
        ttft_ms=latency([r.ttft_s for r in timed if r.ttft_s is not None], seed),
        tpot_ms=latency([r.tpot_s for r in timed if r.tpot_s is not None], seed),
        itl_ms=latency([v for r in timed for v in r.itl_s], seed),
        e2e_ms=latency([r.e2e_s for r in timed if r.e2e_s is not None], seed),
        send_lag_ms={"p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags)} if lags else {},
        estimated_tokens=sum(1 for r in ok if r.token_source == "chunks"), generator=gen,
        acceptance=acceptance(records, k, scrapes(run)))

