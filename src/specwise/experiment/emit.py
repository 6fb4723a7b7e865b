"""The experiment `specwise analyze --emit-experiment` writes: the baseline against the method(s) the traffic
calls for, on the replayed workload, at the log's own loads, with the production temperature mix declared so
that the verdict's coverage rule holds the result to it. Pure: a dict ready for YAML."""

from __future__ import annotations

from typing import Any

from specwise.verdict.method import Method, Recommendation, load_levels
from specwise.workload.replay import WorkloadFile

# Per temperature class, the requests a cell needs before its own speedup's interval can clear the noise.
REQUESTS_PER_CLASS = 12
MAX_CLASSES_SIZED = 8


def experiment_for(workload: WorkloadFile, workload_path: str, recommendation: Recommendation) -> dict[str, Any]:
    methods = [m for m in dict.fromkeys(c.method for c in recommendation.classes) if m is not Method.NONE]
    # "None" is a prior, not a measurement: the draft model is what the guide would try first, so it is the
    # candidate that confirms (or overturns) leaving speculation off.
    candidates = [{"name": m.value, "launch": {"mode": m.value, "k": 4}} for m in methods or [Method.DRAFT]]
    classes = len(workload.temperatures.split(","))
    a = workload.arrivals
    unit, levels = load_levels(a.rate if a else None, a.peak_rate if a else None)
    outs = sorted(r.max_tokens for r in workload.requests if r.max_tokens)
    return {
        "name": f"{workload.name}-ab",
        "servers": [{"name": "baseline", "role": "baseline", "launch": {"mode": "baseline"}}, *candidates],
        "workloads": [{"name": workload.name, "dataset": workload_path, "temperatures": workload.temperatures,
                       "production_temperatures": workload.temperatures,
                       "requests": max(32, REQUESTS_PER_CLASS * min(classes, MAX_CLASSES_SIZED))}],
        "loads": {unit: levels if unit == "rate" else [int(v) for v in levels]},
        "warmup": 2,
        # Each replayed request asks for its own logged length; this is the cap over them all.
        "max_tokens": max(2, outs[-1]) if outs else 64,
        "repetitions": 2,
    }
