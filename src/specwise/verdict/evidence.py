"""What the verdict is decided on: the measured evidence, per load and for the whole workload, and the
verdict's own shape (decision, rules, limit). Speedups are baseline / candidate (> 1: candidate faster)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel

from specwise.analysis import Estimate
from specwise.check import Check

LoadUnit = Literal["concurrency", "rate"]
PrimarySlo = Literal["tpot", "ttft", "e2e", "throughput"]


class Decision(str, Enum):
    ENABLE = "ENABLE"
    ENABLE_WITH_LIMIT = "ENABLE_WITH_LIMIT"
    DISABLE = "DISABLE"
    INCONCLUSIVE = "INCONCLUSIVE"

    @property
    def allows(self) -> bool:
        """Speculation may be turned on (everywhere, or below the limit)."""
        return self in (Decision.ENABLE, Decision.ENABLE_WITH_LIMIT)


class Rule(Check):
    """A rule of the decision framework, evaluated on the evidence."""

    blocking: bool = True          # a FAIL leaves speculation off; False: advice only


class Limit(BaseModel):
    load: float
    unit: str
    batch: int
    vllm_setting: str


class Verdict(BaseModel):
    decision: Decision
    headline: str
    rules: list[Rule]
    limit: Limit | None = None
    more_requests: int | None = None
    crossover: float | None = None   # the load where the P50 TPOT speedup crosses 1
    advice: list[str] = []


@dataclass(frozen=True)
class LoadEvidence:
    """Baseline vs candidate at one load level."""

    load: float
    tpot_speedup: Estimate                 # of P50 TPOT
    tpot_p99_speedup: Estimate | None = None
    requests: int = 0                      # per arm (the smaller)
    batch: float | None = None             # most requests the candidate ran at once here (server metric)
    candidate: dict[str, float] = field(default_factory=dict)   # P99s in ms by SLO name, e.g. {"p99_tpot": 41.0}
    baseline: dict[str, float] = field(default_factory=dict)
    preemptions: float | None = None       # the candidate's, over the window
    baseline_preemptions: float | None = None
    kv_usage_max: float | None = None      # the candidate's, 0–1


@dataclass(frozen=True)
class Control:
    """The homogeneous low-temperature control at the load where divergence appeared."""

    load: float
    tpot_p99_speedup: Estimate | None = None   # None: not run (prescribed)
    prescription: str = ""
    homogeneous: bool = False                  # the workload itself is homogeneous: it is its own control


@dataclass(frozen=True)
class Evidence:
    loads: Sequence[LoadEvidence]
    load_unit: LoadUnit = "concurrency"
    acceptance: float | None = None            # server counters over the measured windows
    bucket_p10: dict[float, float] = field(default_factory=dict)     # per-request acceptance P10 by temperature
    bucket_share: dict[float, float] = field(default_factory=dict)   # share of requests by temperature
    temperatures: Sequence[tuple[float, float]] = ()                 # the workload's mix (temperature, weight)
    slo_ms: dict[str, float] = field(default_factory=dict)           # P99 limits by SLO name, e.g. {"p99_tpot": 50}
    primary_slo: PrimarySlo = "tpot"
    monitoring: bool | None = None
    target_share: float | None = None          # target weights / device memory
    draft_share: float | None = None           # draft weights / usable memory
    control: Control | None = None
    k: int | None = None
    max_batch: int = 256                       # the server's max_num_seqs, for the limit's schedule
