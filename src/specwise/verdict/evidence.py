"""What the verdict is decided on: the measured evidence, per load and for the whole workload, and the
verdict's own shape (decision, rules, limit). Speedups are baseline / candidate (> 1: candidate faster)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel

from specwise.analysis import Equivalence, Estimate
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


class Role(str, Enum):
    """What a rule does to the verdict. The measurement decides; the guide's rules of thumb explain it,
    stand where the measurement is blind (conditions, risks), and say when they disagree with it."""

    DECIDES = "decides"        # measured: validity, outputs, speed, P99, SLOs, squeeze, coverage
    EXPLAINS = "explains"      # a rule of thumb set beside the measured outcome
    CONDITION = "condition"    # what the measurement cannot see, attached to an ENABLE (monitoring)
    RISK = "risk"              # a warning for what was not run (memory at other contexts)


class Rule(Check):
    """A rule of the decision framework, evaluated on the evidence."""

    blocking: bool = True          # a FAIL changes the decision; False: explanation or advice only
    role: Role = Role.DECIDES
    agrees: bool | None = None     # for an explanation: does the rule of thumb predict what was measured?


class Limit(BaseModel):
    load: float
    unit: str
    batch: int
    vllm_setting: str
    temperatures: list[float] | None = None   # speculate for this traffic only (None: all of it)


class Verdict(BaseModel):
    decision: Decision
    headline: str
    rules: list[Rule]
    limit: Limit | None = None
    more_requests: int | None = None
    crossover: float | None = None   # the load where the P50 TPOT speedup crosses 1
    break_even: dict[float, float] = {}   # by load: the acceptance this configuration breaks even at there
    by_load: dict[float, str] = {}        # by load: the measured outcome there (an Outcome's value)
    why_by_load: dict[float, str] = {}    # by load: the figures that decided it
    within_noise: list[float] = []        # loads lost by less than the noise floor (see outcome.within_noise)
    advice: list[str] = []
    conditions: list[str] = []      # what must hold in production for the decision to stand


@dataclass(frozen=True)
class Arm:
    """Whether one arm's data at one load can be compared at all."""

    requests: int                          # measured requests sent
    errors: int = 0                        # of them failed
    short: int = 0                         # of the successful ones, returned fewer tokens than asked
    complete: bool = True                  # every repetition's cell finished
    client_bound: int = 0                  # of them, held back or timed late by the load generator

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def short_rate(self) -> float:
        ok = self.requests - self.errors
        return self.short / ok if ok else 0.0


@dataclass(frozen=True)
class BucketEvidence:
    """One temperature bucket at one load: A and B sent the same prompts at this temperature."""

    temperature: float
    tpot_speedup: Estimate | None
    requests: int = 0                      # per arm (the smaller)
    tpot_p99_speedup: Estimate | None = None


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
    baseline_kv_usage_max: float | None = None
    baseline_arm: Arm | None = None
    candidate_arm: Arm | None = None
    buckets: Sequence[BucketEvidence] = ()
    ttft_change: Estimate | None = None    # candidate / baseline P50 TTFT (> 1: slower first token)
    e2e_speedup: Estimate | None = None    # of P50 end-to-end latency
    throughput_ratio: float | None = None  # candidate / baseline output tokens per second
    goodput: tuple[float, float] | None = None  # (baseline, candidate) share of requests within every SLO
    baseline_tpot_ms: float | None = None  # P50s, for the break-even acceptance of this configuration
    candidate_tpot_ms: float | None = None
    acceptance_length: float | None = None  # the candidate's tokens per step here (server counters)


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
    production_temperatures: Sequence[tuple[float, float]] = ()     # the declared production mix, if any
    equivalence: Equivalence | None = None
    exact_by_design: bool = True               # False: the configuration gives up exact outputs (typical acceptance)
