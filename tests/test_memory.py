from __future__ import annotations

import pytest

from specwise.catalog import Precision, resolve_gpu
from specwise.check import Status
from specwise.plan.memory import Deployed, kv_bytes_per_seq, kv_bytes_per_token, plan_memory

P = Precision


def pair_plan(models, tq, dq, gpu="h100-sxm", n=2, draft_tp=None, **kw):
    target = Deployed(models["llama-3.1-70b"], tq, n)
    draft = Deployed(models["llama-3.1-8b"], dq, draft_tp or n)
    return plan_memory(target, draft, resolve_gpu(gpu), n, **kw)


# SPEC §1.7 quantization table: target + draft weights in GB. The article rounds
# 70.55 B to 70 B and 8.03 B to 8 B; computed counts land within 1 %.
@pytest.mark.parametrize("tq,dq,expected", [
    (P.bf16, P.bf16, 156), (P.int8, P.bf16, 86), (P.int8, P.int8, 78), (P.int4, P.bf16, 51), (P.int4, P.int4, 39),
])
def test_spec_quantization_table(models, tq, dq, expected):
    assert pair_plan(models, tq, dq).weights_gb == pytest.approx(expected, rel=0.01)


def test_int8_target_bf16_draft_on_two_h100(models):
    plan = pair_plan(models, P.int8, P.bf16)
    assert plan.weights_gb == pytest.approx(86, abs=1)
    assert plan.left_after_weights_gb == pytest.approx(74, abs=1)
    # vLLM's budget is smaller: utilization and overhead come off too.
    assert 0 < plan.kv_budget_gb < plan.left_after_weights_gb - 0.1 * plan.total_memory_gb + 0.01
    assert plan.fits


def test_bf16_pair_on_two_h100_leaves_about_4_gb_and_is_not_usable(models):
    plan = pair_plan(models, P.bf16, P.bf16)
    assert 2 < plan.left_after_weights_gb < 5
    assert not plan.fits
    assert "not usable" in plan.fit_reason


def test_bf16_pair_on_two_h200(models):
    plan = pair_plan(models, P.bf16, P.bf16, gpu="h200")
    assert plan.left_after_weights_gb == pytest.approx(126, abs=1.5)
    assert plan.fits
    h100 = pair_plan(models, P.int8, P.bf16)
    assert plan.left_after_weights_gb / h100.left_after_weights_gb == pytest.approx(1.7, abs=0.05)


def test_int4_target_bf16_draft_fits_one_h100(models):
    plan = pair_plan(models, P.int4, P.bf16, n=1)
    assert plan.weights_gb == pytest.approx(51, rel=0.01) and plan.fits


def test_draft_costs_concurrency(models):
    plan = pair_plan(models, P.int8, P.bf16)
    c = plan.concurrency
    assert c.max_seqs_with_draft < c.max_seqs_without_draft
    assert c.draft_cost_seqs == c.max_seqs_without_draft - c.max_seqs_with_draft
    assert c.draft_cost_pct == pytest.approx(100 * c.draft_cost_seqs / c.max_seqs_without_draft)
    assert c.kv_tokens_with_draft < c.kv_tokens_without_draft


def test_draft_tp1_sits_on_one_gpu(models):
    plan = pair_plan(models, P.int8, P.bf16, draft_tp=1)
    gpu0, gpu1 = plan.per_gpu
    assert gpu0.draft_weights_gb == pytest.approx(16.06, abs=0.01) and gpu1.draft_weights_gb == 0
    assert gpu0.kv_budget_gb < gpu1.kv_budget_gb
    # vLLM uses the smallest block count across ranks.
    assert plan.concurrency.kv_tokens_with_draft == min(gpu0.kv_tokens, gpu1.kv_tokens) == gpu0.kv_tokens


def test_utilization_scales_the_budget(models):
    low = pair_plan(models, P.int8, P.bf16, util=0.8)
    high = pair_plan(models, P.int8, P.bf16, util=0.95)
    assert high.kv_budget_gb - low.kv_budget_gb == pytest.approx(0.15 * 160, rel=1e-6)


def test_overhead_override(models):
    plan = pair_plan(models, P.int8, P.bf16, overhead_gb=0)
    assert plan.kv_budget_gb == pytest.approx(160 * 0.9 - plan.weights_gb)


def test_target_share_rule(models, gpus):
    big = plan_memory(Deployed(models["llama-3.1-70b"], P.bf16, 2), None, gpus["h100-sxm"], 2)
    rule = big.checks[0]
    assert rule.status is Status.WARN and rule.values["share"] > 0.7 and "cut concurrency" in rule.reason
    small = plan_memory(Deployed(models["llama-3.1-70b"], P.int8, 2), None, gpus["h100-sxm"], 2)
    assert small.checks[0].status is Status.PASS


def test_draft_share_rule(models):
    tp1 = pair_plan(models, P.int8, P.bf16, draft_tp=1).checks[1]
    assert tp1.status is Status.WARN and tp1.values["share"] > 0.15
    tp2 = pair_plan(models, P.int8, P.bf16).checks[1]
    assert tp2.status is Status.PASS and tp2.values["share"] <= 0.15


def test_kv_gqa_and_tensor_parallel(models):
    llama70 = models["llama-3.1-70b"]
    assert kv_bytes_per_token(llama70, P.bf16) == 2 * 80 * 8 * 128 * 2 == 320 * 1024
    assert kv_bytes_per_token(llama70, P.bf16, tp=2) == 160 * 1024
    # 8 KV heads over 16 ranks: vLLM replicates, one head per rank.
    assert kv_bytes_per_token(llama70, P.bf16, tp=16) == 2 * 80 * 1 * 128 * 2
    assert kv_bytes_per_token(llama70, P.fp8) == 160 * 1024


def test_kv_mla_is_latent_and_replicated(models):
    ds = models["deepseek-v3"]
    expected = 61 * (512 + 64) * 2
    assert kv_bytes_per_token(ds, P.bf16) == expected
    assert kv_bytes_per_token(ds, P.bf16, tp=8) == expected


def test_kv_sliding_window(models):
    gemma, mistral = models["gemma-2-9b"], models["mistral-7b"]
    per_token = kv_bytes_per_token(gemma, P.bf16)
    assert kv_bytes_per_seq(gemma, P.bf16, 2048) == per_token * 2048
    # Half the layers keep only 4096 tokens.
    assert kv_bytes_per_seq(gemma, P.bf16, 16384) == pytest.approx(per_token * (16384 + 4096) / 2)
    assert kv_bytes_per_seq(mistral, P.bf16, 32768) == kv_bytes_per_token(mistral, P.bf16) * 4096


def test_context_too_long_does_not_fit(models, gpus):
    plan = plan_memory(Deployed(models["llama-3.1-8b"], P.bf16), None, gpus["l4"], 1, context=2_000_000)
    assert not plan.fits and "less than one" in plan.fit_reason
