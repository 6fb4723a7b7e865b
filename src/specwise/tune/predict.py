"""The cheap half of `tune`: predict the whole (k × batch) speedup surface from a few measurements.

Two facts make it cheap. (1) vLLM's per-position counters give, for a run at k_max, the share p_i of steps
whose i-th drafted token was accepted — and a token is accepted only after every earlier one was, so a run
at a smaller k (the draft proposes the same first tokens) accepts the same prefix: tokens per step at k is
1 + p_1 + … + p_k. (2) A step's time has the form of the performance model (`plan.perf`): a verify pass
over batch × (k + 1) tokens plus k draft passes over the batch,

    step(k, b) = fixed + verify_token · b · (k + 1) + k · (draft + draft_token · b),

linear in four non-negative costs, so a least-squares fit over a few measured (k, b) step times (the
baseline is k = 0) gives every other. A bootstrap of that fit gives each prediction an interval, which says
where the prediction is unsure or decides the choice: only there is a run worth its time (`search`). Pure."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 400   # refits of the step-cost model on resampled residuals


def tokens_per_step(per_position: Sequence[float], k: int) -> float:
    """Expected tokens per step at `k` from per-position acceptance measured at k_max ≥ k (bonus included)."""
    if k > len(per_position):
        raise ValueError(f"per-position acceptance known to {len(per_position)} positions, not {k}")
    return 1.0 + float(sum(per_position[:k]))


@dataclass(frozen=True)
class StepPoint:
    """One measured step time: k drafted tokens (0: no speculation), `batch` sequences per step."""

    k: int
    batch: float
    step_ms: float


@dataclass(frozen=True)
class StepCost:
    fixed_ms: float
    verify_token_ms: float
    draft_ms: float
    draft_token_ms: float

    def step_ms(self, k: int, batch: float) -> float:
        return float(np.dot(self.vector, _features(k, batch)))

    @property
    def vector(self) -> np.ndarray:
        return np.array([self.fixed_ms, self.verify_token_ms, self.draft_ms, self.draft_token_ms])


def _features(k: int, batch: float) -> np.ndarray:
    return np.array([1.0, batch * (k + 1), float(k), k * batch])


def _nnls(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with every cost ≥ 0: the best of the unconstrained fits over subsets of the four costs
    (16 subsets: exact for a problem this small)."""
    best, best_err = np.zeros(a.shape[1]), float(np.sum(y**2))
    for size in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), size):
            sol, *_ = np.linalg.lstsq(a[:, cols], y, rcond=None)
            if np.all(sol >= 0):
                x = np.zeros(a.shape[1])
                x[list(cols)] = sol
                err = float(np.sum((a @ x - y) ** 2))
                if err < best_err - 1e-12:
                    best, best_err = x, err
    return best


@dataclass(frozen=True)
class StepFit:
    cost: StepCost
    draws: tuple[StepCost, ...]          # bootstrap refits
    rmse_ms: float

    def interval(self, k: int, batch: float, q: float = 0.95) -> tuple[float, float]:
        values = [d.step_ms(k, batch) for d in self.draws] or [self.cost.step_ms(k, batch)]
        lo, hi = np.quantile(values, [(1 - q) / 2, (1 + q) / 2])
        return float(lo), float(hi)


def fit_step_cost(points: Sequence[StepPoint], seed: int = 0) -> StepFit:
    """The four costs from measured step times; needs points at two k values (one may be the baseline's 0)
    and two batch sizes, or the draft and verify costs cannot be told apart."""
    if len({p.k for p in points}) < 2 or len({p.batch for p in points}) < 2:
        raise ValueError("step times at two k values and two batch sizes are needed to fit the step cost")
    a = np.array([_features(p.k, p.batch) for p in points])
    y = np.array([p.step_ms for p in points])
    x = _nnls(a, y)
    residuals = y - a @ x
    rng = np.random.default_rng(seed)
    # Residuals in proportion to the step time: a step of 300 ms is not measured to the same ms as one of 5.
    rel = residuals / np.maximum(a @ x, 1e-9)
    draws = tuple(StepCost(*_nnls(a, (a @ x) * (1 + rng.choice(rel, len(rel))))) for _ in range(BOOTSTRAP))
    return StepFit(StepCost(*x), draws, float(np.sqrt(np.mean(residuals**2))))


@dataclass(frozen=True)
class Prediction:
    k: int
    batch: float
    speedup: float
    low: float
    high: float


def predict(fit: StepFit, per_position: Sequence[float], ks: Sequence[int], batches: Sequence[float],
            q: float = 0.95) -> list[Prediction]:
    """Speedup of TPOT over the baseline, baseline step / (step at k / tokens per step at k), per (k, batch),
    with the bootstrap's interval (the acceptance is taken as measured: its own spread is the counters')."""
    out = []
    for b in batches:
        for k in ks:
            e = tokens_per_step(per_position, k)
            values = [e * d.step_ms(0, b) / d.step_ms(k, b) for d in fit.draws if d.step_ms(k, b) > 0]
            point = e * fit.cost.step_ms(0, b) / fit.cost.step_ms(k, b)
            lo, hi = np.quantile(values, [(1 - q) / 2, (1 + q) / 2]) if values else (point, point)
            out.append(Prediction(k, b, point, float(lo), float(hi)))
    return out
