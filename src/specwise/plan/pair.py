"""Draft/target pair checks (SPEC §1 items 1 and 8): family, tokenizer, size ratio, quantization."""

from __future__ import annotations

from specwise.catalog import Architecture, Precision
from specwise.check import Check, Status
from specwise.thresholds import ACCEPTANCE_DROP, SWEET_SPOT, TOO_COSTLY_BELOW, TOO_WEAK_ABOVE


def family_check(target: Architecture, draft: Architecture) -> Check:
    if target.family == draft.family:
        return Check(name="same family", status=Status.PASS, reason=f"both are {target.family}",
                     values={"target": target.family, "draft": draft.family})
    return Check(
        name="same family", status=Status.WARN,
        reason=(f"target is {target.family}, draft is {draft.family}: models trained apart agree less;"
                " prefer a draft of the target's family (quantize it before relaxing the family)"),
        values={"target": target.family, "draft": draft.family},
    )


def tokenizer_check(target: Architecture, draft: Architecture) -> Check:
    values = {"target_vocab": target.vocab_size, "draft_vocab": draft.vocab_size,
              "target_tokenizer": target.tokenizer, "draft_tokenizer": draft.tokenizer}
    if target.tokenizer_fingerprint and draft.tokenizer_fingerprint:
        same = target.tokenizer_fingerprint == draft.tokenizer_fingerprint
        values["compared"] = "tokenizer files"
    elif target.tokenizer_fingerprint or draft.tokenizer_fingerprint:
        # One side is a local directory without a known family: only the sizes can be compared.
        same = None
        values["compared"] = "vocabulary size only"
    else:
        same = target.tokenizer == draft.tokenizer
        values["compared"] = "tokenizer family"
    if same is False:
        return Check(name="same tokenizer", status=Status.FAIL, values=values,
                     reason="the tokenizers differ: draft token ids mean nothing to the target")
    if target.vocab_size != draft.vocab_size:
        return Check(
            name="same tokenizer", status=Status.WARN, values=values,
            reason=(f"same tokenizer but embedding sizes differ ({draft.vocab_size} vs {target.vocab_size}):"
                    " vLLM rejects such a draft unless use_heterogeneous_vocab is set (vLLM >= 0.25.0)"),
        )
    if same is None:
        return Check(name="same tokenizer", status=Status.WARN, values=values,
                     reason=f"vocabulary sizes match ({target.vocab_size}); tokenizer files not compared")
    return Check(name="same tokenizer", status=Status.PASS, values=values,
                 reason=f"same tokenizer ({values['compared']}), vocabulary {target.vocab_size}")


def size_ratio_check(target: Architecture, draft: Architecture) -> Check:
    """Ratio of parameters touched per token, which is what each step costs."""
    ratio = target.active_param_count / draft.active_param_count
    values = {"ratio": ratio, "target_params": target.active_param_count, "draft_params": draft.active_param_count,
              "sweet_spot": list(SWEET_SPOT)}
    low, high = SWEET_SPOT
    band = f"1:{low:g}–1:{high:g}"
    label = f"1:{ratio:.1f}" if ratio < 10 else f"1:{ratio:.0f}"
    if ratio <= 1.0:
        return Check(name="size ratio", status=Status.FAIL, values=values,
                     reason=f"{label}: the draft is not smaller than the target, so drafting cannot save time")
    if ratio < TOO_COSTLY_BELOW:
        reason = (f"{label} is below the {band} band: the draft predicts well but each draft step costs"
                  " too much of a target step (≈1:5 is too costly)")
    elif ratio < low:
        reason = f"{label} is a little below the {band} band: drafting costs more than usual"
    elif ratio <= high:
        return Check(name="size ratio", status=Status.PASS, values=values,
                     reason=f"{label} is inside the {band} sweet spot")
    elif ratio <= TOO_WEAK_ABOVE:
        reason = f"{label} is above the {band} band: a weaker draft, expect lower acceptance"
    else:
        reason = (f"{label} is far above the {band} band: the draft is too small and weak relative to the"
                  " target and diverges often (≈1:50 8B→405B, ≈1:70 1B→70B); it can still pay at low load —"
                  " measure before deciding")
    return Check(name="size ratio", status=Status.WARN, values=values, reason=reason)


def quantization_check(target_precision: Precision, draft_precision: Precision) -> Check:
    """SPEC §1.8: quantizing the target costs more acceptance than quantizing the draft."""
    values = {"target": target_precision.value, "draft": draft_precision.value}
    step_back = (f"a drop of more than {100 * ACCEPTANCE_DROP:.0f} points in acceptance after a quantization change"
                 " is the signal to step back")
    if target_precision is Precision.int4:
        return Check(name="quantization", status=Status.WARN, values=values,
                     reason=("an INT4 target noticeably lowers acceptance, more so with sampling;"
                             f" prefer INT8/FP8 for the target; {step_back}"))
    if target_precision.bits < draft_precision.bits:
        return Check(name="quantization", status=Status.WARN, values=values,
                     reason=(f"the target ({target_precision.value}) is quantized harder than the draft"
                             f" ({draft_precision.value}): the target judges every token, so quantize the draft"
                             f" first or keep both at the same level; {step_back}"))
    if target_precision.bits == draft_precision.bits:
        return Check(name="quantization", status=Status.PASS, values=values,
                     reason=f"same level ({target_precision.value}) for target and draft")
    return Check(name="quantization", status=Status.PASS, values=values,
                 reason=(f"draft quantized harder ({draft_precision.value}) than the target"
                         f" ({target_precision.value}): usually fine; {step_back}"))


def pair_checks(target: Architecture, draft: Architecture, target_precision: Precision,
                draft_precision: Precision) -> list[Check]:
    return [family_check(target, draft), tokenizer_check(target, draft), size_ratio_check(target, draft),
            quantization_check(target_precision, draft_precision)]
