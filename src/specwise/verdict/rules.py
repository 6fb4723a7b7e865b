"""The guide's rules of thumb (SPEC §1), one function each: evaluated and shown beside the measurement as
explanations, conditions and risks, saying when they disagree with what was measured (pure).

Thresholds (`specwise.thresholds`): acceptance < 0.5 net negative, 0.5–0.65 break-even,
> 0.65 likely gain — for a draft costing ~1/9 of the target, so each verdict also computes
the break-even acceptance of *this* configuration from its measured step costs; per-request
P10 < 0.5 in a temperature bucket; median temperature > 0.7 leave off, ≤ 0.5 a good fit;
target > 70 % of device memory and draft > 15 % of usable memory squeeze the KV cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from specwise.check import Status
from specwise.plan.perf import crossover as crossing
from specwise.thresholds import (ACCEPT_GAIN, ACCEPT_OFF, ACCEPTANCE_DROP, DRAFT_SHARE, P99_WORSE, TAIL_P10,
                                 TARGET_SHARE, TEMP_GOOD, TEMP_OFF)
from specwise.verdict.evidence import Evidence, LoadEvidence, Role, Rule
from specwise.verdict.outcome import (LoadOutcome, Outcome, broken_slos, diverges, speed_outcome, squeezed)
from specwise.workload import is_homogeneous, median_temperature, spread

# ------------------------------------------------------------------------------------------ predicates


def divergent_loads(loads: Sequence[LoadEvidence]) -> list[float]:
    return [e.load for e in loads if diverges(e)]


def needs_control(mix: Sequence[tuple[float, float]]) -> bool:
    """Divergence on this mix is diagnosed by a homogeneous control (it is not homogeneous itself)."""
    return not is_homogeneous(mix)


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


def break_even_acceptance(e: LoadEvidence, k: int | None) -> float | None:
    """The acceptance at which this configuration only breaks even at this load, from its measured step
    costs, in the unit the server reports (accepted / drafted tokens). A speculative step costs the
    candidate's TPOT × its tokens per step; it pays when it yields at least that cost in baseline tokens,
    E* = step / baseline TPOT, that is (E* − 1) / k accepted per drafted token."""
    if not (k and e.candidate_tpot_ms and e.baseline_tpot_ms and e.acceptance_length):
        return None
    needed = e.candidate_tpot_ms * e.acceptance_length / e.baseline_tpot_ms
    return min(1.0, max(0.0, (needed - 1) / k))


def _fmt(x: float | None, d: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def _judged(measured: Outcome | None, guide_gain: bool | None) -> bool | None:
    """Does a rule of thumb (predicting a gain or not) agree with the measured outcome at the lowest load?"""
    if guide_gain is None or measured in (None, Outcome.UNDECIDED, Outcome.PROBABLE):
        return None
    return guide_gain == (measured is Outcome.WIN)


def _explain(name: str, status: Status, reason: str, agrees: bool | None, **kw: object) -> Rule:
    if agrees is False:
        reason += " — the rule of thumb disagrees with the measurement, which decides"
    return Rule(name=name, status=status, reason=reason, blocking=False, role=Role.EXPLAINS, agrees=agrees,
                **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- explanations

def rule_acceptance(ev: Evidence, first: LoadOutcome | None) -> Rule:
    a = ev.acceptance
    if a is None:
        return _explain("acceptance", Status.UNKNOWN, "no acceptance measured (the server exported no "
                        "speculative-decoding counters)", None)
    guide = (f"below the guide's {ACCEPT_OFF} (net negative for a draft costing ~1/9 of the target)" if a < ACCEPT_OFF
             else f"above the guide's {ACCEPT_GAIN} (likely a gain)" if a > ACCEPT_GAIN
             else f"in the guide's break-even zone ({ACCEPT_OFF}–{ACCEPT_GAIN})")
    low = min(ev.loads, key=lambda e: e.load) if ev.loads else None
    be = break_even_acceptance(low, ev.k) if low else None
    values: dict[str, object] = {"acceptance": a, "break_even": be}
    reason = f"acceptance {a:.2f} is {guide}"
    if be is not None and low is not None:
        step = (low.candidate_tpot_ms or 0) * (low.acceptance_length or 0)
        reason += (f"; this configuration breaks even at {be:.2f} at {ev.load_unit} {low.load:g} (a speculative step "
                   f"costs {step:.1f} ms for {low.acceptance_length:.2f} tokens, a baseline token "
                   f"{low.baseline_tpot_ms:.1f} ms)")
    if first is not None:
        reason += f"; measured at {ev.load_unit} {first.load:g}: {first.why}"
    guide_gain = None if ACCEPT_OFF <= a <= ACCEPT_GAIN else a > ACCEPT_GAIN
    status = Status.PASS if (a >= be if be is not None else a >= ACCEPT_OFF) else Status.FAIL
    return _explain("acceptance", status, reason, _judged(first.outcome if first else None, guide_gain),
                    values=values)


def rule_tail(ev: Evidence, first: LoadEvidence | None) -> Rule:
    name = "per-request acceptance tail"
    if not ev.bucket_p10:
        return _explain(name, Status.UNKNOWN, "no per-request acceptance (needs the server's per-request metrics "
                        "or k)", None)
    low = {t: p for t, p in ev.bucket_p10.items() if p < TAIL_P10}
    shown = ", ".join(f"T={t:g}: {p:.2f}" for t, p in sorted(ev.bucket_p10.items()))
    measured = {b.temperature: speed_outcome(b.tpot_speedup) for b in first.buckets} if first else {}
    hurt = {t for t, o in measured.items() if o is Outcome.LOSS}
    decided = all(measured.get(t) in (Outcome.WIN, Outcome.LOSS) for t in ev.bucket_p10)
    agrees = (set(low) == hurt) if measured and decided else None
    if low:
        share = sum(ev.bucket_share.get(t, 0.0) for t in low)
        return _explain(name, Status.FAIL, f"P10 per-request acceptance < {TAIL_P10} in {len(low)} temperature "
                        f"bucket(s) ({shown}); {share:.0%} of requests are in them — the per-bucket speedups say "
                        "whether that traffic is really hurt", agrees, values={"hurt_share": share})
    return _explain(name, Status.PASS, f"P10 per-request acceptance ≥ {TAIL_P10} in every temperature bucket "
                    f"({shown})", agrees)


def rule_temperature(ev: Evidence, first: LoadOutcome | None) -> Rule:
    med = median_temperature(ev.temperatures)
    if med is None:
        return _explain("temperature", Status.UNKNOWN, "no temperature mix given", None)
    temps = [t for t, w in ev.temperatures if w > 0]
    values = {"median": med, "spread": spread(ev.temperatures)}
    measured = first.outcome if first else None
    if med > TEMP_OFF:
        return _explain("temperature", Status.FAIL, f"median temperature {med:g} > {TEMP_OFF}: the guide expects "
                        "acceptance to fall too far", _judged(measured, False), values=values)
    if not is_homogeneous(ev.temperatures):
        return _explain("temperature", Status.FAIL, f"temperatures vary widely ({min(temps):g}–{max(temps):g}): "
                        "the guide expects low-acceptance requests to add tail latency for everyone in the batch",
                        _judged(measured, False), values=values)
    if med <= TEMP_GOOD:
        return _explain("temperature", Status.PASS, f"homogeneous temperatures, median {med:g} ≤ {TEMP_GOOD}",
                        _judged(measured, True), values=values)
    return _explain("temperature", Status.UNKNOWN, f"median temperature {med:g} between {TEMP_GOOD} and "
                    f"{TEMP_OFF}: the guide leaves it to acceptance", None, values=values)


def rule_divergence(ev: Evidence) -> Rule:
    name = "P50–P99 divergence"
    if not any(e.tpot_p99_speedup is not None for e in ev.loads):
        return _explain(name, Status.UNKNOWN, "no P99 TPOT comparison", None)
    div = [e for e in ev.loads if diverges(e)]
    if not div:
        return _explain(name, Status.PASS, "no load where P50 TPOT improves while P99 TPOT regresses", None)
    e = div[0]
    assert e.tpot_p99_speedup is not None
    base = (f"at {ev.load_unit} {e.load:g} P50 TPOT is {e.tpot_speedup.value:.2f}× faster but P99 TPOT "
            f"{1 / e.tpot_p99_speedup.value:.2f}× slower (the limit stops below it)")
    vals: dict[str, object] = {"load": e.load, "p50_speedup": e.tpot_speedup.value,
                               "p99_speedup": e.tpot_p99_speedup.value}
    c = ev.control
    if c is not None and c.homogeneous:
        return _explain(name, Status.FAIL, f"{base}, on a workload that is already homogeneous in temperature: a "
                        "speculative-decoding problem, not the mix", None,
                        values=vals | {"diagnosis": "speculative decoding"})
    if c is None or c.tpot_p99_speedup is None:
        how = f"run `{c.prescription}` and the same on the baseline" if c and c.prescription else \
            "rerun the same load with one low temperature"
        return _explain(name, Status.FAIL, f"{base}; control not run — {how}", None,
                        values=vals | {"diagnosis": "unconfirmed"})
    if c.tpot_p99_speedup.value >= P99_WORSE:  # the control does not regress: P99 tightened
        return _explain(name, Status.FAIL, f"{base}; the homogeneous low-temperature control tightens P99 "
                        f"({c.tpot_p99_speedup.value:.2f}× the baseline's speed): a mixed-workload problem — "
                        "speculate only for low-temperature traffic (a separate deployment)", None,
                        values=vals | {"diagnosis": "mixed workload", "control_p99_speedup": c.tpot_p99_speedup.value})
    return _explain(name, Status.FAIL, f"{base}; the homogeneous control regresses too "
                    f"({c.tpot_p99_speedup.value:.2f}×): a speculative-decoding problem, not the mix", None,
                    values=vals | {"diagnosis": "speculative decoding", "control_p99_speedup": c.tpot_p99_speedup.value})


def rule_memory(ev: Evidence) -> Rule:
    """A risk, not a veto: what the shares predict for contexts and loads not run. The measured squeeze
    decides at the loads that were run."""
    name = "memory headroom"
    if ev.target_share is None and ev.draft_share is None:
        return Rule(name=name, status=Status.UNKNOWN, blocking=False, role=Role.RISK,
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
    vals = {"target_share": ev.target_share, "draft_share": ev.draft_share}
    if problems:
        seen = [e for e in ev.loads if e.kv_usage_max is not None or e.preemptions is not None]
        measured = ("; no squeeze measured at the loads run" if seen and not any(squeezed(e) for e in seen) else "")
        return Rule(name=name, status=Status.WARN, blocking=False, role=Role.RISK, values=vals,
                    reason=", ".join(shown) + " — " + "; ".join(problems) + measured
                    + ": check longer contexts and higher loads before relying on it")
    return Rule(name=name, status=Status.PASS, blocking=False, role=Role.RISK, values=vals, reason=", ".join(shown))


def rule_squeeze(ev: Evidence) -> Rule:
    seen = [e for e in ev.loads if e.preemptions is not None or e.kv_usage_max is not None]
    if not seen:
        return Rule(name="KV-cache squeeze", status=Status.UNKNOWN, blocking=False,
                    reason="no KV-cache metrics from the server")
    bad = [e for e in seen if squeezed(e)]
    if bad:
        e = bad[0]
        return Rule(name="KV-cache squeeze", status=Status.FAIL, blocking=False,
                    values={"load": e.load, "preemptions": e.preemptions, "kv_usage_max": e.kv_usage_max},
                    reason=f"at {ev.load_unit} {e.load:g} the candidate's KV cache peaked at "
                           f"{100 * (e.kv_usage_max or 0):.0f} % with {e.preemptions or 0:g} preemptions (baseline "
                           f"{e.baseline_preemptions or 0:g}): no speculation from there up")
    peak = max((e.kv_usage_max or 0.0) for e in seen)
    return Rule(name="KV-cache squeeze", status=Status.PASS, blocking=False, values={"kv_usage_max": peak},
                reason=f"KV cache peaked at {100 * peak:.0f} %, no extra preemptions")


def rule_slo_kind(ev: Evidence) -> Rule:
    low = min(ev.loads, key=lambda e: e.load) if ev.loads else None
    change = low.ttft_change if low else None
    if ev.primary_slo != "ttft":
        return _explain("SLO kind", Status.PASS, f"the primary SLO is {ev.primary_slo.upper()}, which speculation "
                        "can improve", None, values={"primary_slo": ev.primary_slo})
    guide = "the guide expects no gain for a TTFT-bound SLO (speculation speeds up TPOT, not the first token)"
    if change is None or low is None:
        return _explain("SLO kind", Status.UNKNOWN, f"{guide}; TTFT change not measured", None,
                        values={"primary_slo": "ttft"})
    worse = change.value > 1.05
    return _explain("SLO kind", Status.FAIL if worse else Status.PASS,
                    f"{guide}; measured P50 TTFT {change.value:.2f}× the baseline's at {ev.load_unit} {low.load:g}",
                    None, values={"primary_slo": "ttft", "ttft_change": change.value})


def rule_slo(ev: Evidence) -> Rule:
    if not ev.slo_ms:
        return Rule(name="SLOs", status=Status.UNKNOWN, blocking=False, reason="no SLO given")
    broken = [f"{b} at {ev.load_unit} {e.load:g}" for e in ev.loads for b in broken_slos(e, ev.slo_ms)]
    if broken:
        return Rule(name="SLOs", status=Status.FAIL, blocking=False, reason="the candidate breaks an SLO the "
                    "baseline meets: " + "; ".join(broken) + " — no speculation from there up")
    return Rule(name="SLOs", status=Status.PASS, blocking=False,
                reason="the candidate meets every SLO the baseline meets")


def rule_monitoring(ev: Evidence) -> Rule:
    """The measurement cannot see production: a condition attached to any ENABLE."""
    if ev.monitoring:
        return Rule(name="acceptance monitoring", status=Status.PASS, blocking=False, role=Role.CONDITION,
                    reason="acceptance is monitored in production")
    state = "no acceptance monitoring in place" if ev.monitoring is False else \
        "not stated whether acceptance is monitored (monitoring: in the experiment file)"
    return Rule(name="acceptance monitoring", status=Status.FAIL if ev.monitoring is False else Status.UNKNOWN,
                blocking=False, role=Role.CONDITION, reason=f"{state}: acceptance drifts with traffic — load the "
                "alerts of `specwise rules --from EXP_DIR` (this experiment's break-even) into Prometheus before "
                "relying on speculation")


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
