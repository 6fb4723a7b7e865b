from __future__ import annotations

from dataclasses import replace

import pytest

from specwise.catalog import Precision as P
from specwise.check import Status
from specwise.plan.pair import family_check, pair_checks, quantization_check, size_ratio_check, tokenizer_check


def statuses(checks):
    return {c.name: c.status for c in checks}


@pytest.mark.parametrize("draft,target", [("llama-3.1-8b", "llama-3.1-70b"), ("qwen2.5-7b", "qwen2.5-72b")])
def test_good_pairs_pass(models, draft, target):
    checks = pair_checks(models[target], models[draft], P.bf16, P.bf16)
    assert set(statuses(checks).values()) == {Status.PASS}


@pytest.mark.parametrize("draft,target,ratio", [("llama-3.2-1b", "llama-3.1-70b", 57), ("llama-3.1-8b",
                                                                                          "llama-3.1-405b", 50.5)])
def test_too_small_drafts_are_flagged_with_reason(models, draft, target, ratio):
    check = size_ratio_check(models[target], models[draft])
    assert check.status is Status.WARN
    assert check.values["ratio"] == pytest.approx(ratio, rel=0.02)
    assert "too small" in check.reason and "1:8–1:12" in check.reason


def test_too_costly_draft(models):
    check = size_ratio_check(models["llama-3.1-8b"], models["llama-3.2-3b"])
    assert check.status is Status.WARN and "too costly" in check.reason


def test_mildly_outside_band(models):
    # qwen2.5-14b -> 72b is ≈1:4.9 (too costly); 3b -> 32b ≈1:10.6 (sweet spot); 1.5b -> 32b ≈1:21 (weaker)
    assert "too costly" in size_ratio_check(models["qwen2.5-72b"], models["qwen2.5-14b"]).reason
    assert size_ratio_check(models["qwen2.5-32b"], models["qwen2.5-3b"]).status is Status.PASS
    weaker = size_ratio_check(models["qwen2.5-32b"], models["qwen2.5-1.5b"])
    assert weaker.status is Status.WARN and "weaker draft" in weaker.reason
    little = size_ratio_check(models["qwen2.5-72b"], replace(models["qwen2.5-7b"], num_layers=36))
    assert little.status is Status.WARN and "a little below" in little.reason


def test_draft_not_smaller_fails(models):
    assert size_ratio_check(models["llama-3.1-8b"], models["llama-3.1-70b"]).status is Status.FAIL


def test_moe_ratio_uses_active_parameters(models):
    check = size_ratio_check(models["mixtral-8x7b"], models["mistral-7b"])
    assert check.values["ratio"] == pytest.approx(12.88 / 7.24, rel=0.01)


def test_family_mismatch_warns(models):
    assert family_check(models["llama-3.1-70b"], models["qwen2.5-7b"]).status is Status.WARN


def test_tokenizer_mismatch_fails(models):
    check = tokenizer_check(models["llama-3.1-70b"], models["qwen2.5-7b"])
    assert check.status is Status.FAIL


def test_qwen_embedding_size_difference_warns(models):
    check = tokenizer_check(models["qwen2.5-72b"], models["qwen2.5-0.5b"])
    assert check.status is Status.WARN and "151936" in check.reason and "152064" in check.reason


@pytest.mark.parametrize("target,draft,status,phrase", [
    (P.bf16, P.bf16, Status.PASS, "same level"),
    (P.int8, P.int8, Status.PASS, "same level"),
    (P.bf16, P.int8, Status.PASS, "usually fine"),
    (P.int8, P.bf16, Status.WARN, "quantize the draft first"),
    (P.int4, P.int4, Status.WARN, "INT4 target"),
    (P.int4, P.bf16, Status.WARN, "INT4 target"),
])
def test_quantization_asymmetry(target, draft, status, phrase):
    check = quantization_check(target, draft)
    assert check.status is status and phrase in check.reason
    if status is Status.WARN:
        assert "5 points" in check.reason
