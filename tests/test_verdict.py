"""The decision framework (SPEC §1), rule by rule and in combination: table-driven, pure."""

from __future__ import annotations

import dataclasses

import pytest

from specwise.analysis import Estimate
from specwise.verdict import (Control, Decision, Evidence, LoadEvidence, Status, acceptance_drop, crossover,
                              decide, median_temperature, requests_to_decide)


def est(value: float, half: float = 0.05) -> Estimate:
    return Estimate(value=value, low=value - half, high=value + half)


def load(level: float, p50: float, p99: float | None = None, **kw: object) -> LoadEvidence:
    return LoadEvidence(load=level, tpot_speedup=est(p50), tpot_p99_speedup=est(p99 if p99 is not None else p50),
                        requests=64, **kw)  # type: ignore[arg-type]


# A deployment where every rule passes: homogeneous T=0, high acceptance, faster at every load.
GOOD = Evidence(loads=(load(1, 1.6, kv_usage_max=0.2, preemptions=0), load(8, 1.2, kv_usage_max=0.5, preemptions=0)), acceptance=0.78, bucket_p10={0.0: 0.7},
                bucket_share={0.0: 1.0}, temperatures=((0.0, 1.0),), slo_ms={"p99_tpot": 100.0},
                primary_slo="tpot", monitoring=True, target_share=0.4, draft_share=0.05, k=4,
                )


def with_(**changes: object) -> Evidence:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def rule(verdict, name):  # type: ignore[no-untyped-def]
    return next(r for r in verdict.rules if r.name == name)


def test_all_rules_pass_enables() -> None:
    v = decide(GOOD)
    assert v.decision is Decision.ENABLE
    assert all(r.status is Status.PASS for r in v.rules), [(r.name, r.status) for r in v.rules]
    assert v.advice == []


# (change, rule that fires, its status, the decision)
CASES = [
    # acceptance thresholds: < 0.5 off; 0.5–0.65 decided on P99; > 0.65 gain
    ({"acceptance": 0.49}, "acceptance", Status.FAIL, Decision.DISABLE),
    ({"acceptance": 0.50}, "acceptance", Status.PASS, Decision.ENABLE),
    ({"acceptance": 0.60, "loads": (load(1, 1.3, 0.90), load(8, 1.1, 0.9))}, "acceptance", Status.FAIL,
     Decision.DISABLE),
    ({"acceptance": 0.60}, "acceptance", Status.PASS, Decision.ENABLE),
    ({"acceptance": 0.66}, "acceptance", Status.PASS, Decision.ENABLE),
    ({"acceptance": None}, "acceptance", Status.UNKNOWN, Decision.ENABLE),
    # P10 < 0.5 in a bucket: the aggregate-acceptance trap
    ({"bucket_p10": {0.0: 0.8, 1.0: 0.3}, "bucket_share": {0.0: 0.6, 1.0: 0.4}},
     "per-request acceptance tail", Status.FAIL, Decision.DISABLE),
    ({"bucket_p10": {0.0: 0.5}}, "per-request acceptance tail", Status.PASS, Decision.ENABLE),
    ({"bucket_p10": {}}, "per-request acceptance tail", Status.UNKNOWN, Decision.ENABLE),
    # median temperature > 0.7 off; ≤ 0.5 good; wide spread off
    ({"temperatures": ((0.8, 1.0),)}, "temperature", Status.FAIL, Decision.DISABLE),
    ({"temperatures": ((0.7, 1.0),)}, "temperature", Status.UNKNOWN, Decision.ENABLE),
    ({"temperatures": ((0.5, 1.0),)}, "temperature", Status.PASS, Decision.ENABLE),
    ({"temperatures": ((0.1, 0.6), (1.0, 0.4))}, "temperature", Status.FAIL, Decision.DISABLE),
    ({"temperatures": ((0.0, 0.5), (0.3, 0.5))}, "temperature", Status.PASS, Decision.ENABLE),
    # memory: target > 70 % of the device, draft > 15 % of usable memory
    ({"target_share": 0.71}, "memory headroom", Status.FAIL, Decision.DISABLE),
    ({"target_share": 0.70}, "memory headroom", Status.PASS, Decision.ENABLE),
    ({"draft_share": 0.16}, "memory headroom", Status.FAIL, Decision.DISABLE),
    ({"draft_share": 0.15}, "memory headroom", Status.PASS, Decision.ENABLE),
    ({"target_share": None, "draft_share": None}, "memory headroom", Status.UNKNOWN, Decision.ENABLE),
    # the squeeze seen by the server: preemptions or a full KV cache
    ({"loads": (load(1, 1.6, preemptions=3, baseline_preemptions=0), load(8, 1.2))}, "KV-cache squeeze",
     Status.FAIL, Decision.DISABLE),
    ({"loads": (load(1, 1.6, kv_usage_max=0.95), load(8, 1.2))}, "KV-cache squeeze", Status.FAIL, Decision.DISABLE),
    ({"loads": (load(1, 1.6, kv_usage_max=0.5, preemptions=0), load(8, 1.2))}, "KV-cache squeeze", Status.PASS,
     Decision.ENABLE),
    # TTFT-bound SLO: speculation does not help
    ({"primary_slo": "ttft"}, "SLO kind", Status.FAIL, Decision.DISABLE),
    ({"primary_slo": "throughput"}, "SLO kind", Status.PASS, Decision.ENABLE),
    # an SLO the baseline meets and the candidate breaks
    ({"loads": (load(1, 1.6, candidate={"p99_tpot": 120.0}, baseline={"p99_tpot": 90.0}), load(8, 1.2))},
     "SLOs", Status.FAIL, Decision.DISABLE),
    ({"slo_ms": {}}, "SLOs", Status.UNKNOWN, Decision.ENABLE),
    # no monitoring: advice, never a change of decision
    ({"monitoring": False}, "acceptance monitoring", Status.FAIL, Decision.ENABLE),
    ({"monitoring": None}, "acceptance monitoring", Status.UNKNOWN, Decision.ENABLE),
]


@pytest.mark.parametrize(("change", "name", "status", "decision"), CASES,
                         ids=[f"{c[1]}-{c[2].value}-{i}" for i, c in enumerate(CASES)])
def test_rule(change: dict, name: str, status: Status, decision: Decision) -> None:
    v = decide(with_(**change))
    assert rule(v, name).status is status, rule(v, name).reason
    assert v.decision is decision, v.headline


def test_no_monitoring_gives_advice() -> None:
    v = decide(with_(monitoring=False))
    assert len(v.advice) == 1 and "specwise rules" in v.advice[0]


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
    assert decide(with_(loads=diverging)).decision is Decision.DISABLE
    own = rule(decide(with_(loads=diverging, control=Control(load=1, homogeneous=True))), "P50–P99 divergence")
    assert own.values["diagnosis"] == "speculative decoding" and "already homogeneous" in own.reason


def test_speedup_decides_when_rules_pass() -> None:
    slower = decide(with_(loads=(load(1, 0.8), load(8, 0.6))))
    assert slower.decision is Decision.DISABLE and rule(slower, "TPOT speedup").status is Status.FAIL
    limited = decide(with_(loads=(load(1, 1.5, batch=1), load(4, 1.2, batch=4), load(16, 0.7, batch=16)),
                           max_batch=64))
    assert limited.decision is Decision.ENABLE_WITH_LIMIT
    assert limited.limit is not None and limited.limit.batch == 4 and limited.limit.load == 4
    assert "[[1, 4, 4], [5, 64, 0]]" in limited.limit.vllm_setting
    assert 4 < rule(limited, "TPOT speedup").values["crossover"] < 16  # type: ignore[operator]


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
