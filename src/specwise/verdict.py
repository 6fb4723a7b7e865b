"""The verdict: SPEC §1's decision framework as a pure function of measured evidence.

Every rule is evaluated to PASS / FAIL / UNKNOWN with the numbers behind it. A FAIL
of a *blocking* rule leaves speculation off (DISABLE); advice (no monitoring) never
changes the decision. Otherwise the measured TPOT speedup decides, load by load,
from its confidence interval: a win everywhere is ENABLE; wins at low load and
losses above is ENABLE_WITH_LIMIT (the limit and the vLLM setting that applies
it); losses everywhere is DISABLE; an interval that straddles 1 at the lowest load
is INCONCLUSIVE, with the number of requests that would decide it.

Thresholds (SPEC §1): acceptance < 0.5 net negative, 0.5–0.65 break-even (decided on
P99 under load), > 0.65 likely gain; per-request P10 < 0.5 in a temperature bucket
means a material share of traffic is hurt; median temperature > 0.7 leave off,
≤ 0.5 a good fit; target > 70 % of device memory and draft > 15 % of usable memory
squeeze the KV cache; a TTFT-bound SLO gains nothing (speculation speeds up TPOT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pydantic import BaseModel

from specwise.stats import Estimate

ACCEPT_OFF, ACCEPT_GAIN = 0.5, 0.65
TAIL_P10 = 0.5
TEMP_GOOD, TEMP_OFF = 0.5, 0.7
TEMP_SPREAD = 0.3            # wider than this between the mix's temperatures: not homogeneous
TARGET_SHARE, DRAFT_SHARE = 0.70, 0.15
KV_FULL = 0.9                # KV-cache usage at or above this is a squeeze
P99_WORSE = 0.95             # a P99 speedup below this is a P99 regression (5 % worse)
QUANT_DROP = 0.05            # acceptance drop between two candidates that signals a step back


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"


class Decision(str, Enum):
    ENABLE = "ENABLE"
    ENABLE_WITH_LIMIT = "ENABLE_WITH_LIMIT"
    DISABLE = "DISABLE"
    INCONCLUSIVE = "INCONCLUSIVE"


class Rule(BaseModel):
    name: str
    status: Status
    detail: str
    blocking: bool = True          # a FAIL leaves speculation off; False: advice only
    values: dict[str, float | str | None] = {}


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
    advice: list[str] = []


@dataclass(frozen=True)
class LoadEvidence:
    """Baseline vs candidate at one load level. Speedups are baseline / candidate (> 1: candidate faster)."""

    load: float
    tpot_speedup: Estimate                 # of P50 TPOT
    tpot_p99_speedup: Estimate | None = None
    requests: int = 0                      # per arm (the smaller)
    batch: float | None = None             # most requests the candidate ran at once here (server metric)
    candidate: dict[str, float] = field(default_factory=dict)   # e.g. {"p99_tpot": ms, "p99_ttft": ms}
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
    load_unit: Literal["concurrency", "rate"] = "concurrency"
    acceptance: float | None = None            # server counters over the measured windows
    bucket_p10: dict[float, float] = field(default_factory=dict)     # per-request acceptance P10 by temperature
    bucket_share: dict[float, float] = field(default_factory=dict)   # share of requests by temperature
    temperatures: Sequence[tuple[float, float]] = ()                 # the workload's mix (temperature, weight)
    slo_ms: dict[str, float] = field(default_factory=dict)           # e.g. {"p99_tpot": 50}
    primary_slo: Literal["tpot", "ttft", "e2e", "throughput"] = "tpot"
    monitoring: bool | None = None
    target_share: float | None = None          # target weights / device memory
    draft_share: float | None = None           # draft weights / usable memory
    control: Control | None = None
    k: int | None = None
    max_batch: int = 256                       # the server's max_num_seqs, for the limit's schedule


# ------------------------------------------------------------------------------------------- helpers

def median_temperature(mix: Sequence[tuple[float, float]]) -> float | None:
    if not mix:
        return None
    total, acc = sum(w for _, w in mix), 0.0
    for t, w in sorted(mix):
        acc += w
        if acc >= total / 2:
            return t
    return sorted(mix)[-1][0]


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
    """The load where the P50 TPOT speedup crosses 1, interpolated on log(load)."""
    pts = sorted((e.load, e.tpot_speedup.value) for e in loads)
    for (l0, s0), (l1, s1) in zip(pts, pts[1:]):
        if (s0 - 1) * (s1 - 1) < 0 and l0 > 0 and l1 > 0:
            f = (s0 - 1) / (s0 - s1)
            return math.exp(math.log(l0) + f * (math.log(l1) - math.log(l0)))
    return None


def _fmt(x: float | None, d: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


# --------------------------------------------------------------------------------------------- rules

def rule_acceptance(ev: Evidence) -> Rule:
    a = ev.acceptance
    if a is None:
        return Rule(name="acceptance", status=Status.UNKNOWN,
                    detail="no acceptance measured (the server exported no speculative-decoding counters)")
    vals: dict[str, float | str | None] = {"acceptance": a}
    if a < ACCEPT_OFF:
        return Rule(name="acceptance", status=Status.FAIL, values=vals,
                    detail=f"acceptance {a:.2f} < {ACCEPT_OFF}: net negative at these temperatures")
    if a > ACCEPT_GAIN:
        return Rule(name="acceptance", status=Status.PASS, values=vals,
                    detail=f"acceptance {a:.2f} > {ACCEPT_GAIN}: likely a real gain")
    # Break-even zone: decided on P99 latency under the measured loads.
    worse = [e for e in ev.loads if e.tpot_p99_speedup is not None and e.tpot_p99_speedup.value < P99_WORSE]
    if worse:
        e = worse[0]
        return Rule(name="acceptance", status=Status.FAIL, values=vals | {"load": e.load},
                    detail=f"acceptance {a:.2f} in the break-even zone ({ACCEPT_OFF}–{ACCEPT_GAIN}) and P99 TPOT "
                           f"{1 / e.tpot_p99_speedup.value:.2f}× the baseline's at {ev.load_unit} {e.load:g}")
    return Rule(name="acceptance", status=Status.PASS, values=vals,
                detail=f"acceptance {a:.2f} in the break-even zone ({ACCEPT_OFF}–{ACCEPT_GAIN}); P99 TPOT no worse "
                       "than the baseline's at the measured loads")


def rule_tail(ev: Evidence) -> Rule:
    if not ev.bucket_p10:
        return Rule(name="per-request acceptance tail", status=Status.UNKNOWN,
                    detail="no per-request acceptance (needs the server's per-request metrics or k)")
    low = {t: p for t, p in ev.bucket_p10.items() if p < TAIL_P10}
    shown = ", ".join(f"T={t:g}: {p:.2f}" for t, p in sorted(ev.bucket_p10.items()))
    if low:
        share = sum(ev.bucket_share.get(t, 0.0) for t in low)
        return Rule(name="per-request acceptance tail", status=Status.FAIL, values={"hurt_share": share},
                    detail=f"P10 per-request acceptance < {TAIL_P10} in {len(low)} temperature bucket(s) ({shown}); "
                           f"{share:.0%} of requests are in them — the aggregate hides traffic that is hurt")
    return Rule(name="per-request acceptance tail", status=Status.PASS,
                detail=f"P10 per-request acceptance ≥ {TAIL_P10} in every temperature bucket ({shown})")


def rule_temperature(ev: Evidence) -> Rule:
    med = median_temperature(ev.temperatures)
    if med is None:
        return Rule(name="temperature", status=Status.UNKNOWN, detail="no temperature mix given")
    temps = [t for t, w in ev.temperatures if w > 0]
    spread = max(temps) - min(temps)
    vals: dict[str, float | str | None] = {"median": med, "spread": spread}
    if med > TEMP_OFF:
        return Rule(name="temperature", status=Status.FAIL, values=vals,
                    detail=f"median temperature {med:g} > {TEMP_OFF}: acceptance falls too far")
    if spread > TEMP_SPREAD:
        return Rule(name="temperature", status=Status.FAIL, values=vals,
                    detail=f"temperatures vary widely ({min(temps):g}–{max(temps):g}): low-acceptance requests "
                           "add tail latency for everyone in the batch")
    if med <= TEMP_GOOD:
        return Rule(name="temperature", status=Status.PASS, values=vals,
                    detail=f"homogeneous temperatures, median {med:g} ≤ {TEMP_GOOD}")
    return Rule(name="temperature", status=Status.UNKNOWN, values=vals,
                detail=f"median temperature {med:g} between {TEMP_GOOD} and {TEMP_OFF}: decided by acceptance")


def rule_divergence(ev: Evidence) -> Rule:
    div = [e for e in ev.loads if e.tpot_p99_speedup is not None
           and e.tpot_speedup.value > 1 and e.tpot_p99_speedup.value < P99_WORSE]
    if not any(e.tpot_p99_speedup is not None for e in ev.loads):
        return Rule(name="P50–P99 divergence", status=Status.UNKNOWN, detail="no P99 TPOT comparison")
    if not div:
        return Rule(name="P50–P99 divergence", status=Status.PASS,
                    detail="no load where P50 TPOT improves while P99 TPOT regresses")
    e = div[0]
    assert e.tpot_p99_speedup is not None
    base = (f"at {ev.load_unit} {e.load:g} P50 TPOT is {e.tpot_speedup.value:.2f}× faster but P99 TPOT "
            f"{1 / e.tpot_p99_speedup.value:.2f}× slower")
    vals: dict[str, float | str | None] = {"load": e.load, "p50_speedup": e.tpot_speedup.value,
                                           "p99_speedup": e.tpot_p99_speedup.value}
    c = ev.control
    if c is not None and c.homogeneous:
        return Rule(name="P50–P99 divergence", status=Status.FAIL, values=vals | {"diagnosis": "speculative decoding"},
                    detail=f"{base}, on a workload that is already homogeneous in temperature: a "
                           "speculative-decoding problem, not the mix")
    if c is None or c.tpot_p99_speedup is None:
        how = c.prescription if c and c.prescription else "rerun the same load with one low temperature"
        return Rule(name="P50–P99 divergence", status=Status.FAIL, values=vals | {"diagnosis": "unconfirmed"},
                    detail=f"{base}; control not run — {how}")
    if c.tpot_p99_speedup.value >= P99_WORSE:
        return Rule(name="P50–P99 divergence", status=Status.FAIL,
                    values=vals | {"diagnosis": "mixed workload", "control_p99_speedup": c.tpot_p99_speedup.value},
                    detail=f"{base}; the homogeneous low-temperature control tightens P99 "
                           f"({c.tpot_p99_speedup.value:.2f}× the baseline's speed): a mixed-workload problem — "
                           "speculate only for low-temperature traffic (a separate deployment)")
    return Rule(name="P50–P99 divergence", status=Status.FAIL,
                values=vals | {"diagnosis": "speculative decoding", "control_p99_speedup": c.tpot_p99_speedup.value},
                detail=f"{base}; the homogeneous control regresses too ({c.tpot_p99_speedup.value:.2f}×): a "
                       "speculative-decoding problem, not the mix")


def rule_memory(ev: Evidence) -> Rule:
    if ev.target_share is None and ev.draft_share is None:
        return Rule(name="memory headroom", status=Status.UNKNOWN,
                    detail="device memory unknown (give the experiment a memory section or a plan)")
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
                    detail=", ".join(shown) + " — " + "; ".join(problems))
    return Rule(name="memory headroom", status=Status.PASS, values=vals, detail=", ".join(shown))


def rule_squeeze(ev: Evidence) -> Rule:
    seen = [e for e in ev.loads if e.preemptions is not None or e.kv_usage_max is not None]
    if not seen:
        return Rule(name="KV-cache squeeze", status=Status.UNKNOWN, detail="no KV-cache metrics from the server")
    bad = [e for e in seen if (e.preemptions or 0) > (e.baseline_preemptions or 0)
           or (e.kv_usage_max is not None and e.kv_usage_max >= KV_FULL)]
    if bad:
        e = bad[0]
        return Rule(name="KV-cache squeeze", status=Status.FAIL,
                    values={"load": e.load, "preemptions": e.preemptions, "kv_usage_max": e.kv_usage_max},
                    detail=f"at {ev.load_unit} {e.load:g} the candidate's KV cache peaked at "
                           f"{_fmt(e.kv_usage_max and 100 * e.kv_usage_max, 0)} % with {e.preemptions or 0:g} "
                           f"preemptions (baseline {e.baseline_preemptions or 0:g})")
    peak = max((e.kv_usage_max or 0.0) for e in seen)
    return Rule(name="KV-cache squeeze", status=Status.PASS, values={"kv_usage_max": peak},
                detail=f"KV cache peaked at {100 * peak:.0f} %, no extra preemptions")


def rule_slo_kind(ev: Evidence) -> Rule:
    if ev.primary_slo == "ttft":
        return Rule(name="SLO kind", status=Status.FAIL, values={"primary_slo": "ttft"},
                    detail="the primary SLO is TTFT: speculation speeds up TPOT, not the first token "
                           "(the draft's prefill can even slow it)")
    return Rule(name="SLO kind", status=Status.PASS, values={"primary_slo": ev.primary_slo},
                detail=f"the primary SLO is {ev.primary_slo.upper()}, which speculation can improve")


def rule_slo(ev: Evidence) -> Rule:
    if not ev.slo_ms:
        return Rule(name="SLOs", status=Status.UNKNOWN, detail="no SLO given")
    broken = []
    for e in ev.loads:
        for name, limit in ev.slo_ms.items():
            c, b = e.candidate.get(name), e.baseline.get(name)
            if c is not None and c > limit and (b is None or b <= limit):
                broken.append(f"{name} {c:.0f} ms > {limit:g} ms at {ev.load_unit} {e.load:g} (baseline {_fmt(b, 0)})")
    if broken:
        return Rule(name="SLOs", status=Status.FAIL, detail="the candidate breaks an SLO the baseline meets: "
                    + "; ".join(broken))
    return Rule(name="SLOs", status=Status.PASS, detail="the candidate meets every SLO the baseline meets")


def rule_monitoring(ev: Evidence) -> Rule:
    if ev.monitoring:
        return Rule(name="acceptance monitoring", status=Status.PASS, blocking=False,
                    detail="acceptance is monitored in production")
    state = "no acceptance monitoring in place" if ev.monitoring is False else \
        "not stated whether acceptance is monitored (monitoring: in the experiment file)"
    return Rule(name="acceptance monitoring", status=Status.FAIL if ev.monitoring is False else Status.UNKNOWN,
                blocking=False, detail=f"{state}: acceptance drifts with traffic — install `specwise rules` alerts "
                "before relying on speculation")


RULES = (rule_acceptance, rule_tail, rule_temperature, rule_divergence, rule_memory, rule_squeeze,
         rule_slo_kind, rule_slo, rule_monitoring)


# ------------------------------------------------------------------------------------------- verdict

def limit_setting(batch: int, k: int | None, max_batch: int) -> str:
    k_text = str(k) if k else "K"
    schedule = f"[[1, {batch}, {k_text}], [{batch + 1}, {max(max_batch, batch + 1)}, 0]]"
    return f'"num_speculative_tokens_per_batch_size": {schedule} in --speculative-config (vLLM ≥ 0.32)'


def decide(ev: Evidence) -> Verdict:
    rules = [rule(ev) for rule in RULES]
    advice = [r.detail for r in rules if not r.blocking and r.status != Status.PASS]
    blocking = [r for r in rules if r.blocking and r.status == Status.FAIL]
    loads = sorted(ev.loads, key=lambda e: e.load)
    outcome = [wins(e) for e in loads]
    speed = ", ".join(f"{e.load:g}: {e.tpot_speedup.value:.2f}× [{_fmt(e.tpot_speedup.low)}–"
                      f"{_fmt(e.tpot_speedup.high)}]" for e in loads)
    speed_rule = Rule(name="TPOT speedup", status=Status.UNKNOWN, detail=f"by {ev.load_unit}: {speed or 'no data'}")
    rules.append(speed_rule)

    def verdict(decision: Decision, headline: str, **kw: object) -> Verdict:
        return Verdict(decision=decision, headline=headline, rules=rules, advice=advice, **kw)  # type: ignore[arg-type]

    if not loads:
        return verdict(Decision.INCONCLUSIVE, "no load level was measured")
    won = 0
    while won < len(outcome) and outcome[won] is True:
        won += 1
    last = loads[won - 1] if won else None
    if won == len(outcome):
        speed_rule.status = Status.PASS
    elif all(o is False for o in outcome):
        speed_rule.status = Status.FAIL
    elif last is not None:
        # Proven faster up to a load, slower or not proven beyond.
        speed_rule.status = Status.PASS
        beyond = "slower" if all(o is False for o in outcome[won:]) else "not proven faster"
        speed_rule.detail += f"; faster up to {ev.load_unit} {last.load:g}, {beyond} beyond"
    cross = crossover(loads)
    if cross is not None:
        speed_rule.values = {"crossover": cross}
        speed_rule.detail += f" (crossover ≈ {cross:.3g})"
    undecided = [e for e, o in zip(loads, outcome) if o is None]
    need = [n for n in (requests_to_decide(e) for e in undecided) if n]
    more = max(need) if need else None

    if blocking:
        return verdict(Decision.DISABLE, "leave speculation off: " + "; ".join(r.name for r in blocking) + " failed")
    if won == len(outcome):
        return verdict(Decision.ENABLE, f"enable: TPOT faster at every measured {ev.load_unit}")
    if speed_rule.status == Status.FAIL:
        return verdict(Decision.DISABLE, f"leave speculation off: TPOT slower at every measured {ev.load_unit}")
    if last is not None:
        # Speculate only where it was proven faster. Under a concurrency load the batch is at most the
        # concurrency; under a rate, what the server ran.
        batch = int(last.load) if ev.load_unit == "concurrency" else int(last.batch or 0)
        if batch < 1:
            return verdict(Decision.INCONCLUSIVE, "faster at low load, not beyond, but the server reported no batch "
                           "size to set the limit by")
        return verdict(Decision.ENABLE_WITH_LIMIT,
                       f"enable up to {ev.load_unit} {last.load:g} (batch ≤ {batch}), off above",
                       limit=Limit(load=last.load, unit=ev.load_unit, batch=batch,
                                   vllm_setting=limit_setting(batch, ev.k, ev.max_batch)), more_requests=more)
    return verdict(Decision.INCONCLUSIVE,
                   "the TPOT speedup's confidence interval straddles 1"
                   + (f": about {more} requests per arm and load would decide it" if more else
                      ": the effect is below what more requests can resolve"),
                   more_requests=more)


def acceptance_drop(name_a: str, acc_a: float | None, name_b: str, acc_b: float | None) -> Rule:
    """Two candidates (e.g. quantized vs not): a drop over QUANT_DROP is the signal to step back."""
    if acc_a is None or acc_b is None:
        return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.UNKNOWN, blocking=False,
                    detail="acceptance not measured for both")
    drop = acc_a - acc_b
    vals: dict[str, float | str | None] = {name_a: acc_a, name_b: acc_b, "drop": drop}
    if abs(drop) > QUANT_DROP:
        worse, better = (name_b, name_a) if drop > 0 else (name_a, name_b)
        return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.FAIL, blocking=False, values=vals,
                    detail=f"{worse} accepts {100 * abs(drop):.1f} points less than {better} "
                           f"({min(acc_a, acc_b):.2f} vs {max(acc_a, acc_b):.2f}) — over {100 * QUANT_DROP:.0f} "
                           f"points: if {worse} is {better} quantized, step back")
    return Rule(name=f"acceptance {name_a} vs {name_b}", status=Status.PASS, blocking=False, values=vals,
                detail=f"acceptance within {100 * QUANT_DROP:.0f} points ({acc_a:.2f} vs {acc_b:.2f})")
