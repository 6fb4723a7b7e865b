"""A bench run's summary: a pure function of what is on disk (results.Run), so a partial run has one too.

Latencies are in milliseconds over the measured (non-warm-up), successful requests.
Acceptance is reported twice, from independent sources: the server's counters
over the run's window (increase between the first and last scrape, surviving
restarts), and per request (exact from the server's per-request metrics, or
estimated from tokens per chunk), pooled and by temperature bucket.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pydantic import BaseModel, Field

from specwise.metrics import V0_GAUGES, counters_of, window
from specwise.results import SCHEMA_VERSION, RequestRecord, Run
from specwise.stats import Estimate, bootstrap_percentiles, percentile

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


class ServerWindow(BaseModel):
    scrapes: int
    acceptance_rate: float | None = None
    mean_acceptance_length: float | None = None
    per_position: dict[int, float] = Field(default_factory=dict)
    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0
    v0_acceptance_gauge: float | None = None
    kv_cache_usage_mean: float | None = None
    kv_cache_usage_max: float | None = None
    running_max: float | None = None
    waiting_max: float | None = None
    preemptions: float | None = None
    prefix_cache_hit_rate: float | None = None


class Bucket(BaseModel):
    temperature: float
    requests: int
    with_acceptance: int
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    pooled: float | None = Field(None, description="accepted / drafted tokens over the bucket's requests")
    sources: dict[str, int] = Field(default_factory=dict)


class Acceptance(BaseModel):
    server: ServerWindow | None = None
    per_request_pooled: float | None = None
    buckets: list[Bucket] = Field(default_factory=list)
    merged_chunk_requests: int = 0


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


def drafted_accepted(record: RequestRecord, k: int | None) -> tuple[float, float] | None:
    """(draft tokens, accepted tokens) behind a request's acceptance figure."""
    if record.acceptance_source == "server" and record.spec:
        return float(record.spec["num_draft_tokens"]), float(record.spec["num_accepted_draft_tokens"])
    if record.acceptance_source == "chunks" and k:
        steps = record.chunk_tokens[1:]
        return float(k * len(steps)), float(sum(steps) - len(steps))
    return None


def server_window(snapshots: list[dict[str, float]]) -> ServerWindow | None:
    if len(snapshots) < 2:
        return None
    values = window(snapshots)
    counters = counters_of(values)
    hits, queries = values.get("vllm:prefix_cache_hits_total"), values.get("vllm:prefix_cache_queries_total")
    kv = "vllm:kv_cache_usage_perc" if "vllm:kv_cache_usage_perc" in values else "vllm:gpu_cache_usage_perc"
    return ServerWindow(
        scrapes=len(snapshots), acceptance_rate=counters.acceptance_rate,
        mean_acceptance_length=counters.mean_acceptance_length,
        per_position={pos: n / counters.drafts for pos, n in sorted(counters.accepted_per_pos.items())}
        if counters.drafts else {},
        drafts=counters.drafts, draft_tokens=counters.draft_tokens, accepted_tokens=counters.accepted,
        v0_acceptance_gauge=values.get(V0_GAUGES[0]), kv_cache_usage_mean=values.get(kv),
        kv_cache_usage_max=values.get(f"max:{kv}"), running_max=values.get("max:vllm:num_requests_running"),
        waiting_max=values.get("max:vllm:num_requests_waiting"), preemptions=values.get("vllm:num_preemptions_total"),
        prefix_cache_hit_rate=hits / queries if hits is not None and queries else None)


def acceptance(records: list[RequestRecord], snapshots: list[dict[str, float]], k: int | None) -> Acceptance:
    by_temp: dict[float, list[RequestRecord]] = defaultdict(list)
    for record in records:
        by_temp[record.temperature].append(record)
    buckets, total = [], [0.0, 0.0]
    for temp in sorted(by_temp):
        group = by_temp[temp]
        values = [r.acceptance for r in group if r.acceptance is not None]
        parts = [p for p in (drafted_accepted(r, k) for r in group) if p]
        drafted, accepted = sum(d for d, _ in parts), sum(a for _, a in parts)
        total[0] += drafted
        total[1] += accepted
        buckets.append(Bucket(temperature=temp, requests=len(group), with_acceptance=len(values),
                              p10=percentile(values, 10) if values else None,
                              p50=percentile(values, 50) if values else None,
                              p90=percentile(values, 90) if values else None,
                              pooled=accepted / drafted if drafted else None,
                              sources=dict(Counter(r.acceptance_source for r in group))))
    return Acceptance(server=server_window(snapshots), per_request_pooled=total[1] / total[0] if total[0] else None,
                      buckets=buckets, merged_chunk_requests=sum(1 for r in records if r.merged_chunks))


def span_s(measured: list[RequestRecord]) -> float:
    """The measured window: first send → last end (throughputs are counts over it)."""
    return max(r.end_s for r in measured) - min(r.sent_s for r in measured) if measured else 0.0


def summarize(run: Run, slo_ms: dict[str, float] | None = None, seed: int = 0) -> BenchSummary:
    measured = [r for r in run.requests if not r.warmup]
    ok = [r for r in measured if r.ok]
    duration = span_s(measured)
    per_s = 1 / duration if duration > 0 else 0.0
    lags = [1e3 * r.send_lag_s for r in measured]
    k = run.manifest.config.get("k")
    good = [r for r in ok if meets(r, slo_ms)] if slo_ms else []
    return BenchSummary(
        complete=run.manifest.complete, stop_reason=run.manifest.stop_reason, requests=len(measured), ok=len(ok),
        errors=dict(Counter(r.error for r in measured if r.error)), warmup=len(run.requests) - len(measured),
        duration_s=duration, request_throughput_rps=len(ok) * per_s,
        output_throughput_tok_s=sum(r.tokens for r in ok) * per_s,
        goodput=Goodput(slo_ms=slo_ms, requests=len(good), fraction=len(good) / len(measured) if measured else 0.0,
                        rate_rps=len(good) * per_s) if slo_ms else None,
        ttft_ms=latency([r.ttft_s for r in ok if r.ttft_s is not None], seed),
        tpot_ms=latency([r.tpot_s for r in ok if r.tpot_s is not None], seed),
        itl_ms=latency([v for r in ok for v in r.itl_s], seed),
        e2e_ms=latency([r.e2e_s for r in ok if r.e2e_s is not None], seed),
        send_lag_ms={"p50": percentile(lags, 50), "p99": percentile(lags, 99), "max": max(lags)} if lags else {},
        acceptance=acceptance(measured, [s.values for s in run.samples if s.error is None], k))

