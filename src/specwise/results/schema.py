"""A bench run's results on disk — the schema: one directory, written as the run goes, readable however it
ended.

    RUN_DIR/manifest.json     config, versions, hardware, seed; `complete` turns true at the very end
    RUN_DIR/requests.jsonl    one RequestRecord per line, appended and flushed as each request ends
    RUN_DIR/metrics.jsonl     one MetricSample per scrape of the server's /metrics
    RUN_DIR/summary.json      written at the end; `specwise summarize RUN_DIR` recomputes it

A crash, a killed server or Ctrl-C leaves every finished request on disk and the
manifest marked incomplete; a torn last line (the process died mid-write) is skipped.
Every file carries `schema_version`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
MANIFEST, REQUESTS, METRICS, SUMMARY = "manifest.json", "requests.jsonl", "metrics.jsonl", "summary.json"

AcceptanceSource = Literal["server", "chunks", "none"]
# Where a request's token count comes from: every chunk counted from its logprobs (exact, per chunk too);
# the server's usage (a sane total, but the tokens per chunk are unknown); or one token per chunk
# assumed (an estimate, a lower bound: a speculative step's chunk carries several).
TokenSource = Literal["logprobs", "usage", "chunks"]


def chunk_steps(chunk_tokens: list[int], k: int) -> tuple[int, int, int]:
    """(speculative steps, accepted draft tokens, merged chunks) read off a stream's tokens per chunk.

    The first chunk is the prefill's token; each later chunk is one verify step that
    emitted 1 + accepted tokens. A chunk of more than k + 1 tokens cannot be one step
    (the client read two steps at once): it is counted as merged.
    """
    steps = chunk_tokens[1:]
    merged = sum(1 for n in steps if n > k + 1)
    return len(steps), sum(steps) - len(steps), merged


class Manifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    kind: str = "specwise.bench"
    specwise_version: str
    started_at: str
    finished_at: str | None = None
    complete: bool = False
    stop_reason: str | None = None
    url: str
    api: str
    model: str
    server_version: str | None = None
    seed: int
    config: dict[str, Any]
    hardware: dict[str, Any]
    senders: list[dict[str, Any]] = Field(default_factory=list, description="each sender's view of itself at the "
                                          "end: where it ran, its event-loop stalls, its CPU share, its clock offset")


class RequestRecord(BaseModel):
    """One request. Times are seconds on the run's monotonic clock (0 = the run's start)."""

    schema_version: int = SCHEMA_VERSION
    index: int
    warmup: bool = False
    prompt_id: str
    temperature: float
    scheduled_s: float
    sent_s: float
    end_s: float
    chunk_s: list[float] = Field(default_factory=list, description="arrival of each content chunk")
    chunk_tokens: list[int] = Field(default_factory=list, description="tokens carried by each content chunk")
    token_digests: list[int] = Field(default_factory=list, description="crc32 of each output token's text, in order: "
                                     "outputs compared without storing them")
    output_tokens: int | None = Field(None, description="the trustworthy count: see token_source")
    token_source: TokenSource = "logprobs"
    token_count_disagreement: str | None = Field(None, description="how logprobs, usage, chunks and max_tokens "
                                                 "disagreed, when they did")
    anomalies: list[str] = Field(default_factory=list, description="values of the server's reply that were "
                                 "ignored as implausible (a few, short)")
    error: str | None = None
    error_detail: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    connect_retries: int = Field(0, description="refused connections retried before the request went out")
    spec: dict[str, Any] | None = Field(None, description="the server's per-request speculative-decoding metrics")
    acceptance: float | None = None
    acceptance_source: AcceptanceSource = "none"
    merged_chunks: int = Field(0, description="chunks carrying more tokens than one speculative step can emit")
    max_tokens: int | None = Field(None, description="this request's own max_tokens (a replayed log's), when it "
                                   "is not the run's")
    sender: int = Field(0, description="which of the run's senders (worker process, Ray actor) sent it")
    client_bound: list[str] = Field(default_factory=list, description="why the load generator may have been the "
                                    "bottleneck for this request (send_lag, in_flight_cap, cpu_saturated, "
                                    "loop_stalled): its figures are left out of the server's")
    client_stall_ms: float | None = Field(None, description="the sender's longest event-loop stall while this "
                                          "request was in flight (its chunks' times may be late by as much)")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tokens(self) -> int:
        return self.output_tokens if self.output_tokens is not None else sum(self.chunk_tokens)

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_s[0] - self.sent_s if self.ok and self.chunk_s else None

    @property
    def e2e_s(self) -> float | None:
        return self.end_s - self.sent_s if self.ok else None

    @property
    def tpot_s(self) -> float | None:
        """(last chunk − first chunk) / (output tokens − 1): a multi-token chunk counts for all its tokens.
        None when the count is only estimated from chunks (a per-step time is not a per-token one), or when every
        chunk came in one read (no time between them was seen)."""
        if not self.ok or self.token_source == "chunks" or len(self.chunk_s) < 2 or self.tokens < 2:
            return None
        if self.chunk_s[-1] <= self.chunk_s[0]:
            return None   # the whole stream came in one read: no time between its tokens was seen

        return (self.chunk_s[-1] - self.chunk_s[0]) / (self.tokens - 1)

    @property
    def itl_s(self) -> list[float]:
        """Gaps between consecutive chunks, each spread over the tokens its chunk carried (known from logprobs
        only)."""
        if not self.ok or self.token_source != "logprobs":
            return []
        return [(b - a) / n for a, b, n in zip(self.chunk_s, self.chunk_s[1:], self.chunk_tokens[1:]) for _ in range(n)]

    @property
    def send_lag_s(self) -> float:
        return self.sent_s - self.scheduled_s


class MetricSample(BaseModel):
    schema_version: int = SCHEMA_VERSION
    t_s: float
    phase: Literal["before", "during", "after"]
    values: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class Run(BaseModel):
    directory: Path
    manifest: Manifest
    requests: list[RequestRecord]
    samples: list[MetricSample]
