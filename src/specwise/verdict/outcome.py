"""What the measurement decides (pure): whether the two arms can be compared at all, whether the outputs
stayed the same, and load by load — and temperature bucket by temperature bucket — whether the candidate
wins, loses or is undecided. A rule of thumb never overrules these."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from specwise.analysis import Estimate, generator_bound
from specwise.check import Status
from specwise.thresholds import (COVERAGE_TOLERANCE, ERROR_TOLERANCE, EQUIVALENCE_TOLERANCE, KV_FULL,
                                 NON_INFERIORITY, P99_WORSE, SPEEDUP_NOISE, TTFT_WORSE)
from specwise.verdict.evidence import BucketEvidence, Decision, Evidence, LoadEvidence, Rule


class Outcome(str, Enum):
    WIN = "win"
    PROBABLE = "probable win"     # estimated faster, not proven, not materially slower: extends a proven win
    LOSS = "loss"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class LoadOutcome:
    load: float
    outcome: Outcome
    why: str


def fmt_estimate(s: Estimate, digits: int = 2) -> str:
    ci = (f" [{s.low:.{digits}f}–{s.high:.{digits}f}]" if s.low is not None and s.high is not None
          and s.low != s.high else "")
    return f"{s.value:.{digits}f}×{ci}"


def speed_outcome(s: Estimate | None) -> Outcome:
    """A speedup (baseline / candidate) wins when its CI clears the noise floor (SPEEDUP_NOISE; with
    repetitions the CI itself carries their spread), loses when it lies below 1, and is a probable win when
    the estimate clears the floor and the CI rules out a material loss (NON_INFERIORITY)."""
    if s is None or s.low is None or s.high is None:
        return Outcome.UNDECIDED
    if s.low > 1 + SPEEDUP_NOISE:
        return Outcome.WIN
    if s.high < 1:
        return Outcome.LOSS
    if s.value > 1 + SPEEDUP_NOISE and s.low >= NON_INFERIORITY:
        return Outcome.PROBABLE
    return Outcome.UNDECIDED


def p99_regression(s: Estimate | None) -> bool:
    """A P99 TPOT speedup materially worse (beyond P99_WORSE) and, when it has a CI, significantly so (CI below
    1): a P99 of a few requests is nearly their maximum, and one slow request must not cap a limit."""
    if s is None or s.value >= P99_WORSE:
        return False
    return s.high is not None and s.high < 1


def p99_regresses(e: LoadEvidence | BucketEvidence) -> bool:
    return p99_regression(e.tpot_p99_speedup)


def diverges(e: LoadEvidence) -> bool:
    """SPEC §1.5's symptom of a mixed batch, on the estimates: P50 TPOT improves while P99 TPOT is 5 % worse
    or more. It calls for the homogeneous control; only a significant regression caps the limit."""
    return (e.tpot_p99_speedup is not None and e.tpot_speedup.value > 1
            and e.tpot_p99_speedup.value < P99_WORSE)


def squeezed(e: LoadEvidence) -> bool:
    """The candidate's KV cache is fuller than the baseline's allows: more preemptions, or full where the
    baseline's is not."""
    more_preemptions = (e.preemptions or 0) > (e.baseline_preemptions or 0)
    full = e.kv_usage_max is not None and e.kv_usage_max >= KV_FULL and not (
        e.baseline_kv_usage_max is not None and e.baseline_kv_usage_max >= KV_FULL)
    return more_preemptions or full


def broken_slos(e: LoadEvidence, slo_ms: dict[str, float]) -> list[str]:
    """The P99 SLOs the candidate breaks at this load while the baseline meets them."""
    out = []
    for name, limit in slo_ms.items():
        c, b = e.candidate.get(name), e.baseline.get(name)
        if c is not None and c > limit and (b is None or b <= limit):
            out.append(f"{name} {c:.0f} ms > {limit:g} ms (baseline {'n/a' if b is None else f'{b:.0f}'})")
    return out


def batch_caps(e: LoadEvidence, ev: Evidence) -> list[str]:
    """What the user would not accept at this load whatever the traffic class: a broken SLO, a squeezed KV
    cache, a slower first token under a TTFT SLO."""
    caps = [f"breaks {b}" for b in broken_slos(e, ev.slo_ms)]
    if e.goodput is not None and e.goodput[0] - e.goodput[1] > ERROR_TOLERANCE:
        caps.append(f"fewer requests within the SLOs ({e.goodput[1]:.0%} vs the baseline's {e.goodput[0]:.0%})")
    if squeezed(e):
        caps.append(f"KV cache squeezed (peak {100 * (e.kv_usage_max or 0):.0f} %, {e.preemptions or 0:g} preemptions "
                    f"vs {e.baseline_preemptions or 0:g})")
    if ev.primary_slo == "ttft" and e.ttft_change is not None and e.ttft_change.value > TTFT_WORSE:
        caps.append(f"P50 TTFT {e.ttft_change.value:.2f}× the baseline's, and TTFT is the primary SLO")
    return caps


def deciding_speedup(e: LoadEvidence, ev: Evidence) -> tuple[str, Estimate | None]:
    """What the user's primary SLO makes the measure of speed: P50 TPOT (also under a TTFT SLO, which caps
    instead), P50 end-to-end latency, or output throughput (one figure per cell: no interval, so it must
    clear the noise floor by its value)."""
    if ev.primary_slo == "e2e" and e.e2e_speedup is not None:
        return "P50 E2E", e.e2e_speedup
    if ev.primary_slo == "throughput" and e.throughput_ratio is not None:
        r = e.throughput_ratio
        return "output throughput", Estimate(value=r, low=r, high=r)
    return "P50 TPOT", e.tpot_speedup


def load_outcome(e: LoadEvidence, ev: Evidence) -> LoadOutcome:
    """The measured outcome at one load: the primary SLO's speedup decides, capped by a P99 TPOT regression
    and the batch's caps."""
    caps = []
    if p99_regresses(e):
        assert e.tpot_p99_speedup is not None
        caps.append(f"P99 TPOT {1 / e.tpot_p99_speedup.value:.2f}× the baseline's")
    caps += batch_caps(e, ev)
    name, deciding = deciding_speedup(e, ev)
    speed = f"{name} {fmt_estimate(deciding)}" if deciding else f"{name} not measured"
    if caps:
        return LoadOutcome(e.load, Outcome.LOSS, f"{speed} but " + "; ".join(caps))
    return LoadOutcome(e.load, speed_outcome(deciding), speed)


def within_noise(e: LoadEvidence, ev: Evidence) -> bool:
    """A loss by its speed alone, and by less than the noise floor: the interval lies below 1 but not below
    1 − SPEEDUP_NOISE (e.g. 0.998× [0.99–0.999] on a very steady server). The verdict counts it a loss; a
    choice between configurations (tune's proof) reads it as a tie."""
    if p99_regresses(e) or batch_caps(e, ev):
        return False
    s = deciding_speedup(e, ev)[1]
    return s is not None and s.high is not None and 1 - SPEEDUP_NOISE <= s.high < 1


def won_prefix(outcomes: Sequence[Outcome]) -> int:
    """How many loads, from the lowest up, the candidate wins in a row: the lowest proven, the loads above it
    proven or probable (NON_INFERIORITY)."""
    if not outcomes or outcomes[0] is not Outcome.WIN:
        return 0
    won = 1
    while won < len(outcomes) and outcomes[won] in (Outcome.WIN, Outcome.PROBABLE):
        won += 1
    return won


# ---------------------------------------------------------------------------------- deciding rules

def rule_validity(ev: Evidence) -> tuple[Rule, Decision | None, bool]:
    """Before any comparison: both arms complete, failing and returning short outputs alike. The candidate
    failing more makes it DISABLE; the baseline failing more (or incomplete cells) makes it INCONCLUSIVE.
    The flag: every problem is of timing alone (a generator-bound arm), which leaves the outputs judgeable."""
    name = "valid comparison"
    problems: list[tuple[Decision, str]] = []
    timing = 0
    for e in ev.loads:
        b, c = e.baseline_arm, e.candidate_arm
        if b is None or c is None:
            continue
        at = f"at {ev.load_unit} {e.load:g}"
        if not (b.complete and c.complete):
            problems.append((Decision.INCONCLUSIVE, f"{at} a cell did not finish"))
        for arm_name, arm in (("baseline", b), ("candidate", c)):
            if generator_bound(arm.client_bound, arm.requests):
                # Its figures are the client's limit: nothing about the server can be read off them.
                problems.append((Decision.INCONCLUSIVE, f"{at} the load generator was the bottleneck for the "
                                 f"{arm_name} ({arm.client_bound} of {arm.requests} requests sent late or timed by a "
                                 "saturated client): rerun with more senders (workers: N)"))
                timing += 1
        names = ("baseline", "candidate")
        for what, rates, counts in (("failed", (b.error_rate, c.error_rate), (b.errors, c.errors)),
                                    ("returned fewer tokens than asked in", (b.short_rate, c.short_rate),
                                     (b.short, c.short))):
            if abs(rates[1] - rates[0]) > ERROR_TOLERANCE:
                worse = int(rates[1] > rates[0])   # 1: the candidate is the one at fault
                problems.append((Decision.DISABLE if worse else Decision.INCONCLUSIVE,
                                 f"{at} the {names[worse]} {what} {counts[worse]} of {(b, c)[worse].requests} "
                                 f"requests ({names[1 - worse]} {counts[1 - worse]})"))
    if not any(e.baseline_arm and e.candidate_arm for e in ev.loads):
        return Rule(name=name, status=Status.UNKNOWN, reason="no error or length counts per arm"), None, False
    if not problems:
        return Rule(name=name, status=Status.PASS, reason="both arms complete, failing and returning full-length "
                    "outputs alike at every load"), None, False
    decision = Decision.DISABLE if any(d is Decision.DISABLE for d, _ in problems) else Decision.INCONCLUSIVE
    return (Rule(name=name, status=Status.FAIL, reason="; ".join(text for _, text in problems)), decision,
            timing == len(problems))


def rule_outputs(ev: Evidence) -> Rule:
    """The output-equivalence gate: at T = 0 the candidate must reproduce the baseline's outputs as well as
    the baseline reproduces itself."""
    name = "outputs unchanged"
    q = ev.equivalence
    if not ev.exact_by_design:
        return Rule(name=name, status=Status.FAIL, reason="this configuration gives up exact outputs by design "
                    "(e.g. typical-acceptance sampling): speculation may change what users get")
    if q is None or q.identical_share is None:
        return Rule(name=name, status=Status.UNKNOWN, reason="no T = 0 outputs to compare (needs T = 0 traffic and "
                    "token logprobs in the stream)")
    floor = q.floor_share if q.floor_share is not None else 1.0
    margin = EQUIVALENCE_TOLERANCE + 2 * math.sqrt(max(floor * (1 - floor), 0.01) / q.compared)
    where = (f"; diverging outputs first differ at token {q.median_first_divergence:g} (median)"
             if q.median_first_divergence is not None else "")
    floor_text = (f"the baseline reproduces itself in {q.floor_share:.0%} of {q.floor_compared}"
                  if q.floor_share is not None else "no baseline repeat to measure the engine's own floor")
    values = {"identical_share": q.identical_share, "floor": q.floor_share, "compared": q.compared}
    if q.identical_share < floor - margin:
        return Rule(name=name, status=Status.FAIL, values=values,
                    reason=f"speculation changed the outputs: {q.identical_share:.0%} of {q.compared} T = 0 outputs "
                           f"identical to the baseline's, while {floor_text}{where}")
    return Rule(name=name, status=Status.PASS, values=values,
                reason=f"{q.identical_share:.0%} of {q.compared} T = 0 outputs identical to the baseline's "
                       f"({floor_text}){where}")


def untested(ev: Evidence) -> dict[float, float]:
    """Production temperatures (with their share) that no tested temperature covers."""
    tested = [t for t, w in ev.temperatures if w > 0]
    return {t: w for t, w in ev.production_temperatures
            if w > 0 and not any(abs(t - x) <= COVERAGE_TOLERANCE for x in tested)}


def rule_coverage(ev: Evidence) -> Rule:
    name = "temperature coverage"
    if not ev.production_temperatures:
        return Rule(name=name, status=Status.UNKNOWN, blocking=False,
                    reason="no production temperature mix declared: the verdict holds for the tested mix only")
    missing = untested(ev)
    total = sum(w for _, w in ev.production_temperatures) or 1.0
    if missing:
        share = sum(missing.values()) / total
        shown = ", ".join(f"T={t:g}" for t in sorted(missing))
        return Rule(name=name, status=Status.FAIL, values={"untested_share": share},
                    reason=f"production also runs {shown} ({share:.0%} of its traffic), which was not tested")
    return Rule(name=name, status=Status.PASS, reason="every production temperature was tested")
