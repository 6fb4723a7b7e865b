"""Per-request acceptance: pooled, and as a distribution (P10/P50/P90, histograms) per temperature bucket —
the aggregate hides the tail (SPEC §1.6)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

from specwise.analysis.server import Scrapes, ServerWindow, server_window
from specwise.analysis.stats import percentile
from specwise.results import RequestRecord, chunk_steps


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


def drafted_accepted(record: RequestRecord, k: int | None) -> tuple[float, float] | None:
    """(draft tokens, accepted tokens) behind a request's acceptance figure."""
    if record.acceptance_source == "server" and record.spec:
        return float(record.spec["num_draft_tokens"]), float(record.spec["num_accepted_draft_tokens"])
    if record.acceptance_source == "chunks" and k:
        steps, accepted, _ = chunk_steps(record.chunk_tokens, k)
        return float(k * steps), float(accepted)
    return None


def by_temperature(records: Sequence[RequestRecord]) -> dict[float, list[RequestRecord]]:
    groups: dict[float, list[RequestRecord]] = defaultdict(list)
    for record in records:
        groups[record.temperature].append(record)
    return dict(sorted(groups.items()))


def acceptance(records: Sequence[RequestRecord], k: int | None, scrapes: Scrapes = ()) -> Acceptance:
    """Per-request acceptance by temperature bucket, pooled over the records; the server's window beside it."""
    buckets, total = [], [0.0, 0.0]
    for temp, group in by_temperature(records).items():
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
    return Acceptance(server=server_window([scrapes]), per_request_pooled=total[1] / total[0] if total[0] else None,
                      buckets=buckets, merged_chunk_requests=sum(1 for r in records if r.merged_chunks))


def histogram(records: Sequence[RequestRecord], bins: int = 10) -> dict[float, list[int]]:
    """Counts of per-request acceptance in `bins` equal bins over [0, 1], by temperature."""
    out = {}
    for temp, group in by_temperature(records).items():
        values = [r.acceptance for r in group if r.acceptance is not None]
        if values:
            out[temp] = np.histogram(np.clip(values, 0, 1), bins=bins, range=(0, 1))[0].tolist()
    return out
