"""Memory planner: weights, KV cache and concurrency for a target with or without a draft.

Pure functions. Units: bytes inside, GB (10^9 bytes) in the result, because GPU
capacities are quoted in nominal GB.

How vLLM splits memory (vllm/v1/worker, shared/notes/vllm-spec-decode.md §6):
each GPU may use ``memory × gpu_memory_utilization``; what remains after
weights, the activation peak of the profiling run, non-torch allocations and
CUDA graphs is the KV cache. In V1 the drafter is loaded inside the same memory
profiler and its attention layers share the KV block pool, so a draft model
costs KV capacity twice: its weights and its own KV bytes per token.

The overhead allowance (per GPU, overridable with ``overhead_gb``):
  * non-torch memory: 0.5 GB (CUDA context, cuBLAS workspaces), +0.5 GB for
    NCCL buffers when the target is tensor-parallel;
  * CUDA graphs: 0.5 GB unless ``enforce_eager``;
  * activation peak of a ``max_num_batched_tokens`` profiling batch: the MLP's
    gate/up output plus q/k/v and two hidden-size buffers in 16-bit, plus fp32
    logits for 256 sequences; the larger of target and draft.
These are estimates, shown separately so a user can replace them with the
figures vLLM logs at start-up ("model weights took …, activation peak …").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel

from specwise.catalog import GPU, Architecture, Precision
from specwise.check import Check, Status
from specwise.thresholds import DRAFT_SHARE, TARGET_SHARE, UNUSABLE_SHARE

GB = 1e9
NON_TORCH_GB = 0.5
NCCL_GB = 0.5
CUDA_GRAPH_GB = 0.5
PROFILE_LOGIT_SEQS = 256


@dataclass(frozen=True)
class Deployed:
    """A model as served: architecture, weight precision, KV dtype and tensor parallelism."""

    arch: Architecture
    precision: Precision
    tp: int = 1
    kv_precision: Precision = Precision.bf16

    @property
    def weight_bytes(self) -> float:
        return weight_bytes(self.arch, self.precision)

    @property
    def weight_bytes_per_gpu(self) -> float:
        return self.weight_bytes / self.tp

    def kv_bytes_per_token(self) -> float:
        """KV bytes per token on one GPU, over full-attention accounting (every layer)."""
        return kv_bytes_per_token(self.arch, self.kv_precision, self.tp)

    def kv_bytes_per_seq(self, context: int) -> float:
        return kv_bytes_per_seq(self.arch, self.kv_precision, context, self.tp)


def weight_bytes(arch: Architecture, precision: Precision) -> float:
    """Every parameter at the named precision, as SPEC's memory table counts them.

    Real quantized checkpoints often keep embeddings and lm_head in 16 bits;
    the difference is under 3 % for models of 7 B and more.
    """
    return arch.param_count * precision.bytes


def kv_heads_per_gpu(arch: Architecture, tp: int) -> int:
    # vLLM replicates KV heads when there are fewer of them than ranks.
    return max(1, arch.num_kv_heads // tp)


def kv_bytes_per_token_layer(arch: Architecture, kv_precision: Precision, tp: int = 1) -> float:
    if arch.is_mla:
        # MLA caches one compressed latent plus the rope key, shared by all
        # heads and replicated on every tensor-parallel rank.
        return (arch.kv_lora_rank + arch.qk_rope_head_dim) * kv_precision.bytes
    return 2 * kv_heads_per_gpu(arch, tp) * arch.head_dim * kv_precision.bytes


def kv_bytes_per_token(arch: Architecture, kv_precision: Precision, tp: int = 1) -> float:
    """vLLM's formula: 2 (K and V) × layers × KV heads × head dim × dtype bytes."""
    return arch.num_layers * kv_bytes_per_token_layer(arch, kv_precision, tp)


def kv_bytes_per_seq(arch: Architecture, kv_precision: Precision, context: int, tp: int = 1) -> float:
    """KV bytes for one sequence of `context` tokens; sliding-window layers keep only the window."""
    per_layer = kv_bytes_per_token_layer(arch, kv_precision, tp)
    window_layers = round(arch.num_layers * arch.sliding_window_layers) if arch.sliding_window else 0
    windowed = min(context, arch.sliding_window or context)
    return per_layer * ((arch.num_layers - window_layers) * context + window_layers * windowed)


def activation_peak_bytes(model: Deployed, max_num_batched_tokens: int) -> float:
    arch = model.arch
    inter = (arch.moe_intermediate_size * arch.experts_per_token if arch.is_moe else arch.intermediate_size)
    qkv = (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim
    per_token = (2 * inter + qkv) / model.tp + 2 * arch.hidden_size
    logits = PROFILE_LOGIT_SEQS * arch.vocab_size * 4 / model.tp
    return max_num_batched_tokens * per_token * 2 + logits


class GpuMemory(BaseModel):
    """One GPU's share. Index 0 also holds a draft whose TP is 1."""

    index: int
    memory_gb: float
    usable_gb: float
    target_weights_gb: float
    draft_weights_gb: float
    overhead_gb: float
    left_after_weights_gb: float
    kv_budget_gb: float
    kv_bytes_per_token: float
    kv_tokens: int


class Concurrency(BaseModel):
    context: int
    kv_tokens_without_draft: int
    kv_tokens_with_draft: int
    max_seqs_without_draft: int
    max_seqs_with_draft: int
    draft_cost_seqs: int
    draft_cost_pct: float


class MemoryPlan(BaseModel):
    gpu: str
    num_gpus: int
    gpu_memory_utilization: float
    total_memory_gb: float
    target_weights_gb: float
    draft_weights_gb: float
    weights_gb: float
    left_after_weights_gb: float
    kv_budget_gb: float
    target_kv_bytes_per_token: float
    draft_kv_bytes_per_token: float
    per_gpu: list[GpuMemory]
    concurrency: Concurrency
    fits: bool
    fit_reason: str
    checks: list[Check]


def _per_gpu(target: Deployed, draft: Deployed | None, gpu: GPU, num_gpus: int, util: float,
             overhead_bytes: list[float], context: int) -> tuple[list[GpuMemory], list[float]]:
    rows, per_seq = [], []
    for index in range(num_gpus):
        holds_draft = draft is not None and index < draft.tp
        target_w = target.weight_bytes_per_gpu
        draft_w = draft.weight_bytes_per_gpu if holds_draft else 0.0
        kv_token = target.kv_bytes_per_token() + (draft.kv_bytes_per_token() if holds_draft else 0.0)
        per_seq.append(target.kv_bytes_per_seq(context) + (draft.kv_bytes_per_seq(context) if holds_draft else 0.0))
        usable = gpu.memory_gb * GB * util
        budget = usable - target_w - draft_w - overhead_bytes[index]
        rows.append(GpuMemory(
            index=index, memory_gb=gpu.memory_gb, usable_gb=usable / GB,
            target_weights_gb=target_w / GB, draft_weights_gb=draft_w / GB,
            overhead_gb=overhead_bytes[index] / GB,
            left_after_weights_gb=(gpu.memory_gb * GB - target_w - draft_w) / GB,
            kv_budget_gb=budget / GB, kv_bytes_per_token=kv_token,
            kv_tokens=max(0, math.floor(budget / kv_token)),
        ))
    return rows, per_seq


def _capacity(rows: list[GpuMemory], per_seq: list[float]) -> tuple[int, int]:
    """Tokens and sequences that fit: vLLM takes the smallest block count across ranks."""
    tokens = min(r.kv_tokens for r in rows)
    seqs = min(max(0, math.floor(r.kv_budget_gb * GB / s)) for r, s in zip(rows, per_seq))
    return tokens, seqs


def overhead_per_gpu(target: Deployed, draft: Deployed | None, num_gpus: int, enforce_eager: bool,
                     max_num_batched_tokens: int) -> list[float]:
    activation = max(activation_peak_bytes(m, max_num_batched_tokens) for m in (target, draft) if m is not None)
    fixed = NON_TORCH_GB + (NCCL_GB if target.tp > 1 else 0.0) + (0.0 if enforce_eager else CUDA_GRAPH_GB)
    return [fixed * GB + activation] * num_gpus


def plan_memory(target: Deployed, draft: Deployed | None, gpu: GPU, num_gpus: int, util: float = 0.9,
                context: int = 4096, overhead_gb: float | None = None, enforce_eager: bool = False,
                max_num_batched_tokens: int = 8192) -> MemoryPlan:
    """Memory plan for one replica: the target spans `num_gpus`, a draft `draft.tp` of them."""
    if overhead_gb is None:
        overhead = overhead_per_gpu(target, draft, num_gpus, enforce_eager, max_num_batched_tokens)
    else:
        overhead = [overhead_gb * GB] * num_gpus
    rows, per_seq = _per_gpu(target, draft, gpu, num_gpus, util, overhead, context)
    alone_rows, alone_seq = _per_gpu(target, None, gpu, num_gpus, util, overhead, context)
    tokens_with, seqs_with = _capacity(rows, per_seq)
    tokens_without, seqs_without = _capacity(alone_rows, alone_seq)
    cost = seqs_without - seqs_with
    concurrency = Concurrency(
        context=context, kv_tokens_without_draft=tokens_without, kv_tokens_with_draft=tokens_with,
        max_seqs_without_draft=seqs_without, max_seqs_with_draft=seqs_with, draft_cost_seqs=cost,
        draft_cost_pct=100.0 * cost / seqs_without if seqs_without else 0.0,
    )
    total = gpu.memory_gb * num_gpus
    target_w = target.weight_bytes / GB
    draft_w = draft.weight_bytes / GB if draft else 0.0
    left = total - target_w - draft_w
    fits, reason = _fit(rows, concurrency, left, total)
    return MemoryPlan(
        gpu=gpu.name, num_gpus=num_gpus, gpu_memory_utilization=util, total_memory_gb=total,
        target_weights_gb=target_w, draft_weights_gb=draft_w, weights_gb=target_w + draft_w,
        left_after_weights_gb=left, kv_budget_gb=sum(r.kv_budget_gb for r in rows),
        target_kv_bytes_per_token=target.kv_bytes_per_token() * target.tp,
        draft_kv_bytes_per_token=draft.kv_bytes_per_token() * draft.tp if draft else 0.0,
        per_gpu=rows, concurrency=concurrency, fits=fits, fit_reason=reason,
        checks=memory_checks(target, draft, gpu, util),
    )


def _fit(rows: list[GpuMemory], concurrency: Concurrency, left_gb: float, total_gb: float) -> tuple[bool, str]:
    short = [r for r in rows if r.kv_budget_gb <= 0]
    if short:
        r = short[0]
        return False, (f"on GPU {r.index} weights {r.target_weights_gb + r.draft_weights_gb:.1f} GB"
                       f" + overhead {r.overhead_gb:.1f} GB exceed the {r.usable_gb:.1f} GB vLLM may use"
                       f" ({left_gb:.1f} GB left after weights of {total_gb:.0f} GB: not usable)")
    if concurrency.max_seqs_with_draft < 1:
        return False, (f"the KV cache holds {concurrency.kv_tokens_with_draft} tokens,"
                       f" less than one {concurrency.context}-token sequence")
    if left_gb < UNUSABLE_SHARE * total_gb:
        return False, f"only {left_gb:.1f} GB left after weights of {total_gb:.0f} GB: not usable"
    return True, (f"{concurrency.max_seqs_with_draft} concurrent {concurrency.context}-token sequences"
                  f" with the draft ({concurrency.max_seqs_without_draft} without)")


def memory_checks(target: Deployed, draft: Deployed | None, gpu: GPU, util: float) -> list[Check]:
    gpu_bytes = gpu.memory_gb * GB
    share = target.weight_bytes_per_gpu / gpu_bytes
    checks = [Check(
        name="target share of GPU memory",
        status=Status.WARN if share > TARGET_SHARE else Status.PASS,
        reason=(f"target weights take {share:.0%} of each GPU (> {TARGET_SHARE:.0%}): a draft will cut"
                " concurrency; consider a quantized target or more GPUs" if share > TARGET_SHARE
                else f"target weights take {share:.0%} of each GPU (≤ {TARGET_SHARE:.0%})"),
        values={"share": share, "limit": TARGET_SHARE},
    )]
    if draft is not None:
        d_share = draft.weight_bytes_per_gpu / (gpu_bytes * util)
        checks.append(Check(
            name="draft share of usable memory",
            status=Status.WARN if d_share > DRAFT_SHARE else Status.PASS,
            reason=(f"draft weights take {d_share:.0%} of the usable memory of its GPU"
                    + (f" (> {DRAFT_SHARE:.0%}): it costs KV cache one for one; quantize it or use a smaller"
                       " draft" if d_share > DRAFT_SHARE else f" (≤ {DRAFT_SHARE:.0%})")),
            values={"share": d_share, "limit": DRAFT_SHARE},
        ))
    return checks
