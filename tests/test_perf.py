from __future__ import annotations

import itertools

import pytest

from specwise.catalog import Precision as P
from specwise.plan.memory import Deployed
from specwise.plan.perf import (SpecSetup, best_k, break_even_alpha, crossover, forward_time, predict, speedup,
                                tokens_per_step)


@pytest.fixture()
def setup(models, gpus):
    target = Deployed(models["llama-3.1-70b"], P.int8, 2)
    draft = Deployed(models["llama-3.1-8b"], P.bf16, 2)
    return SpecSetup(target, draft, gpus["h100-sxm"], context=640)


def test_tokens_per_step_formula():
    assert tokens_per_step(0.0, 4) == 1.0
    assert tokens_per_step(1.0, 4) == 5.0
    assert tokens_per_step(0.7, 4) == pytest.approx((1 - 0.7 ** 5) / 0.3)
    assert tokens_per_step(0.8, 3) == pytest.approx(1 + 0.8 + 0.64 + 0.512)


def test_low_load_gain_high_load_loss(setup):
    prediction = predict(setup, alpha=0.7, k=4, kv_tokens=10**6, request_tokens=768)
    assert prediction.rows[0].concurrency == 1 and prediction.rows[0].speedup > 1
    assert prediction.rows[-1].speedup < 1
    assert prediction.crossover_concurrency is not None and 1 < prediction.crossover_concurrency < 512
    assert "prediction" in prediction.label


@pytest.mark.parametrize("alpha,k,batch", list(itertools.product((0.0, 0.3, 0.6, 0.9, 1.0), (1, 3, 5, 8),
                                                                  (1, 8, 64, 512))))
def test_speedup_never_exceeds_tokens_per_step(setup, alpha, k, batch):
    assert speedup(setup, batch, alpha, k) <= tokens_per_step(alpha, k) + 1e-12


def test_ngram_bound_and_cheaper_than_draft(setup):
    ngram = SpecSetup(setup.target, None, setup.gpu, setup.context)
    for batch in (1, 16, 256):
        assert speedup(ngram, batch, 0.7, 4) > speedup(setup, batch, 0.7, 4)
        assert speedup(ngram, batch, 0.7, 4) <= tokens_per_step(0.7, 4)


def test_verify_costs_more_once_compute_bound(setup):
    t = setup.target
    low = forward_time(t, setup.gpu, 1, 5, 640) / forward_time(t, setup.gpu, 1, 1, 640)
    high = forward_time(t, setup.gpu, 512, 5, 640) / forward_time(t, setup.gpu, 512, 1, 640)
    assert low < 1.05 and high > 2


def test_break_even_alpha(setup):
    low = break_even_alpha(setup, 1, 4)
    assert low is not None and speedup(setup, 1, low, 4) == pytest.approx(1.0, abs=1e-6)
    high = break_even_alpha(setup, 256, 4)
    assert high is None or high > low
    assert break_even_alpha(setup, 4096, 4) is None


def test_best_k_grows_with_alpha(setup):
    ks = [best_k(setup, 1, a)[0] for a in (0.5, 0.7, 0.9)]
    assert ks == sorted(ks) and ks[0] < ks[-1]
    k, s = best_k(setup, 1, 0.8)
    assert s >= max(speedup(setup, 1, 0.8, kk) for kk in range(1, 11)) - 1e-12


def test_moe_reads_more_experts_with_batch(models, gpus):
    mix = Deployed(models["mixtral-8x7b"], P.bf16, 1)
    one = forward_time(mix, gpus["h100-sxm"], 1, 1, 128)
    many = forward_time(mix, gpus["h100-sxm"], 64, 1, 128)
    assert many > 2 * one


def test_crossover_interpolates():
    from specwise.plan.perf import SpeedupRow

    rows = [SpeedupRow(concurrency=c, baseline_tpot_ms=1, speculative_tpot_ms=1, speedup=s, break_even_alpha=None,
                       fits_kv_cache=True) for c, s in ((1, 1.5), (4, 1.2), (16, 0.8))]
    x = crossover([(r.concurrency, r.speedup) for r in rows])
    assert 4 < x < 16
    assert crossover([(r.concurrency, r.speedup) for r in rows[:2]]) is None


def test_rows_beyond_kv_capacity_are_marked(setup):
    prediction = predict(setup, alpha=0.7, k=4, kv_tokens=768 * 10, request_tokens=768)
    assert [r.fits_kv_cache for r in prediction.rows] == [r.concurrency <= 10 for r in prediction.rows]
