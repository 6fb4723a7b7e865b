"""The rules of the decision framework (SPEC §1), one function each, and the predicates they share: pure.

Every rule is evaluated to PASS / FAIL / UNKNOWN with the numbers behind it. Thresholds
(`specwise.thresholds`): acceptance < 0.5 net negative, 0.5–0.65 break-even (decided on
P99 under load), > 0.65 likely gain; per-request P10 < 0.5 in a temperature bucket means
a material share of traffic is hurt; median temperature > 0.7 leave off, ≤ 0.5 a good
fit; target > 70 % of device memory and draft > 15 % of usable memory squeeze the KV
cache; a TTFT-bound SLO gains nothing (speculation speeds up TPOT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from specwise.check import Status
from specwise.plan.perf import crossover as crossing
from specwise.thresholds import (ACCEPT_GAIN, ACCEPT_OFF, ACCEPTANCE_DROP, DRAFT_SHARE, KV_FULL, P99_WORSE, TAIL_P10,
                                 TARGET_SHARE, TEMP_GOOD, TEMP_OFF)
from specwise.verdict.evidence import Evidence, LoadEvidence, Rule
from specwise.workload import is_homogeneous, median_temperature, spread

# ------------------------------------------------------------------------------------------ predicates

def diverges(e: LoadEvidence) -> bool:
    """P50 TPOT improves while P99 TPOT regresses (SPEC §1.5's symptom of a mixed batch)."""
    return (e.tpot_p99_speedup is not None and e.tpot_speedup.value > 1
            and e.tpot_p99_speedup.value < P99_WORSE)


def divergent_loads(loads: Sequence[LoadEvidence]) -> list[float]:
    return [e.load for e in loads if diverges(e)]


def needs_control(mix: Sequence[tuple[float, float]]) -> bool:
    """Divergence on this mix is diagnosed by a homogeneous control (it is not homogeneous itself)."""
    return not is_homogeneous(mix)


def p99_regresses(e: LoadEvidence) -> bool:
    return e.tpot_p99_speedup is not None and e.tpot_p99_speedup.value < P99_WORSE


def wins(e: LoadEvidence) -> bool | None:
    """True: the candidate is faster (CI above 1); False: slower (CI below 1); None: undecided."""
    s = e.tpot_speedup
    if s.low is None or s.high is None:
        return None
    if s.low > 1:
        return True
    if s.high < 1:
        return False
    return None


def requests_to_decide(e: LoadEvidence) -> int | None:
    """Requests per arm that would shrink the CI to exclude 1 (the half-width falls as 1/√n)."""
    s = e.tpot_speedup
    if s.low is None or s.high is None or not e.requests:
        return None
    half, effect = (s.high - s.low) / 2, abs(s.value - 1)
    if effect < 1e-3:
        return None
    return max(e.requests + 1, math.ceil(e.requests * (half / effect) ** 2 * 1.2))


def crossover(loads: Sequence[LoadEvidence]) -> float | None:
    """The load where the P50 TPOT speedup crosses 1."""
    return crossing([(e.load, e.tpot_speedup.value) for e in loads])


def _fmt(x: float | None, d: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"



def rule_acceptance(ev: Evidence) -> Rule:
    a = ev.acceptance
    if a is None:
        return Rule(name="acceptance", status=Status.UNKNOWN,
                    reason="no acceptance measured (the server exported no speculative-decoding counters)")
    vals: dict[str, float | str | None] = {"acceptance": a}
    if a < ACCEPT_OFF:
        return Rule(name="acceptance", status=Status.FAIL, values=vals,
                    reason=f"acceptance {a:.2f} < {ACCEPT_OFF}: net negative at these temperatures")
    if a > ACCEPT_GAIN:
        return Rule(name="acceptance", status=Status.PASS, values=vals,
                    reason=f"acceptance {a:.2f} > {ACCEPT_GAIN}: likely a real gain")
    # Break-even zone: decided on P99 latency under the measured loads.
    worse = [e for e in ev.loads if p99_regresses(e)]
    if worse:
        e = worse[0]
        return Rule(name="acceptance", status=Status.FAIL, values=vals | {"load": e.load},
                    reason=f"acceptance {a:.2f} in the break-even zone ({ACCEPT_OFF}–{ACCEPT_GAIN}) and P99 TPOT "
                           f"{1 / e.tpot_p99_speedup.value:.2f}× the baseline's at {ev.load_unit} {e.load:g}")
    return Rule(name="acceptance", status=Status.PASS, values=vals,
                reason=f"acceptance {a:.2f} in the break-even zone ({ACCEPT_OFF}–{ACCEPT_GAIN}); P99 TPOT no worse "
                       "than the baseline's at the measured loads")


def rule_tail(ev: Evidence) -> Rule:
    if not ev.bucket_p10:
        return Rule(name="per-request acceptance tail", status=Status.UNKNOWN,
                    reason="no per-request acceptance (needs the server's per-request metrics or k)")
    low = {t: p for t, p in ev.bucket_p10.items() if p < TAIL_P10}
    shown = ", ".join(f"T={t:g}: {p:.2f}" for t, p in sorted(ev.bucket_p10.items()))
    if low:
        share = sum(ev.bucket_share.get(t, 0.0) for t in low)
        return Rule(name="per-request acceptance tail", status=Status.FAIL, values={"hurt_share": share},
                    reason=f"P10 per-request acceptance < {TAIL_P10} in {len(low)} temperature bucket(s) ({shown}); "
                           f"{share:.0%} of requests are in them — the aggregate hides traffic that is hurt")
    return Rule(name="per-request acceptance tail", status=Status.PASS,
                reason=f"P10 per-request acceptance ≥ {TAIL_P10} in every temperature bucket ({shown})")


def rule_temperature(ev: Evidence) -> Rule:
    med = median_temperature(ev.temperatures)
    if med is None:
        return Rule(name="temperature", status=Status.UNKNOWN, reason="no temperature mix given")
    temps = [t for t, w in ev.temperatures if w > 0]
    vals: dict[str, float | str | None] = {"median": med, "spread": spread(ev.temperatures)}
    if med > TEMP_OFF:
        return Rule(name="temperature", status=Status.FAIL, values=vals,
                    reason=f"median temperature {med:g} > {TEMP_OFF}: acceptance falls too far")
    if not is_homogeneous(ev.temperatures):
        return Rule(name="temperature", status=Status.FAIL, values=vals,
                    reason=f"temperatures vary widely ({min(temps):g}–{max(temps):g}): low-acceptance requests "
                           "add tail latency for everyone in the batch")
    if med <= TEMP_GOOD:
        return Rule(name="temperature", status=Status.PASS, values=vals,
                    reason=f"homogeneous temperatures, median {med:g} ≤ {TEMP_GOOD}")
    return Rule(name="temperature", status=Status.UNKNOWN, values=vals,
                reason=f"median temperature {med:g} between {TEMP_GOOD} and {TEMP_OFF}: decided by acceptance")


def rule_divergence(ev: Evidence) -> Rule:
    div = [e for e in ev.loads if diverges(e)]
    if not any(e.tpot_p99_speedup is not None for e in ev.loads):
        return Rule(name="P50–P99 divergence", status=Status.UNKNOWN, reason="no P99 TPOT comparison")
    if not div:
        return Rule(name="P50–P99 divergence", status=Status.PASS,
                    reason="no load where P50 TPOT improves while P99 TPOT regresses")
    e = div[0]
    assert e.tpot_p99_speedup is not None
    base = (f"at {ev.load_unit} {e.load:g} P50 TPOT is {e.tpot_speedup.value:.2f}× faster but P99 TPOT "
            f"{1 / e.tpot_p99_speedup.value:.2f}× slower")
    vals: dict[str, float | str | None] = {"load": e.load, "p50_speedup": e.tpot_speedup.value,
                                           "p99_speedup": e.tpot_p99_speedup.value}
    c = ev.control
    if c is not None and c.homogeneous:
        return Rule(name="P50–P99 divergence", status=Status.FAIL, values=vals | {"diagnosis": "speculative decoding"},
                    reason=f"{base}, on a workload that is already homogeneous in temperature: a "
                           "speculative-decoding problem, not the mix")
    if c is None or c.tpot_p99_speedup is None:
        how = c.prescription if c and c.prescription else "rerun the same load with one low temperature"
        return Rule(name="P50–P99 divergence", status=Status.FAIL, values=vals | {"diagnosis": "unconfirmed"},
                    reason=f"{base}; control not run — {how}")
    if c.tpot_p99_speedup.value >= P99_WORSE:  # the control does not regress: P99 tightened
        return Rule(name="P50–P99 divergence", status=Status.FAIL,
                    values=vals | {"diagnosis": "mixed workload", "control_p99_speedup": c.tpot_p99_speedup.value},
                    reason=f"{base}; the homogeneous low-temperature control tightens P99 "
                           f"({c.tpot_p99_speedup.value:.2f}× the baseline's speed): a mixed-workload problem — "
                           "speculate only for low-temperature traffic (a separate deployment)")
    return Rule(name="P50–P99 divergence", status=Status.FAIL,
                values=vals | {"diagnosis": "speculative decoding", "control_p99_speedup": c.tpot_p99_speedup.value},
                reason=f"{base}; the homogeneous control regresses too ({c.tpot_p99_speedup.value:.2f}×): a "
                       "speculative-decoding problem, not the mix")


def rule_memory(ev: Evidence) -> Rule:
    if ev.target_share is None and ev.draft_share is None:
        return Rule(name="memory headroom", status=Status.UNKNOWN,
                    reason="device memory unknown (give the experiment a memory section or a plan)")
    problems, shown = [], []
    if ev.target_share is not None:
        shown.append(f"target {ev.target_share:.0%} of device memory")
        if ev.target_share > TARGET_SHARE:
            problems.append(f"target > {TARGET_SHARE:.0%}: the draft will cut concurrency")
    if ev.draft_share is not None:
        shown.append(f"draft {ev.draft_share:.0%} of usable memory")
        if ev.draft_share > DRAFT_SHARE:
            problems.append(f"draft > {DRAFT_SHARE:.0%}: it costs KV cache one for one")
    vals: dict[str, float | str | None] = {"target_share": ev.target_share, "draft_share": ev.draft_share}
    if problems:
        return Rule(name="memory headroom", status=Status.FAIL, values=vals,
                    reason=", ".join(shown) + " — " + "; ".join(problems))
    return Rule(name="memory headroom", status=Status.PASS, values=vals, reason=", ".join(shown))


def rule_squeeze(ev: Evidence) -> Rule:
    seen = [e for e in ev.loads if e.preemptions is not None or e.kv_usage_max is not None]
    if not seen:
        return Rule(name="KV-cache squeeze", status=Status.UNKNOWN, reason="no KV-cache metrics from the server")
    bad = [e for e in seen if (e.preemptions or 0) > (e.baseline_preemptions or 0)
           or (e.kv_usage_max is not None and e.kv_usage_max >= KV_FULL)]
    if bad:
        e = bad[0]
        return Rule(name="KV-cache squeeze", status=Status.FAIL,
                    values={"load": e.load, "preemptions": e.preemptions, "kv_usage_max": e.kv_usage_max},
                    reason=f"at {ev.load_unit} {e.load:g} the candidate's KV cache peaked at "
                           f"{_fmt(e.kv_usage_max and 100 * e.kv_usage_max, 0)} % with {e.preemptions or 0:g} "
                           f"preemptions (baseline {e.baseline_preemptions or 0:g})")
    peak = max((e.kv_usage_max or 0.0) for e in seen)
    return Rule(name="KV-cache squeeze", status=Status.PASS, values={"kv_usage_max": peak},
                reason=f"KV cache peaked at {100 * peak:.0f} %, no extra preemptions")


def rule_slo_kind(ev: Evidence) -> Rule:
    if ev.primary_slo == "ttft":
        return Rule(name="SLO kind", status=Status.FAIL, values={"primary_slo": "ttft"},
                    reason="the primary SLO is TTFT: speculation speeds up TPOT, not the first token "
                           "(the draft's prefill can even slow it)")
    return Rule(name="SLO kind", status=Status.PASS, values={"primary_slo": ev.primary_slo},
                reason=f"the primary SLO is {ev.primary_slo.upper()}, which speculation can improve")


def rule_slo(ev: Evidence) -> Rule:
    if not ev.slo_ms:
        return Rule(name="SLOs", status=Status.UNKNOWN, reason="no SLO given")
    broken = []
    for e in ev.loads:
        for name, limit in ev.slo_ms.items():
            c, b = e.candidate.get(name), e.baseline.get(name)
            if c is not None and c > limit and (b is None or b <= limit):
                broken.append(f"{name} {c:.0f} ms > {limit:g} ms at {ev.load_unit} {e.load:g} (baseline {_fmt(b, 0)})")
    if broken:
        return Rule(name="SLOs", status=Status.FAIL, reason="the candidate breaks an SLO the baseline meets: "
                    + "; ".join(broken))
    return Rule(name="SLOs", status=Status.PASS, reason="the candidate meets every SLO the baseline meets")


def rule_monitoring(ev: Evidence) -> Rule:
    if ev.monitoring:
        return Rule(name="acceptance monitoring", status=Status.PASS, blocking=False,
                    reason="acceptance is monitored in production")
    state = "no acceptance monitoring in place" if ev.monitoring is False else \
        "not stated whether acceptance is monitored (monitoring: in the experiment file)"
    return Rule(name="acceptance monitoring", status=Status.FAIL if ev.monitoring is False else Status.UNKNOWN,
                blocking=False, reason=f"{state}: acceptance drifts with traffic — install `specwise rules` alerts "
                "before relying on speculation")


RULES = (rule_acceptance, rule_tail, rule_temperature, rule_divergence, rule_memory, rule_squeeze,
         rule_slo_kind, rule_slo, rule_monitoring)


def acceptance_drop(name_a: str, acc_a: float | None, name_b: str, acc_b: float | None) -> Rule:
    """Two candidates (e.g. quantized vs not): a drop over ACCEPTANCE_DROP is the signal to step back."""
    if acc_a is None or acc_b is None:
        return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.UNKNOWN, blocking=False,
                    reason="acceptance not measured for both")
    drop = acc_a - acc_b
    vals: dict[str, float | str | None] = {name_a: acc_a, name_b: acc_b, "drop": drop}
    if abs(drop) > ACCEPTANCE_DROP:
        worse, better = (name_b, name_a) if drop > 0 else (name_a, name_b)
        return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.FAIL, blocking=False, values=vals,
                    reason=f"{worse} accepts {100 * abs(drop):.1f} points less than {better} "
                           f"({min(acc_a, acc_b):.2f} vs {max(acc_a, acc_b):.2f}) — over {100 * ACCEPTANCE_DROP:.0f} "
                           f"points: if {worse} is {better} quantized, step back")
    return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.PASS, blocking=False, values=vals,
                reason=f"acceptance within {100 * ACCEPTANCE_DROP:.0f} points ({acc_a:.2f} vs {acc_b:.2f})")
