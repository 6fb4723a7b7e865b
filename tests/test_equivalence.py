"""Output equivalence at T = 0 (analysis.equivalence): first divergence positions by hand, the candidate
against the first baseline output of each prompt, and the baseline's own repeats as the floor."""

from __future__ import annotations

from specwise.analysis import equivalence, first_divergence
from specwise.results import RequestRecord


def rec(prompt: str, digests: list[int], temperature: float = 0.0, error: str | None = None) -> RequestRecord:
    return RequestRecord(index=0, prompt_id=prompt, temperature=temperature, scheduled_s=0, sent_s=0, end_s=1,
                         token_digests=digests, error=error)


def test_first_divergence() -> None:
    assert first_divergence([1, 2, 3], [1, 2, 3]) is None
    assert first_divergence([1, 2, 3], [1, 9, 3]) == 1
    assert first_divergence([1, 2, 3], [1, 2]) == 2          # a shorter output differs where it ends
    assert first_divergence([], []) is None


def test_candidate_against_the_baseline_and_the_floor() -> None:
    baseline = [rec("a", [1, 2, 3, 4]), rec("b", [5, 6, 7, 8]), rec("a", [1, 2, 3, 4]), rec("b", [5, 6, 0, 8]),
                rec("c", [9, 9], temperature=0.7)]            # T > 0 is never compared
    candidate = [rec("a", [1, 2, 3, 4]), rec("b", [5, 6, 7, 8]), rec("b", [5, 0, 7, 8]), rec("a", [1, 2, 3, 0]),
                 rec("c", [9, 9], temperature=0.7), rec("z", [1]), rec("a", [0], error="timeout")]
    q = equivalence(baseline, candidate)
    assert q is not None
    # 4 comparable candidate outputs (z has no baseline, the failed and T > 0 ones are left out):
    # identical, identical, diverging at 1, diverging at 3 → 2 of 4, median first divergence 2.
    assert (q.compared, q.identical, q.median_first_divergence) == (4, 2, 2.0)
    # the baseline's repeats: a again identical, b diverging at 2 → 1 of 2.
    assert (q.floor_compared, q.floor_identical) == (2, 1) and q.floor_share == 0.5 and q.identical_share == 0.5
    assert equivalence(baseline, [rec("z", [1])]) is None
    assert equivalence([rec("a", [])], [rec("a", [])]) is None   # no digests (a server without logprobs)
