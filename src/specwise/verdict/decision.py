"""The decision: the rules' verdicts combined with the measured TPOT speedup, load by load (pure).

A FAIL of a *blocking* rule leaves speculation off (DISABLE); advice (no monitoring)
never changes the decision. Otherwise the measured TPOT speedup decides, load by load,
from its confidence interval: a win everywhere is ENABLE; wins at low load and losses
above is ENABLE_WITH_LIMIT (the limit and the vLLM setting that applies it); losses
everywhere is DISABLE; an interval that straddles 1 at the lowest load is INCONCLUSIVE,
with the number of requests that would decide it.
"""

from __future__ import annotations

from specwise.check import Status
from specwise.plan.command import K_PER_BATCH_SIZE_SINCE
from specwise.verdict.evidence import Decision, Evidence, Limit, Rule, Verdict
from specwise.verdict.rules import RULES, _fmt, crossover, requests_to_decide, wins


def limit_setting(batch: int, k: int | None, max_batch: int) -> str:
    k_text = str(k) if k else "K"
    schedule = f"[[1, {batch}, {k_text}], [{batch + 1}, {max(max_batch, batch + 1)}, 0]]"
    return (f'"num_speculative_tokens_per_batch_size": {schedule} in --speculative-config '
            f"(vLLM ≥ {K_PER_BATCH_SIZE_SINCE})")


def speed_rule(ev: Evidence) -> tuple[Rule, int]:
    """The measured TPOT speedup as a rule, and how many loads from the lowest up it is proven faster at."""
    loads = sorted(ev.loads, key=lambda e: e.load)
    outcome = [wins(e) for e in loads]
    speed = ", ".join(f"{e.load:g}: {e.tpot_speedup.value:.2f}× [{_fmt(e.tpot_speedup.low)}–"
                      f"{_fmt(e.tpot_speedup.high)}]" for e in loads)
    rule = Rule(name="TPOT speedup", status=Status.UNKNOWN, reason=f"by {ev.load_unit}: {speed or 'no data'}")
    won = 0
    while won < len(outcome) and outcome[won] is True:
        won += 1
    if loads and won == len(outcome):
        rule.status = Status.PASS
    elif loads and all(o is False for o in outcome):
        rule.status = Status.FAIL
    elif won:
        # Proven faster up to a load, slower or not proven beyond.
        rule.status = Status.PASS
        beyond = "slower" if all(o is False for o in outcome[won:]) else "not proven faster"
        rule.reason += f"; faster up to {ev.load_unit} {loads[won - 1].load:g}, {beyond} beyond"
    cross = crossover(loads)
    if cross is not None:
        rule.values = {"crossover": cross}
        rule.reason += f" (crossover ≈ {cross:.3g})"
    return rule, won


def decide(ev: Evidence) -> Verdict:
    rules = [rule(ev) for rule in RULES]
    advice = [r.reason for r in rules if not r.blocking and r.status != Status.PASS]
    blocking = [r for r in rules if r.blocking and r.status == Status.FAIL]
    speed, won = speed_rule(ev)
    rules.append(speed)
    loads = sorted(ev.loads, key=lambda e: e.load)
    need = [n for n in (requests_to_decide(e) for e in loads if wins(e) is None) if n]
    more = max(need) if need else None

    def verdict(decision: Decision, headline: str, **kw: object) -> Verdict:
        return Verdict(decision=decision, headline=headline, rules=rules, advice=advice,  # type: ignore[arg-type]
                       crossover=crossover(loads), **kw)

    if not loads:
        return verdict(Decision.INCONCLUSIVE, "no load level was measured")
    if blocking:
        return verdict(Decision.DISABLE, "leave speculation off: " + "; ".join(r.name for r in blocking) + " failed")
    if won == len(loads):
        return verdict(Decision.ENABLE, f"enable: TPOT faster at every measured {ev.load_unit}")
    if speed.status == Status.FAIL:
        return verdict(Decision.DISABLE, f"leave speculation off: TPOT slower at every measured {ev.load_unit}")
    if won:
        # Speculate only where it was proven faster. Under a concurrency load the batch is at most the
        # concurrency; under a rate, what the server ran.
        last = loads[won - 1]
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
