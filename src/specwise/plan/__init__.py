"""`specwise plan`: memory, pair checks, predicted speedup and the vLLM command, as one pure function.

The JSON schema of `Plan` is the stable output of `specwise plan --json`
(`schema_version` is bumped on any incompatible change).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from specwise.catalog import GPU, Architecture, Precision
from specwise.errors import SpecwiseError, check_number
from specwise.check import Check, Status
from specwise.plan.command import (SpecOptions, VllmCommand, default_gpu_memory_utilization, parse_version,
                                   vllm_command)
from specwise.plan.memory import GB, Deployed, MemoryPlan, plan_memory
from specwise.plan.pair import pair_checks
from specwise.plan.perf import Efficiency, SpecSetup, SpeedupPrediction, predict

SCHEMA_VERSION = 1
# Bounds on what a user types, far past any deployment: past them a figure is a typo (and overflows a float).
MAX_TOKENS = 100_000_000
MAX_GPUS = 4096

__all__ = ["Check", "Plan", "PlanInputs", "Status", "build_plan", "SCHEMA_VERSION"]


@dataclass(frozen=True)
class PlanInputs:
    target: Architecture
    draft: Architecture | None
    gpu: GPU
    method: str = "draft_model"
    target_precision: Precision | None = None
    draft_precision: Precision | None = None
    kv_precision: Precision = Precision.bf16
    num_gpus: int | None = None
    target_tp: int | None = None
    draft_tp: int | None = None
    context: int = 4096
    input_len: int = 512
    output_len: int = 256
    gpu_memory_utilization: float | None = None  # None: the vLLM version's default
    overhead_gb: float | None = None
    alpha: float = 0.7
    alpha_source: str = "assumed"     # or where it was measured (`--acceptance-from RUN_DIR`)
    k: int = 4
    vllm_version: str | None = None


class ModelSummary(BaseModel):
    name: str
    source: str
    reference: str
    family: str
    params: int
    active_params: int
    precision: str
    tensor_parallel_size: int
    weights_gb: float
    kv_bytes_per_token: float


class Plan(BaseModel):
    schema_version: int = SCHEMA_VERSION
    method: str
    target: ModelSummary
    draft: ModelSummary | None
    gpu: dict[str, float | str]
    memory: MemoryPlan
    pair_checks: list[Check]
    prediction: SpeedupPrediction
    vllm_version: str
    command: VllmCommand
    baseline_command: VllmCommand
    fits: bool


def _summary(model: Deployed) -> ModelSummary:
    arch = model.arch
    return ModelSummary(
        name=arch.name, source=arch.source, reference=arch.reference, family=arch.family,
        params=arch.param_count, active_params=arch.active_param_count, precision=model.precision.value,
        tensor_parallel_size=model.tp, weights_gb=model.weight_bytes / GB,
        kv_bytes_per_token=model.kv_bytes_per_token() * model.tp,
    )


def _check_tp(arch: Architecture, tp: int, field: str) -> None:
    check_number(field, tp, 1, MAX_GPUS, "use 1, 2, 4 or 8")
    if arch.num_heads % tp:
        divisors = [d for d in range(1, arch.num_heads + 1) if arch.num_heads % d == 0 and d <= 16]
        raise SpecwiseError(field, f"{tp} does not divide {arch.name}'s {arch.num_heads} attention heads",
                            f"use one of {', '.join(map(str, divisors))}")
    if not arch.is_mla and arch.num_kv_heads % tp and tp % arch.num_kv_heads:
        raise SpecwiseError(field, f"{tp} and {arch.name}'s {arch.num_kv_heads} KV heads do not divide each other",
                            "use a tensor-parallel size that divides the KV heads or is a multiple of them")


def validate(inputs: PlanInputs) -> tuple[int, int, int | None]:
    """Check the inputs; return (number of GPUs, target TP, draft TP)."""
    if inputs.gpu_memory_utilization is not None and not 0.0 < inputs.gpu_memory_utilization <= 1.0:
        raise SpecwiseError("--gpu-memory-utilization", f"must be in (0, 1], got {inputs.gpu_memory_utilization}",
                            "vLLM's default is 0.9")
    for name, value in (("--context", inputs.context), ("--input-len", inputs.input_len),
                        ("--output-len", inputs.output_len)):
        check_number(name, value, 1, MAX_TOKENS, "a number of tokens, e.g. 4096")
    if not 0.0 <= inputs.alpha <= 1.0:
        raise SpecwiseError("--alpha", f"acceptance rate must be in [0, 1], got {inputs.alpha}", "e.g. 0.7")
    if not 1 <= inputs.k <= 16:
        raise SpecwiseError("--k", f"must be in 1..16, got {inputs.k}", "3 to 5 is typical for a draft model")
    if inputs.overhead_gb is not None:
        check_number("--overhead-gb", inputs.overhead_gb, 0, fix="omit it for the estimate")
    for name, count in (("--gpus", inputs.num_gpus), ("--target-tp", inputs.target_tp),
                        ("--draft-tp", inputs.draft_tp)):
        if count is not None:  # 0 would read as "not given" below
            check_number(name, count, 1, MAX_GPUS, "e.g. 2")
    tp = inputs.target_tp or inputs.num_gpus or 1
    gpus = inputs.num_gpus or tp
    _check_tp(inputs.target, tp, "--target-tp")
    if tp != gpus:
        raise SpecwiseError("--target-tp", f"{tp} differs from --gpus {gpus}",
                            "specwise plans one replica: set --gpus to the target's tensor-parallel size")
    if inputs.draft is None or inputs.method == "ngram":
        return gpus, tp, None
    draft_tp = inputs.draft_tp or tp
    if draft_tp not in (1, tp):
        raise SpecwiseError("--draft-tp", f"{draft_tp} is neither 1 nor the target's {tp}",
                            f"vLLM accepts a draft tensor-parallel size of 1 or {tp}")
    _check_tp(inputs.draft, draft_tp, "--draft-tp")
    return gpus, tp, draft_tp


def build_plan(inputs: PlanInputs) -> Plan:
    gpus, tp, draft_tp = validate(inputs)
    target = Deployed(inputs.target, inputs.target_precision or inputs.target.default_precision, tp,
                      inputs.kv_precision)
    draft = None
    if draft_tp is not None and inputs.draft is not None:
        draft = Deployed(inputs.draft, inputs.draft_precision or inputs.draft.default_precision, draft_tp,
                         inputs.kv_precision)
    version = parse_version(inputs.vllm_version)
    utilization = inputs.gpu_memory_utilization or default_gpu_memory_utilization(version)
    memory = plan_memory(target, draft, inputs.gpu, gpus, utilization, inputs.context, inputs.overhead_gb)
    checks = pair_checks(inputs.target, inputs.draft, target.precision, draft.precision) if draft else []
    workload_tokens = inputs.input_len + inputs.output_len
    setup = SpecSetup(target, draft, inputs.gpu, inputs.input_len + inputs.output_len // 2, Efficiency())
    prediction = predict(setup, inputs.alpha, inputs.k, memory.concurrency.kv_tokens_with_draft, workload_tokens)
    prediction.alpha_source = inputs.alpha_source
    options = SpecOptions(
        target=inputs.target.reference, method=inputs.method, draft=inputs.draft.reference if draft else None,
        k=inputs.k, tensor_parallel_size=tp,
        draft_tensor_parallel_size=draft_tp if draft_tp not in (None, tp) else None,
        target_quantization=target.precision.value, draft_quantization=draft.precision.value if draft else None,
        gpu_memory_utilization=utilization, max_model_len=inputs.context, kv_cache_dtype=inputs.kv_precision.value,
        heterogeneous_vocab=draft is not None and draft.arch.vocab_size != target.arch.vocab_size,
    )
    gpu = inputs.gpu
    return Plan(
        method=inputs.method, target=_summary(target), draft=_summary(draft) if draft else None,
        gpu={"key": gpu.key, "name": gpu.name, "memory_gb": gpu.memory_gb, "bandwidth_tbs": gpu.bandwidth_tbs,
             "bf16_tflops": gpu.bf16_tflops, "eight_bit_tflops": gpu.eight_bit_tflops, "count": gpus},
        memory=memory, pair_checks=checks, prediction=prediction, vllm_version=str(version),
        command=vllm_command(options, version), baseline_command=vllm_command(options, version, speculative=False),
        fits=memory.fits,
    )
