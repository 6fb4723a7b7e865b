"""What `specwise watch` shows (pure): per server and `model_name`, acceptance and throughput over sliding
windows, computed from the counters' increases between polls.

A poll that failed (server unreachable) carries no values and is skipped, so an outage
leaves a gap, not a zero; a counter that goes down means the server restarted and its
increase counts from zero again (`metrics.increase`, as Prometheus' `increase()` does).
"Lifetime" is the last successful poll's cumulative counters: the server's own figures
since it started, available from a single poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from specwise.metrics import KV_USAGE, SpecCounters, counters_of, is_counter, window

# (label, seconds; None: since the watch started)
WINDOWS: tuple[tuple[str, float | None], ...] = (("1m", 60.0), ("5m", 300.0), ("start", None))
PREEMPTIONS = "vllm:num_preemptions_total"
GENERATED = "vllm:generation_tokens_total"


@dataclass(frozen=True)
class Poll:
    """One scrape of one server: `models` maps each `model_name` to its series (`metrics.snapshot_by_model`);
    empty with `error` set when the scrape failed."""

    t_s: float
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None


class Figures(BaseModel):
    """Speculative decoding and throughput over one window (or the server's lifetime)."""

    seconds: float | None = Field(None, description="the window's span between its first and last poll")
    acceptance_rate: float | None = None
    acceptance_length: float | None = None
    per_position: dict[int, float] = Field(default_factory=dict)
    drafts: float = 0.0
    drafts_per_s: float | None = None
    output_tok_s: float | None = None
    preemptions: float | None = None


class ModelView(BaseModel):
    url: str
    model: str
    status: str = Field(description="ok, or what went wrong and since when")
    windows: dict[str, Figures | None] = Field(default_factory=dict)
    lifetime: Figures | None = None
    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None
    restarts: int = Field(0, description="counter resets seen (server restarts) since the watch started")


def figures(counters: SpecCounters, values: dict[str, float], seconds: float | None) -> Figures:
    per_s = (lambda n: n / seconds) if seconds else (lambda n: None)
    return Figures(seconds=seconds, acceptance_rate=counters.acceptance_rate,
                   acceptance_length=counters.mean_acceptance_length,
                   per_position=counters.per_position,
                   drafts=counters.drafts, drafts_per_s=per_s(counters.drafts),
                   output_tok_s=per_s(values[GENERATED]) if GENERATED in values else None,
                   preemptions=values.get(PREEMPTIONS))


def window_figures(polls: Sequence[Poll], model: str, now: float, span: float | None) -> Figures | None:
    """The increases over the successful polls inside [now − span, now]; None with fewer than two."""
    used = [p for p in polls if p.error is None and model in p.models and (span is None or p.t_s >= now - span)]
    if len(used) < 2:
        return None
    values = window([p.models[model] for p in used])
    return figures(counters_of(values), values, used[-1].t_s - used[0].t_s)


def restarts(polls: Sequence[Poll], model: str) -> int:
    """Counter resets between consecutive successful polls of a model: the server restarted."""
    series = [p.models[model] for p in polls if p.error is None and model in p.models]
    return sum(1 for before, after in zip(series, series[1:])
               if any(is_counter(k) and k in before and after[k] < before[k] for k in after))


def status(polls: Sequence[Poll]) -> str:
    if not polls:
        return "no poll yet"
    last = polls[-1]
    if last.error is None:
        return "ok"
    ok = [p for p in polls if p.error is None]
    since = f" for {last.t_s - ok[-1].t_s:.0f} s" if ok else ""
    return f"unreachable{since} ({last.error}); retrying"


def views(url: str, polls: Sequence[Poll], now: float) -> list[ModelView]:
    """One view per model the server has reported; an unreachable server that never answered gets one row."""
    models = sorted({m for p in polls for m in p.models})
    state = status(polls)
    if not models:
        return [ModelView(url=url, model="?", status=state)]
    out = []
    for model in models:
        last = next(p.models[model] for p in reversed(polls) if p.error is None and model in p.models)
        kv = next((last[k] for k in KV_USAGE if k in last), None)
        out.append(ModelView(
            url=url, model=model, status=state,
            windows={label: window_figures(polls, model, now, span) for label, span in WINDOWS},
            lifetime=figures(counters_of(last), {k: v for k, v in last.items() if is_counter(k)}, None),
            running=last.get("vllm:num_requests_running"), waiting=last.get("vllm:num_requests_waiting"),
            kv_usage=kv, restarts=restarts(polls, model)))
    return out


def timeline(polls: Sequence[Poll], model: str, span: float = 60.0) -> list[tuple[float, Figures, float | None]]:
    """(t, the figures over the `span` before t, KV usage at t) at each successful poll that closes a window:
    a recorded watch, replayed for a plot."""
    out = []
    for i, p in enumerate(polls):
        if p.error is not None or model not in p.models:
            continue
        f = window_figures(polls[: i + 1], model, p.t_s, span)
        if f is not None:
            out.append((p.t_s, f, next((p.models[model][k] for k in KV_USAGE if k in p.models[model]), None)))
    return out
