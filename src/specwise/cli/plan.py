"""`specwise plan`: parse flags, build the plan, render it (rich tables or JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from specwise.catalog import Precision, custom_gpu, resolve_gpu, resolve_model
from specwise.cli import app
from specwise.engine.vllm import installed_vllm_version
from specwise.errors import SpecwiseError
from specwise.plan import PlanInputs, build_plan
from specwise.report.console import render_plan
from specwise.plan.command import METHODS

EXIT_DOES_NOT_FIT = 1


@app.command()
def plan(
    target: str = typer.Option(..., "--target", help="Target model: a built-in name (e.g. llama-3.1-70b), a local "
                               "Hugging Face model directory or a config.json."),
    draft: Optional[str] = typer.Option(None, "--draft", help="Draft model, same forms as --target. Omit with "
                                        "--method ngram."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU name (h100-sxm, h100-pcie, h200, a100-40gb, "
                                      "a100-80gb, l40s, l4, a10g, mi300x, b200); omit and give --gpu-memory-gb "
                                      "etc. for a custom GPU."),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs in one replica (default: --target-tp, else 1)."),
    target_quant: Optional[str] = typer.Option(None, "--target-quant", help="Target weights: bf16, fp16, fp8, "
                                               "int8, int4 (default: the model's own dtype)."),
    draft_quant: Optional[str] = typer.Option(None, "--draft-quant", help="Draft weights, as --target-quant."),
    kv_cache_dtype: str = typer.Option("auto", "--kv-cache-dtype", help="KV cache dtype: auto (bf16), fp16, fp8."),
    target_tp: Optional[int] = typer.Option(None, "--target-tp", help="Target tensor parallelism (default --gpus)."),
    draft_tp: Optional[int] = typer.Option(None, "--draft-tp", help="Draft tensor parallelism: 1 or the target's "
                                           "(default: the target's, as vLLM)."),
    method: str = typer.Option("draft_model", "--method", help=f"Proposer: {', '.join(METHODS)}."),
    context: int = typer.Option(4096, "--context", help="Tokens per sequence (prompt + output) for the "
                                "concurrency figures; also --max-model-len in the command."),
    input_len: int = typer.Option(512, "--input-len", help="Mean prompt tokens, for the speed prediction."),
    output_len: int = typer.Option(256, "--output-len", help="Mean output tokens, for the speed prediction."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization", help="vLLM's share "
                                                           "of GPU memory, in (0, 1] (default: the vLLM version's:"
                                                           " 0.9, 0.92 from 0.20.0)."),
    overhead_gb: Optional[float] = typer.Option(None, "--overhead-gb", help="Per-GPU activation + non-torch + "
                                                "CUDA-graph memory; default: estimated (see docs)."),
    alpha: float = typer.Option(0.7, "--alpha", help="Acceptance rate to predict for (an assumption: measure it)."),
    acceptance_from: Optional[Path] = typer.Option(None, "--acceptance-from", help="Take the acceptance from a "
                                                   "bench run directory (its tokens per step and k) instead of --alpha."),
    k: int = typer.Option(4, "--k", help="Speculative tokens per step."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="vLLM version for the command "
                                               "(default: the installed one, else the newest known)."),
    gpu_memory_gb: Optional[float] = typer.Option(None, "--gpu-memory-gb", help="Custom GPU: memory in GB."),
    gpu_bandwidth_tbs: Optional[float] = typer.Option(None, "--gpu-bandwidth-tbs", help="Custom GPU: TB/s."),
    gpu_tflops: Optional[float] = typer.Option(None, "--gpu-tflops", help="Custom GPU: dense BF16 TFLOP/s."),
    gpu_8bit_tflops: Optional[float] = typer.Option(None, "--gpu-8bit-tflops", help="Custom GPU: dense FP8/INT8."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON (schema: specwise.plan.Plan)."),
) -> None:
    """Memory and fit plan for a target/draft pair, pair checks, predicted speedup and the vLLM command.

    Exit code 0 when the plan fits, 1 when it does not, 2 on bad input.
    """
    if gpu is not None:
        gpu_spec = resolve_gpu(gpu)
    elif None not in (gpu_memory_gb, gpu_bandwidth_tbs, gpu_tflops):
        gpu_spec = custom_gpu(gpu_memory_gb, gpu_bandwidth_tbs, gpu_tflops, gpu_8bit_tflops)  # type: ignore[arg-type]
    else:
        raise SpecwiseError("--gpu", "no GPU given", "name one (e.g. --gpu h100-sxm) or give --gpu-memory-gb, "
                            "--gpu-bandwidth-tbs and --gpu-tflops")
    kv = Precision.bf16 if kv_cache_dtype.lower() == "auto" else Precision.parse(kv_cache_dtype, "--kv-cache-dtype")
    if kv not in (Precision.bf16, Precision.fp16, Precision.fp8):
        raise SpecwiseError("--kv-cache-dtype", f"{kv_cache_dtype!r} is not a KV cache dtype", "use auto, fp16 or fp8")
    source = "assumed"
    if acceptance_from is not None:
        alpha, source = measured_alpha(acceptance_from)
    inputs = PlanInputs(
        target=resolve_model(target, "--target"),
        draft=resolve_model(draft, "--draft") if draft and method != "ngram" else None,
        gpu=gpu_spec, method=method,
        target_precision=Precision.parse(target_quant, "--target-quant") if target_quant else None,
        draft_precision=Precision.parse(draft_quant, "--draft-quant") if draft_quant else None,
        kv_precision=kv, num_gpus=gpus, target_tp=target_tp, draft_tp=draft_tp, context=context,
        input_len=input_len, output_len=output_len, gpu_memory_utilization=gpu_memory_utilization,
        overhead_gb=overhead_gb, alpha=alpha, alpha_source=source, k=k, vllm_version=vllm_version or installed_vllm_version(),
    )
    result = build_plan(inputs)
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        render_plan(result, Console())
    if not result.fits:
        raise typer.Exit(EXIT_DOES_NOT_FIT)


def measured_alpha(run_dir: Path) -> tuple[float, str]:
    """The per-token acceptance α a bench run measured: its mean acceptance length (tokens per step, from
    the server's counters) inverted through E(α, k) at the run's k."""
    from specwise.analysis import summarize
    from specwise.plan.perf import alpha_for
    from specwise.results import load_run

    run = load_run(run_dir)
    window = summarize(run).acceptance.server
    k = run.manifest.config.get("k")
    if not window or not window.mean_acceptance_length or not isinstance(k, int) or not 1 <= k <= 64:
        raise SpecwiseError("--acceptance-from", f"{run_dir} has no speculative-decoding counters with a known k",
                            "give a run of a speculative server made with --k")
    alpha = alpha_for(window.mean_acceptance_length, k)
    return alpha, f"measured in {run_dir}: {window.mean_acceptance_length:.2f} tokens per step at k={k}"
