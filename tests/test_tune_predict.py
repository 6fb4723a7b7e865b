"""The tune predictor on synthetic data with known answers: per-position acceptance → tokens per step for
every k; the step-cost fit recovering the costs it was built from; the best k the predictions imply."""

from __future__ import annotations

import random

import pytest

from specwise.plan.perf import tokens_per_step as geometric
from specwise.tune import StepCost, StepPoint, fit_step_cost, predict, tokens_per_step

TRUE = StepCost(fixed_ms=2.0, verify_token_ms=0.1, draft_ms=0.5, draft_token_ms=0.01)


def test_per_position_acceptance_gives_tokens_per_step_for_every_smaller_k() -> None:
    alpha = 0.8
    positions = [alpha ** (i + 1) for i in range(6)]   # i.i.d. acceptance: position i accepted w.p. α^i
    for k in range(7):
        assert tokens_per_step(positions, k) == pytest.approx(geometric(alpha, k))
    # Measured counters need not be geometric: the prefix sum is the answer whatever their shape.
    assert tokens_per_step([0.36, 0.19, 0.14, 0.12], 2) == pytest.approx(1.55)
    with pytest.raises(ValueError):
        tokens_per_step([0.5, 0.3], 3)


def _points(noise: float, seed: int = 0) -> list[StepPoint]:
    rng = random.Random(seed)
    return [StepPoint(k, b, TRUE.step_ms(k, b) * (1 + rng.gauss(0, noise)))
            for k in (0, 6) for b in (1, 4, 16) for _ in range(2)]


def test_the_step_cost_fit_recovers_the_costs_it_was_built_from() -> None:
    fit = fit_step_cost(_points(0.0))
    assert fit.cost.vector == pytest.approx(TRUE.vector, abs=1e-6) and fit.rmse_ms < 1e-6
    # With 2 % noise the fit still predicts unmeasured k within a few percent, and its interval covers the truth.
    noisy = fit_step_cost(_points(0.02, seed=1))
    covered = 0
    for k in (1, 2, 3, 4, 5):
        for b in (1, 4, 16):
            assert noisy.cost.step_ms(k, b) == pytest.approx(TRUE.step_ms(k, b), rel=0.05)
            lo, hi = noisy.interval(k, b)
            covered += lo <= TRUE.step_ms(k, b) <= hi
    assert covered >= 12, f"the 95 % intervals cover the truth at {covered} of 15 points"


def test_a_fit_needs_two_k_values_and_two_batch_sizes() -> None:
    with pytest.raises(ValueError):
        fit_step_cost([StepPoint(0, 1, 2.1), StepPoint(0, 4, 2.4)])
    with pytest.raises(ValueError):
        fit_step_cost([StepPoint(0, 4, 2.4), StepPoint(4, 4, 5.0)])


def test_predictions_find_the_best_k_that_the_cost_model_implies() -> None:
    alpha = 0.7
    positions = [alpha ** (i + 1) for i in range(6)]
    fit = fit_step_cost(_points(0.0))
    preds = predict(fit, positions, range(0, 7), [1, 4, 16, 64])
    best = {b: max((p for p in preds if p.batch == b), key=lambda p: p.speedup) for b in (1, 4, 16, 64)}
    for b, p in best.items():
        # The truth, by brute force over the same formula.
        truth = max(range(7), key=lambda k: geometric(alpha, k) * TRUE.step_ms(0, b) / TRUE.step_ms(k, b))
        assert p.k == truth, (b, p)
    # Larger batches want a smaller k: verifying k + 1 tokens per sequence costs more as the batch grows.
    ks = [best[b].k for b in sorted(best)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]
