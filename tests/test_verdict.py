"""The decision framework (SPEC §1), rule by rule and in combination: table-driven, pure."""

from __future__ import annotations

import dataclasses

import pytest

from specwise.analysis import Equivalence, Estimate
from specwise.verdict import (Arm, BucketEvidence, Control, Decision, Evidence, LoadEvidence, Status,
                              acceptance_drop, crossover, decide, median_temperature, requests_to_decide)


def est(value: float, half: float = 0.05) -> Estimate:
    return Estimate(value=value, low=value - half, high=value + half)


def load(level: float, p50: float, p99: float | None = None, **kw: object) -> LoadEvidence:
    return LoadEvidence(load=level, tpot_speedup=est(p50), tpot_p99_speedup=est(p99 if p99 is not None else p50),
                        requests=64, **kw)  # type: ignore[arg-type]


# A deployment where everything is measured and passes: homogeneous T=0, high acceptance, valid arms,
# identical outputs, faster at every load, monitored.
ARMS = {"baseline_arm": Arm(64), "candidate_arm": Arm(64)}
GOOD = Evidence(loads=(load(1, 1.6, kv_usage_max=0.2, preemptions=0, **ARMS),
                       load(8, 1.2, kv_usage_max=0.5, preemptions=0, **ARMS)),
                acceptance=0.78, bucket_p10={0.0: 0.7}, bucket_share={0.0: 1.0}, temperatures=((0.0, 1.0),),
                slo_ms={"p99_tpot": 100.0}, primary_slo="tpot", monitoring=True, target_share=0.4, draft_share=0.05,
                k=4, equivalence=Equivalence(compared=40, identical=40, floor_compared=20, floor_identical=20),
                production_temperatures=((0.0, 1.0),))


def with_(**changes: object) -> Evidence:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def rule(verdict, name):  # type: ignore[no-untyped-def]
    return next(r for r in verdict.rules if r.name == name)


def test_all_rules_pass_enables() -> None:
    v = decide(GOOD)
    assert v.decision is Decision.ENABLE
    # one temperature: its speedup is the load's, nothing to split
    assert [(r.name, r.status) for r in v.rules if r.status is not Status.PASS] == [
        ("speedup by temperature", Status.UNKNOWN)]
    assert v.advice == [] and v.conditions == []


def buckets(**speedups: float) -> tuple[BucketEvidence, ...]:
    return tuple(BucketEvidence(temperature=float(t.removeprefix("t").replace("_", ".")), tpot_speedup=est(s),
                                requests=32) for t, s in speedups.items())


# Each conflict between a rule of thumb and a measurement, and the verdict a careful engineer gives:
# (what changes, the rule to look at, its status, the decision, a phrase of the headline)
CASES = [
    # a candidate that fails, or returns short outputs, is not compared: it is off
    ({"loads": (load(1, 1.6, baseline_arm=Arm(20), candidate_arm=Arm(20, errors=14)),)},
     "valid comparison", Status.FAIL, Decision.DISABLE, "failed 14 of 20"),
    ({"loads": (load(1, 1.6, baseline_arm=Arm(20), candidate_arm=Arm(20, short=18)),)},
     "valid comparison", Status.FAIL, Decision.DISABLE, "fewer tokens than asked"),
    # the baseline failing, or an unfinished cell: nothing can be said
    ({"loads": (load(1, 1.6, baseline_arm=Arm(20, errors=5), candidate_arm=Arm(20)),)},
     "valid comparison", Status.FAIL, Decision.INCONCLUSIVE, "baseline failed 5 of 20"),
    ({"loads": (load(1, 1.6, baseline_arm=Arm(20, complete=False), candidate_arm=Arm(20)),)},
     "valid comparison", Status.FAIL, Decision.INCONCLUSIVE, "did not finish"),
    # one error in 64 is within the tolerance
    ({"loads": (load(1, 1.6, baseline_arm=Arm(64), candidate_arm=Arm(64, errors=1)),)},
     "valid comparison", Status.PASS, Decision.ENABLE, "enable"),
    # faster with acceptance below the guide's 0.5 (a cheap proposer): the measurement decides
    ({"acceptance": 0.31, "loads": (load(1, 1.74, candidate_tpot_ms=8.0, baseline_tpot_ms=10.0,
                                         acceptance_length=1.4, **ARMS),)},
     "acceptance", Status.PASS, Decision.ENABLE, "enable"),
    # slower with acceptance above 0.65 (a heavy draft): off, whatever the guide expects
    ({"acceptance": 0.80, "loads": (load(1, 0.8, **ARMS), load(8, 0.6, **ARMS))},
     "acceptance", Status.PASS, Decision.DISABLE, "leave speculation off"),
    # P99 regresses only at the top load: a limit below it, not a veto
    ({"loads": (load(1, 1.6, 1.5, **ARMS), load(8, 1.3, 1.2, **ARMS), load(32, 1.1, 0.8, **ARMS))},
     "P50–P99 divergence", Status.FAIL, Decision.ENABLE_WITH_LIMIT, "up to concurrency 8"),
    # a losing temperature bucket inside a winning mix: enable for the winning traffic only
    ({"temperatures": ((0.0, 0.5), (1.0, 0.5)),
      "loads": (load(1, 1.3, buckets=buckets(t0=2.0, t1=0.7), **ARMS),)},
     "speedup by temperature", Status.FAIL, Decision.ENABLE_WITH_LIMIT, "T = 0 traffic only"),
    # a proven class inside a mix that is not proven as a whole, the other class undecided: that class only
    ({"temperatures": ((0.0, 0.5), (1.0, 0.5)),
      "loads": (load(1, 1.05, buckets=buckets(t0=1.6, t1=0.95), **ARMS),)},
     "speedup by temperature", Status.PASS, Decision.ENABLE_WITH_LIMIT, "T = 1 not proven faster"),
    # above a proven win, a load estimated faster whose CI rules out being >10 % slower stays on ("probably")…
    ({"loads": (load(1, 2.6, **ARMS), LoadEvidence(load=8, tpot_speedup=Estimate(value=1.30, low=0.94, high=1.57),
                                                   requests=64, **ARMS))},
     "measured speedup", Status.PASS, Decision.ENABLE, "at 8 probably (P50 TPOT 1.30× [0.94–1.57]"),
    # …one that could be materially slower does not
    ({"loads": (load(1, 2.6, **ARMS), LoadEvidence(load=8, tpot_speedup=Estimate(value=1.10, low=0.85, high=1.35),
                                                   requests=64, **ARMS))},
     "measured speedup", Status.PASS, Decision.ENABLE_WITH_LIMIT, "at 8 it is not proven faster"),
    # low P10 acceptance in a bucket whose requests are measured faster: the tail rule disagrees
    ({"bucket_p10": {0.0: 0.47}, "loads": (load(1, 2.0, buckets=buckets(t0=2.0), **ARMS),)},
     "per-request acceptance tail", Status.FAIL, Decision.ENABLE, "enable"),
    # TTFT is the primary SLO: the measured TTFT change decides, not the assumption
    ({"primary_slo": "ttft", "loads": (load(1, 1.6, ttft_change=est(0.98, 0.02), **ARMS),)},
     "SLO kind", Status.PASS, Decision.ENABLE, "enable"),
    ({"primary_slo": "ttft", "loads": (load(1, 1.6, ttft_change=est(1.3), **ARMS),)},
     "SLO kind", Status.FAIL, Decision.DISABLE, "TTFT is the primary SLO"),
    # the primary SLO picks the deciding measure: E2E slower though TPOT is faster → off; throughput higher → on
    ({"primary_slo": "e2e", "loads": (load(1, 1.6, e2e_speedup=est(0.9), **ARMS),)},
     "measured speedup", Status.FAIL, Decision.DISABLE, "P50 E2E 0.90×"),
    ({"primary_slo": "throughput", "loads": (load(1, 1.6, throughput_ratio=1.3, **ARMS),
                                             load(8, 1.2, throughput_ratio=1.01, **ARMS))},
     "measured speedup", Status.PASS, Decision.ENABLE_WITH_LIMIT, "output throughput 1.01×"),
    # memory over 70 % with no squeeze measured: a risk to state, not a veto
    ({"target_share": 0.71}, "memory headroom", Status.WARN, Decision.ENABLE, "enable"),
    ({"draft_share": 0.16}, "memory headroom", Status.WARN, Decision.ENABLE, "enable"),
    # a squeeze measured at the top load stops the limit below it
    ({"loads": (load(1, 1.6, kv_usage_max=0.5, **ARMS), load(8, 1.2, kv_usage_max=0.95, baseline_kv_usage_max=0.7,
                                                             **ARMS))},
     "KV-cache squeeze", Status.FAIL, Decision.ENABLE_WITH_LIMIT, "up to concurrency 1"),
    # both arms full: not the candidate's squeeze
    ({"loads": (load(1, 1.6, kv_usage_max=0.95, baseline_kv_usage_max=0.95, **ARMS),)},
     "KV-cache squeeze", Status.PASS, Decision.ENABLE, "enable"),
    # an SLO the baseline meets and the candidate breaks, at the top load only
    ({"loads": (load(1, 1.6, **ARMS), load(8, 1.2, candidate={"p99_tpot": 120.0}, baseline={"p99_tpot": 90.0},
                                           **ARMS))},
     "SLOs", Status.FAIL, Decision.ENABLE_WITH_LIMIT, "up to concurrency 1"),
    # goodput under the SLOs: fewer of the candidate's requests within them at the top load caps the limit
    ({"loads": (load(1, 1.6, goodput=(0.95, 0.97), **ARMS), load(8, 1.2, goodput=(0.90, 0.70), **ARMS))},
     "measured speedup", Status.PASS, Decision.ENABLE_WITH_LIMIT, "fewer requests within the SLOs (70% vs"),
    # outputs that diverge beyond the engine's own floor: off, whatever the speed
    ({"equivalence": Equivalence(compared=40, identical=20, median_first_divergence=7, floor_compared=20,
                                 floor_identical=20)},
     "outputs unchanged", Status.FAIL, Decision.DISABLE, "changed the outputs"),
    # within the floor of an engine that is not deterministic itself: fine
    ({"equivalence": Equivalence(compared=40, identical=34, floor_compared=20, floor_identical=17)},
     "outputs unchanged", Status.PASS, Decision.ENABLE, "enable"),
    ({"exact_by_design": False}, "outputs unchanged", Status.FAIL, Decision.DISABLE, "by design"),
    # production runs temperatures that were not tested: inconclusive for them
    ({"production_temperatures": ((0.0, 0.7), (0.9, 0.3))}, "temperature coverage", Status.FAIL,
     Decision.INCONCLUSIVE, "untested in production: T=0.9"),
    ({"production_temperatures": ((0.02, 1.0),)}, "temperature coverage", Status.PASS, Decision.ENABLE, "enable"),
    # a median temperature over 0.7 that measures faster: the rule explains, the measurement decides
    ({"temperatures": ((0.8, 1.0),), "production_temperatures": ((0.8, 1.0),)}, "temperature", Status.FAIL,
     Decision.ENABLE, "enable"),
    # no monitoring: a condition on the ENABLE, never a change of decision
    ({"monitoring": False}, "acceptance monitoring", Status.FAIL, Decision.ENABLE, "once acceptance alerts"),
    ({"monitoring": None}, "acceptance monitoring", Status.UNKNOWN, Decision.ENABLE, "once acceptance alerts"),
]


@pytest.mark.parametrize(("change", "name", "status", "decision", "phrase"), CASES,
                         ids=[f"{c[1]}-{c[2].value}-{i}" for i, c in enumerate(CASES)])
def test_rule_and_measurement(change: dict, name: str, status: Status, decision: Decision, phrase: str) -> None:
    v = decide(with_(**change))
    assert rule(v, name).status is status, rule(v, name).reason
    assert v.decision is decision, v.headline
    assert phrase in v.headline, v.headline


def test_a_disagreeing_rule_says_so() -> None:
    cheap = decide(with_(acceptance=0.31, loads=(load(1, 1.74, candidate_tpot_ms=8.0, baseline_tpot_ms=10.0,
                                                      acceptance_length=1.4, **ARMS),)))
    r = rule(cheap, "acceptance")
    # step 8.0 ms × 1.4 tokens = 11.2 ms against 10.0 ms per baseline token: a step must yield 1.12 tokens,
    # 0.12 accepted per 4 drafted = 0.03
    assert r.agrees is False and r.values["break_even"] == pytest.approx(0.03)
    assert "below the guide's 0.5" in r.reason and "breaks even at 0.03" in r.reason and "disagrees" in r.reason
    heavy = rule(decide(with_(acceptance=0.80, loads=(load(1, 0.8, **ARMS),))), "acceptance")
    assert heavy.agrees is False


def test_no_monitoring_is_a_condition() -> None:
    v = decide(with_(monitoring=False))
    assert len(v.conditions) == 1 and "specwise rules" in v.conditions[0]
    assert decide(with_(monitoring=False, loads=(load(1, 0.7, **ARMS),))).conditions == []


def test_divergence_needs_the_control_to_diagnose() -> None:
    diverging = (load(1, 1.4, 0.8), load(8, 1.1, 0.85))
    unconfirmed = decide(with_(loads=diverging, control=Control(load=1, prescription="specwise bench … -T 0")))
    r = rule(unconfirmed, "P50–P99 divergence")
    assert r.status is Status.FAIL and r.values["diagnosis"] == "unconfirmed" and "specwise bench" in r.reason
    mixed = rule(decide(with_(loads=diverging, control=Control(load=1, tpot_p99_speedup=est(1.3)))),
                 "P50–P99 divergence")
    assert mixed.values["diagnosis"] == "mixed workload"
    spec = rule(decide(with_(loads=diverging, control=Control(load=1, tpot_p99_speedup=est(0.7)))),
                "P50–P99 divergence")
    assert spec.values["diagnosis"] == "speculative decoding"
    assert decide(with_(loads=diverging)).decision is Decision.DISABLE   # P99 regresses from the lowest load up
    own = rule(decide(with_(loads=diverging, control=Control(load=1, homogeneous=True))), "P50–P99 divergence")
    assert own.values["diagnosis"] == "speculative decoding" and "already homogeneous" in own.reason


def test_speedup_decides_when_rules_pass() -> None:
    slower = decide(with_(loads=(load(1, 0.8), load(8, 0.6))))
    assert slower.decision is Decision.DISABLE and rule(slower, "measured speedup").status is Status.FAIL
    limited = decide(with_(loads=(load(1, 1.5, batch=1), load(4, 1.2, batch=4), load(16, 0.7, batch=16)),
                           max_batch=64))
    assert limited.decision is Decision.ENABLE_WITH_LIMIT
    assert limited.limit is not None and limited.limit.batch == 4 and limited.limit.load == 4
    assert "[[1, 4, 4], [5, 64, 0]]" in limited.limit.vllm_setting
    assert 4 < rule(limited, "measured speedup").values["crossover"] < 16  # type: ignore[operator]


def test_noise_is_inconclusive_with_the_requests_that_would_decide() -> None:
    noisy = (LoadEvidence(load=1, tpot_speedup=Estimate(value=1.05, low=0.95, high=1.15), requests=40),)
    v = decide(with_(loads=noisy))
    assert v.decision is Decision.INCONCLUSIVE
    # half-width 0.10 for an effect of 0.05: (0.10/0.05)² × 40 = 160 requests, with 20 % margin
    assert v.more_requests == 192 and "192" in v.headline


def test_helpers() -> None:
    assert median_temperature([(0.1, 60), (1.0, 40)]) == 0.1
    assert median_temperature([(0.0, 1), (0.5, 1), (1.0, 1)]) == 0.5
    assert median_temperature([]) is None
    assert crossover([load(1, 1.5), load(4, 1.1), load(16, 0.9)]) == pytest.approx(8.0)
    assert crossover([load(1, 1.5), load(4, 1.1)]) is None
    assert requests_to_decide(LoadEvidence(load=1, tpot_speedup=Estimate(value=1.0, low=0.9, high=1.1),
                                           requests=10)) is None


def test_candidates_acceptance_drop() -> None:
    assert acceptance_drop("bf16", 0.78, "int4", 0.70).status is Status.FAIL
    assert "int4 accepts 8.0 points less" in acceptance_drop("bf16", 0.78, "int4", 0.70).reason
    assert acceptance_drop("bf16", 0.78, "int8", 0.75).status is Status.PASS
    assert acceptance_drop("a", None, "b", 0.7).status is Status.UNKNOWN


def test_a_speedup_inside_the_noise_floor_is_not_a_win() -> None:
    """CI [1.03–1.13] clears the 2 % floor; [1.01–1.11] does not."""
    assert decide(with_(loads=(load(1, 1.08, **ARMS),))).decision is Decision.ENABLE
    assert decide(with_(loads=(load(1, 1.06, **ARMS),))).decision is Decision.INCONCLUSIVE


def test_changed_outputs_reject_even_when_only_the_timings_are_invalid() -> None:
    bound = {"baseline_arm": Arm(64), "candidate_arm": Arm(64, client_bound=8)}
    changed = Equivalence(compared=40, identical=0, median_first_divergence=5, floor_compared=20, floor_identical=20)
    timing_only = with_(loads=(load(1, 1.6, **bound),), equivalence=changed)
    v = decide(timing_only)
    assert v.decision is Decision.DISABLE and "changed the outputs" in v.headline
    assert rule(v, "valid comparison").status is Status.FAIL   # the timing problem is still shown
    # Without changed outputs, a generator-bound arm leaves the speed unknown.
    assert decide(with_(loads=(load(1, 1.6, **bound),))).decision is Decision.INCONCLUSIVE
    # A candidate returning short outputs: its outputs cannot be judged on their own, the invalidity decides.
    short = {"baseline_arm": Arm(64), "candidate_arm": Arm(64, short=20)}
    v = decide(with_(loads=(load(1, 1.6, **short),), equivalence=changed))
    assert v.decision is Decision.DISABLE and "not valid" in v.headline
