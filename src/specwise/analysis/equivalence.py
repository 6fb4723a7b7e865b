"""Output equivalence: speculative decoding must not change outputs. At T = 0 each candidate request's
tokens (their digests, in order) are compared with the baseline's for the same prompt; the baseline
compared with itself across its own cells (other loads, other repetitions) is the engine's own
non-determinism — the floor a candidate is judged against."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel

from specwise.results import RequestRecord


class Equivalence(BaseModel):
    compared: int                       # candidate requests with a baseline output for the same prompt
    identical: int
    median_first_divergence: float | None = None   # token index where diverging outputs first differ
    floor_compared: int = 0             # baseline requests with an earlier baseline output for their prompt
    floor_identical: int = 0

    @property
    def identical_share(self) -> float | None:
        return self.identical / self.compared if self.compared else None

    @property
    def floor_share(self) -> float | None:
        return self.floor_identical / self.floor_compared if self.floor_compared else None


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first token index where two outputs differ (a shorter one differs where it ends); None: identical."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _greedy(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.ok and r.temperature == 0 and r.token_digests]


def equivalence(baseline: Sequence[RequestRecord], candidate: Sequence[RequestRecord]) -> Equivalence | None:
    """Candidate vs the first baseline output of each prompt, and the baseline's later outputs vs the same
    reference. None when there is nothing to compare (no T = 0 traffic, or no token digests)."""
    reference: dict[str, list[int]] = {}
    floor = []
    for r in _greedy(baseline):
        if r.prompt_id in reference:
            floor.append(first_divergence(reference[r.prompt_id], r.token_digests))
        else:
            reference[r.prompt_id] = r.token_digests
    diverged = [first_divergence(reference[r.prompt_id], r.token_digests)
                for r in _greedy(candidate) if r.prompt_id in reference]
    if not diverged:
        return None
    positions = [d for d in diverged if d is not None]
    return Equivalence(compared=len(diverged), identical=len(diverged) - len(positions),
                       median_first_divergence=statistics.median(positions) if positions else None,
                       floor_compared=len(floor), floor_identical=sum(1 for d in floor if d is None))
