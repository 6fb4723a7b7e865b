"""The server's own view of measured windows, from its /metrics scrapes: speculative-decoding counters
(acceptance, by draft position), KV-cache usage, running and waiting requests, preemptions.

One builder for one window (a bench run) and for several pooled (an experiment cell's
repetitions): counters add up their reset-safe increases window by window; gauges are
averaged over every scrape and peak at the highest.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from specwise.metrics import KV_USAGE, V0_GAUGES, counters_of, is_counter, window

Scrapes = Sequence[dict[str, float]]


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


def pooled_values(windows: Sequence[Scrapes]) -> dict[str, float]:
    """Counters: the sum of each window's increase. Gauges: mean and `max:` peak over every scrape."""
    per_window = [window(list(w)) for w in windows]
    counters = {key for values in per_window for key in values if is_counter(key)}
    gauges = window([scrape for w in windows for scrape in w])
    return {**{k: v for k, v in gauges.items() if not is_counter(k)},
            **{key: sum(values.get(key, 0.0) for values in per_window) for key in counters}}


def server_window(windows: Sequence[Scrapes]) -> ServerWindow | None:
    """The server's view over the measured windows (each a list of scrapes; fewer than two say nothing)."""
    used = [w for w in windows if len(w) >= 2]
    if not used:
        return None
    values = pooled_values(used)
    counters = counters_of(values)
    hits, queries = values.get("vllm:prefix_cache_hits_total"), values.get("vllm:prefix_cache_queries_total")
    kv = next((key for key in KV_USAGE if key in values), KV_USAGE[0])
    return ServerWindow(
        scrapes=sum(len(w) for w in used), acceptance_rate=counters.acceptance_rate,
        mean_acceptance_length=counters.mean_acceptance_length,
        per_position=counters.per_position,
        drafts=counters.drafts, draft_tokens=counters.draft_tokens, accepted_tokens=counters.accepted,
        v0_acceptance_gauge=values.get(V0_GAUGES[0]), kv_cache_usage_mean=values.get(kv),
        kv_cache_usage_max=values.get(f"max:{kv}"), running_max=values.get("max:vllm:num_requests_running"),
        waiting_max=values.get("max:vllm:num_requests_waiting"), preemptions=values.get("vllm:num_preemptions_total"),
        prefix_cache_hit_rate=hits / queries if hits is not None and queries else None)
