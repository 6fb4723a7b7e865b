"""The decision (pure): the measurement decides, load by load and traffic class by traffic class; the
rules of thumb are set beside it.

Invalid data (an arm failing or cut short more than the other, unfinished cells) decides first:
DISABLE when the candidate is at fault, INCONCLUSIVE otherwise. Changed outputs at T = 0 are
DISABLE whatever the speed. Then each load is a win (P50 TPOT CI above the noise floor, and no
P99 regression, broken SLO, squeezed KV cache or — under a TTFT SLO — slower first token), a
loss, or undecided: winning from the lowest load up to every load is ENABLE, up to some load
ENABLE_WITH_LIMIT (with the vLLM setting), losing at the lowest load DISABLE, undecided there
INCONCLUSIVE with the requests that would decide it. A temperature bucket that loses while
another wins turns the answer into "enable for that traffic only". Untested production
temperatures make it INCONCLUSIVE for them; missing monitoring is a condition on any ENABLE.
"""

from __future__ import annotations

from specwise.check import Status
from specwise.plan.command import K_PER_BATCH_SIZE_SINCE
from specwise.thresholds import NON_INFERIORITY
from specwise.verdict.evidence import Decision, Evidence, Limit, LoadEvidence, Role, Rule, Verdict
from specwise.verdict.outcome import (LoadOutcome, Outcome, batch_caps, fmt_estimate, load_outcome, p99_regresses,
                                      within_noise,
                                      rule_coverage, rule_outputs, rule_validity, speed_outcome, untested, won_prefix)
from specwise.verdict.rules import (break_even_acceptance, crossover, requests_to_decide, rule_acceptance,
                                    rule_divergence, rule_memory, rule_monitoring, rule_slo, rule_slo_kind,
                                    rule_squeeze, rule_tail, rule_temperature)


def limit_setting(batch: int, k: int | None, max_batch: int) -> str:
    k_text = str(k) if k else "K"
    schedule = f"[[1, {batch}, {k_text}], [{batch + 1}, {max(max_batch, batch + 1)}, 0]]"
    return (f'"num_speculative_tokens_per_batch_size": {schedule} in --speculative-config '
            f"(vLLM ≥ {K_PER_BATCH_SIZE_SINCE})")


def speed_rule(ev: Evidence, outcomes: list[LoadOutcome], won: int, cross: float | None) -> Rule:
    """The measured outcome, load by load (`won`: the loads won from the lowest up; `cross`: the crossover)."""
    shown = "; ".join(f"{o.load:g}: {o.why} → {o.outcome.value}" for o in outcomes)
    status = (Status.PASS if outcomes and won else Status.FAIL if outcomes and outcomes[0].outcome is Outcome.LOSS
              else Status.UNKNOWN)
    rule = Rule(name="measured speedup", status=status, reason=f"by {ev.load_unit}: {shown or 'no data'}")
    if 0 < won < len(outcomes):
        rule.reason += f"; wins up to {ev.load_unit} {outcomes[won - 1].load:g}"
    if cross is not None:
        rule.values = {"crossover": cross}
        rule.reason += f" (crossover ≈ {cross:.3g})"
    return rule


def bucket_outcomes(ev: Evidence, loads: list[LoadEvidence]) -> dict[float, list[Outcome]]:
    """Per temperature, load by load: its own P50 and P99 TPOT speedups decide (the tail of a mixed batch
    belongs to its slow class), under the caps that hold for the whole batch."""
    temps = sorted({b.temperature for e in loads for b in e.buckets})
    capped = [bool(batch_caps(e, ev)) for e in loads]
    out: dict[float, list[Outcome]] = {}
    for t in temps:
        out[t] = []
        for e, cap in zip(loads, capped):
            bucket = next((b for b in e.buckets if b.temperature == t), None)
            if bucket is None or cap or p99_regresses(bucket):
                out[t].append(Outcome.LOSS if bucket is not None else Outcome.UNDECIDED)
            else:
                out[t].append(speed_outcome(bucket.tpot_speedup))
    return out


def traffic_rule(ev: Evidence, loads: list[LoadEvidence]) -> Rule:
    name = "speedup by temperature"
    rows = [f"T={b.temperature:g} at {e.load:g}: {fmt_estimate(b.tpot_speedup)}" for e in loads for b in e.buckets
            if b.tpot_speedup is not None]
    if len({b.temperature for e in loads for b in e.buckets}) < 2:
        return Rule(name=name, status=Status.UNKNOWN, blocking=False, reason="one temperature: the load's speedup "
                    "is the traffic's" + (f" ({'; '.join(rows)})" if rows else ""))
    hurt = [b for e in loads for b in e.buckets if speed_outcome(b.tpot_speedup) is Outcome.LOSS]
    if hurt:
        return Rule(name=name, status=Status.FAIL, reason="the same prompts per temperature, A vs B: "
                    + "; ".join(rows) + f" — T={', '.join(f'{t:g}' for t in sorted({b.temperature for b in hurt}))} "
                    "is slower with speculation")
    return Rule(name=name, status=Status.PASS, reason="the same prompts per temperature, A vs B: " + "; ".join(rows))


def _limit(ev: Evidence, e: LoadEvidence, temperatures: list[float] | None = None) -> Limit | None:
    """Speculate only where it was proven to win. Under a concurrency load the batch is at most the
    concurrency; under a rate, what the server ran."""
    batch = int(e.load) if ev.load_unit == "concurrency" else int(e.batch or 0)
    if batch < 1:
        return None
    return Limit(load=e.load, unit=ev.load_unit, batch=batch, vllm_setting=limit_setting(batch, ev.k, ev.max_batch),
                 temperatures=temperatures)


def _measured(ev: Evidence, loads: list[LoadEvidence], outcomes: list[LoadOutcome],
              won: int) -> tuple[Decision, str, dict]:
    """The decision the measurement makes, its headline and the verdict's extra fields."""
    by_temp = bucket_outcomes(ev, loads)
    winning = [t for t, o in by_temp.items() if o and o[0] is Outcome.WIN]
    hurt = [t for t, o in by_temp.items() if o and o[0] is Outcome.LOSS]
    unit = ev.load_unit
    # A proven class inside a mix that is not proven as a whole (or that holds a losing class) is the answer
    # for that class alone: routing only it to speculation is safe whatever the others turn out to be.
    if winning and len(winning) < len(by_temp) and (hurt or not won):
        upto = min(won_prefix(by_temp[t]) for t in winning)
        limit = _limit(ev, loads[upto - 1], winning)
        temps = ", ".join(f"{t:g}" for t in winning)
        scope = "at every measured load" if upto == len(loads) else f"up to {unit} {loads[upto - 1].load:g}"
        undecided = ", ".join(f"{t:g}" for t in by_temp if t not in winning and t not in hurt)
        route = (f"; route T = {', '.join(f'{t:g}' for t in hurt)} to a deployment without speculation (slower "
                 "there)" if hurt else "")
        return (Decision.ENABLE_WITH_LIMIT, f"enable for T = {temps} traffic only, {scope}{route}"
                + (f"; T = {undecided} not proven faster (more requests would tell)" if undecided else ""),
                {"limit": limit})
    probable = [o for o in outcomes[:won] if o.outcome is Outcome.PROBABLE]
    hedge = ("; " + "; ".join(f"at {o.load:g} probably ({o.why}: not proven faster, but not more than "
                              f"{1 - NON_INFERIORITY:.0%} slower)" for o in probable)) if probable else ""
    if won == len(outcomes):
        # A class whose own few requests neither win nor rule out a material loss rides on the mix's win:
        # the headline says so rather than let "faster" read as proven for it.
        unproven = [t for t, o in by_temp.items() if o and o[0] is Outcome.UNDECIDED]
        if unproven:
            hedge += (f"; T = {', '.join(f'{t:g}' for t in unproven)} not proven on its own (more requests "
                      "would tell)")
        if not probable:
            return Decision.ENABLE, f"enable: faster at every measured {unit}{hedge}", {}
        proven = ", ".join(f"{o.load:g}" for o in outcomes if o.outcome is Outcome.WIN)
        return Decision.ENABLE, f"enable: faster at {unit} {proven}{hedge}", {}
    if won:
        last, first_lost = outcomes[won - 1], outcomes[won]
        limit = _limit(ev, loads[won - 1])
        if limit is None:
            return (Decision.INCONCLUSIVE, "faster at low load, not beyond, but the server reported no batch size "
                    "to set the limit by", {})
        beyond = "loses" if first_lost.outcome is Outcome.LOSS else "is not proven faster"
        return (Decision.ENABLE_WITH_LIMIT, f"enable up to {unit} {last.load:g} (batch ≤ {limit.batch}), off above: "
                f"at {first_lost.load:g} it {beyond} ({first_lost.why}){hedge}", {"limit": limit})
    if outcomes[0].outcome is Outcome.LOSS:
        return Decision.DISABLE, f"leave speculation off: at {unit} {outcomes[0].load:g}, {outcomes[0].why}", {}
    need = [n for n in (requests_to_decide(e) for e, o in zip(loads, outcomes)
                                                   if o.outcome in (Outcome.UNDECIDED, Outcome.PROBABLE))
            if n]
    more = max(need) if need else None
    return (Decision.INCONCLUSIVE, "the TPOT speedup's confidence interval does not clear the noise floor"
            + (f": about {more} requests per arm and load would decide it" if more else
               ": the effect is below what more requests can resolve"), {"more_requests": more})


def decide(ev: Evidence) -> Verdict:
    loads = sorted(ev.loads, key=lambda e: e.load)
    outcomes = [load_outcome(e, ev) for e in loads]
    won, cross = won_prefix([o.outcome for o in outcomes]), crossover(loads)
    validity, invalid, timing_only = rule_validity(ev)
    outputs = rule_outputs(ev)
    coverage = rule_coverage(ev)
    monitoring = rule_monitoring(ev)
    first = outcomes[0] if outcomes else None
    break_even = {e.load: be for e in loads if (be := break_even_acceptance(e, ev.k)) is not None}
    rules = [validity, outputs, speed_rule(ev, outcomes, won, cross), traffic_rule(ev, loads), coverage,
             rule_squeeze(ev), rule_slo(ev), rule_acceptance(ev, first), rule_tail(ev, loads[0] if loads else None),
             rule_temperature(ev, first), rule_divergence(ev), rule_slo_kind(ev), rule_memory(ev), monitoring]
    advice = [r.reason for r in rules if r.role in (Role.RISK, Role.CONDITION) and r.status not in (Status.PASS,
                                                                                                     Status.UNKNOWN)]

    def verdict(decision: Decision, headline: str, **kw: object) -> Verdict:
        conditions = [monitoring.reason] if decision.allows and monitoring.status is not Status.PASS else []
        if conditions:
            headline += " — once acceptance alerts are in place"
        return Verdict(decision=decision, headline=headline, rules=rules, advice=advice,  # type: ignore[arg-type]
                       conditions=conditions, crossover=cross, break_even=break_even,
                       by_load={o.load: o.outcome.value for o in outcomes},
                       why_by_load={o.load: o.why for o in outcomes},
                       within_noise=[e.load for e in loads if within_noise(e, ev)], **kw)

    if not loads:
        return verdict(Decision.INCONCLUSIVE, "no load level was measured")
    # Changed outputs reject a candidate whatever its speed: a comparison invalid only for its timings (a
    # generator-bound arm) still compared every output.
    if outputs.status is Status.FAIL and (invalid is None or timing_only):
        return verdict(Decision.DISABLE, "leave speculation off: " + outputs.reason)
    if invalid is not None:
        return verdict(invalid, "the comparison is not valid: " + validity.reason)
    decision, headline, extra = _measured(ev, loads, outcomes, won)
    if decision.allows and coverage.status is Status.FAIL:
        shown = ", ".join(f"T={t:g}" for t in sorted(untested(ev)))
        return verdict(Decision.INCONCLUSIVE, f"on the tested temperatures: {headline}; untested in production: "
                       f"{shown} — add them to the workload", **extra)
    return verdict(decision, headline, **extra)
