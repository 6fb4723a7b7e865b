"""The search of `tune` (pure): what the runs measured, the surface predicted from them, the runs still worth
making within the budget, and the k chosen at each load — from measurements only.

A run is one (k, load) cell against the baseline's cell at that load. The first round measures the baseline
and the largest k at every load: the largest k's per-position acceptance gives every smaller k's tokens per
step, and the two k values' step times fit the step cost. Each next round measures the k that is predicted
best, or could be, at the most loads where it has not run; the search stops when no unmeasured k can beat
the best measured one at any load, or when the budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import geometric_mean
from typing import Literal

from specwise.analysis.compare import LoadComparison
from specwise.analysis.summary import generator_bound
from specwise.thresholds import PREDICTION_FLOOR, SPEEDUP_NOISE
from specwise.tune.predict import Prediction, StepFit, StepPoint, fit_step_cost, predict, tokens_per_step
from specwise.verdict.outcome import p99_regression

Objective = Literal["tpot", "throughput", "goodput"]


@dataclass(frozen=True)
class Measured:
    """One run's outcome against the baseline at its load."""

    k: int
    load: float                      # the load level (closed-loop concurrency)
    value: float | None              # the objective, candidate over baseline (> 1: better)
    speedup: float | None            # P50 TPOT, baseline / candidate
    step_ms: float | None            # a step's time: P50 TPOT × tokens per step
    baseline_step_ms: float | None
    tokens_per_step: float | None
    per_position: tuple[float, ...]
    breaks: tuple[str, ...]          # SLOs the baseline meets at this load and this run does not, a P99 TPOT
                                     # regression (the verdict's: a loss whatever the P50), a generator-bound arm
    batch: float | None = None       # the batch this run really held (sequences decoding at once, on average)
    baseline_batch: float | None = None

    @property
    def eligible(self) -> bool:
        return self.value is not None and not self.breaks


def objective_value(c: LoadComparison, objective: Objective) -> float | None:
    base, cand = c.baseline, c.candidate
    if objective == "tpot":
        return c.tpot_p50_speedup.value if c.tpot_p50_speedup else None
    if objective == "throughput":
        return c.throughput_ratio
    good_b = (base.goodput or 0.0) * base.output_tok_s
    return (cand.goodput or 0.0) * cand.output_tok_s / good_b if good_b > 0 else None


def measured(k: int, c: LoadComparison, objective: Objective, slo_ms: dict[str, float]) -> Measured:
    """`slo_ms` by the verdict's names ({"p99_tpot": ms, …})."""
    base, cand = c.baseline, c.candidate
    window = cand.server
    e = window.mean_acceptance_length if window else None
    positions = tuple(window.per_position[i] for i in sorted(window.per_position)) if window else ()
    b99, c99 = base.p99_ms(), cand.p99_ms()
    breaks = tuple(name for name, limit in slo_ms.items() if (m := name.removeprefix("p99_")) in b99 and m in c99
                   and b99[m] <= limit < c99[m])  # type: ignore[index]
    if p99_regression(c.tpot_p99_speedup):
        breaks += ("P99 TPOT regression",)
    # A figure measured while the client was the bottleneck is the client's, not the server's: never a pick.
    if any(generator_bound(arm.client_bound, arm.requests) for arm in (base, cand)):
        breaks += ("generator-bound",)
    tpot = cand.tpot_p50.value if cand.tpot_p50 else None
    return Measured(k=k, load=c.load, value=objective_value(c, objective),
                    speedup=c.tpot_p50_speedup.value if c.tpot_p50_speedup else None,
                    step_ms=tpot * e if tpot is not None and e else None,
                    baseline_step_ms=base.tpot_p50.value if base.tpot_p50 else None,
                    tokens_per_step=e, per_position=positions, breaks=breaks,
                    batch=cand.decoding_batch, baseline_batch=base.decoding_batch)


def acceptance(runs: Sequence[Measured], load: float, k: int) -> tuple[float, ...] | None:
    """Per-position acceptance known to k positions at `load`: from the largest k run there, else from the
    nearest load's (acceptance depends on the traffic, hardly on the load)."""
    known = sorted((r for r in runs if len(r.per_position) >= k),
                   key=lambda r: (abs(r.load - load), -r.k))
    return known[0].per_position if known else None


def step_points(runs: Sequence[Measured]) -> list[StepPoint]:
    """Each run's step time at the batch it really held (the load level where that is unknown)."""
    points = {(0, r.load): StepPoint(0, r.baseline_batch or r.load, r.baseline_step_ms) for r in runs
              if r.baseline_step_ms}
    points.update({(r.k, r.load): StepPoint(r.k, r.batch or r.load, r.step_ms) for r in runs if r.step_ms})
    return list(points.values())


def batch_at(runs: Sequence[Measured], load: float) -> float:
    """Where a load level sits on the batch axis: the batch the baseline held there (a closed loop of N
    requests holds fewer than N on average: they start and end), else the level itself."""
    held = [r.baseline_batch for r in runs if r.load == load and r.baseline_batch]
    return sum(held) / len(held) if held else load


@dataclass(frozen=True)
class Cell:
    """One (k, load) of the surface: the prediction, and the measurement where one was made."""

    k: int
    load: float
    predicted: float | None
    low: float | None
    high: float | None
    measured: Measured | None


def fit(runs: Sequence[Measured], seed: int = 0) -> StepFit | None:
    try:
        return fit_step_cost(step_points(runs), seed)
    except ValueError:
        return None


def surface(runs: Sequence[Measured], ks: Sequence[int], loads: Sequence[float], seed: int = 0) -> list[Cell]:
    """Every (k, load): predicted (with its interval, never narrower than PREDICTION_FLOOR) and measured."""
    by_key = {(r.k, r.load): r for r in runs}
    step_fit = fit(runs, seed)
    cells = []
    for load in loads:
        for k in ks:
            p: Prediction | None = None
            accept = acceptance(runs, load, k)
            if step_fit is not None and accept is not None:
                p = predict(step_fit, accept, [k], [batch_at(runs, load)])[0]
            lo = min(p.low, p.speedup * (1 - PREDICTION_FLOOR)) if p else None
            hi = max(p.high, p.speedup * (1 + PREDICTION_FLOOR)) if p else None
            cells.append(Cell(k, load, p.speedup if p else None, lo, hi, by_key.get((k, load))))
    return cells


def best_measured(cells: Sequence[Cell], load: float) -> Measured | None:
    here = [c.measured for c in cells if c.load == load and c.measured and c.measured.eligible]
    return max(here, key=lambda m: m.value or 0.0) if here else None


def _bar(cells: Sequence[Cell], load: float) -> float:
    """What an unmeasured k must beat at `load`: the best measured one, and at least the baseline."""
    here = [c for c in cells if c.load == load]
    best = best_measured(cells, load)
    return max(1.0, best.speedup if best and best.speedup else max((c.low or 0.0 for c in here), default=0.0))


def contenders(cells: Sequence[Cell], load: float) -> list[Cell]:
    """The unmeasured k values at `load` that could beat the best measured one (or, with none measured, the
    predicted best): their predicted interval reaches it. Best predicted first."""
    bar = _bar(cells, load)
    out = [c for c in cells if c.load == load and c.measured is None and c.high is not None and c.high >= bar]
    return sorted(out, key=lambda c: -(c.predicted or 0.0))


def next_runs(cells: Sequence[Cell], budget: int) -> list[tuple[int, float]]:
    """The next round, at most `budget` runs: one k (a launched server restarts for each k), the one whose
    contending loads promise the most — the sum over them of its predicted gain over what each load has — run
    at those loads, the most promising first."""
    if budget <= 0:
        return []
    scored: dict[int, list[tuple[float, float]]] = {}   # k → [(gain, load)]
    for load in sorted({c.load for c in cells}):
        bar = _bar(cells, load)
        for c in contenders(cells, load):
            # A contender predicted below the bar still might beat it (its interval says so): a small score.
            scored.setdefault(c.k, []).append((max((c.predicted or 0.0) - bar, 0.0) + 1e-3, load))
    if not scored:
        return []
    k, wanted = max(scored.items(), key=lambda kv: (sum(g for g, _ in kv[1]), -kv[0]))
    return sorted((k, load) for _gain, load in sorted(wanted, reverse=True)[:budget])


def first_round(ks: Sequence[int], loads: Sequence[float]) -> list[tuple[int, float]]:
    return [(max(ks), load) for load in loads]


def choice(cells: Sequence[Cell], loads: Sequence[float]) -> dict[float, Measured | None]:
    """At each load, the measured k with the best objective that breaks no SLO the baseline meets and does not
    regress P99; None when none beats the baseline by more than the noise floor (k = 0 there: no drafting)."""
    out: dict[float, Measured | None] = {}
    for load in loads:
        best = best_measured(cells, load)
        out[load] = best if best is not None and (best.value or 0.0) > 1.0 + SPEEDUP_NOISE else None
    return out


def best_static(cells: Sequence[Cell], ks: Sequence[int], loads: Sequence[float]) -> int | None:
    """The single k with the best objective across the loads (geometric mean; measured where measured,
    predicted elsewhere), among those that break no SLO where they were measured; None: no k beats the
    baseline on that mean."""
    scores = {}
    for k in ks:
        values = []
        for load in loads:
            c = next(c for c in cells if c.k == k and c.load == load)
            if c.measured is not None and not c.measured.eligible:
                break
            v = c.measured.value if c.measured else c.predicted
            if v is None or v <= 0:
                break
            values.append(v)
        else:
            scores[k] = geometric_mean(values)
    best = max(scores.items(), key=lambda kv: kv[1], default=None)
    return best[0] if best and best[1] > 1.0 else None


def bands(picks: dict[float, int], step_fit: StepFit | None, runs: Sequence[Measured],
          max_batch: int) -> list[list[int]]:
    """vLLM's [[first, last, k], …] from the k picked at each load, each load placed at the batch it really held
    (`batch_at`): at that batch size its pick; between two, the boundary sits where the prediction says the
    upper one's k starts to beat the lower one's (at the midpoint when there is no prediction); below the first
    and above the last, their picks held (up to `max_batch`)."""
    placed = sorted((batch_at(runs, level), picks[level]) for level in picks)
    per_batch: list[int] = []
    for b in range(1, max_batch + 1):
        exact = [k for at, k in placed if round(at) == b]
        if exact or b <= placed[0][0] or b >= placed[-1][0]:
            per_batch.append(exact[0] if exact else placed[0][1] if b <= placed[0][0] else placed[-1][1])
            continue
        (lower, k_lo), (upper, k_hi) = next((placed[i], placed[i + 1]) for i in range(len(placed) - 1)
                                            if placed[i][0] < b < placed[i + 1][0])
        per_batch.append(k_hi if _predicted_better(k_hi, k_lo, b, step_fit, runs, lower, upper) else k_lo)
    out: list[list[int]] = []
    for b, k in enumerate(per_batch, start=1):
        if out and out[-1][2] == k:
            out[-1][1] = b
        else:
            out.append([b, b, k])
    return out


def _predicted_better(k_new: int, k_old: int, batch: int, step_fit: StepFit | None, runs: Sequence[Measured],
                      lower: float, upper: float) -> bool:
    if k_new == k_old:
        return True
    accept = acceptance(runs, batch, max(k_new, k_old))
    if step_fit is None or accept is None:
        return batch >= (lower + upper) / 2

    def speedup(k: int) -> float:
        return tokens_per_step(accept, k) * step_fit.cost.step_ms(0, batch) / step_fit.cost.step_ms(k, batch) \
            if k else 1.0

    return speedup(k_new) >= speedup(k_old)
