"""The built-in catalog (data/models.toml, data/gpus.toml) and name lookup with suggestions."""

from __future__ import annotations

import difflib
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from specwise.catalog.architecture import Architecture
from specwise.catalog.gpu import GPU
from specwise.catalog.huggingface import read_hf_model
from specwise.errors import SpecwiseError, check_number

MAX_GPU_FIGURE = 1e9   # GB, TB/s or TFLOP/s: a million times today's GPUs, still far from overflowing the plan


def _normalize(name: str) -> str:
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    key = key.split("/")[-1]
    for prefix in ("meta-",):
        key = key.removeprefix(prefix)
    for suffix in ("-instruct", "-chat", "-it", "-hf", "-base"):
        key = key.removesuffix(suffix)
    return key.replace("qwen-2.5", "qwen2.5").replace("llama3", "llama-3").replace("gemma2", "gemma-2")


@cache
def _data(file: str) -> dict[str, Any]:
    return tomllib.loads(resources.files("specwise.data").joinpath(file).read_text())


def builtin_models() -> dict[str, Architecture]:
    return {key: Architecture(name=key, **fields) for key, fields in _data("models.toml")["models"].items()}


def builtin_gpus() -> dict[str, GPU]:
    return {key: GPU(key=key, **fields) for key, fields in _data("gpus.toml")["gpus"].items()}


def _closest(name: str, known: list[str], field: str, what: str) -> SpecwiseError:
    matches = difflib.get_close_matches(_normalize(name), known, n=3, cutoff=0.4)
    fix = f"closest: {', '.join(matches)}" if matches else f"known {what}: {', '.join(known)}"
    return SpecwiseError(field, f"unknown {what[:-1]} {name!r}", fix)


def resolve_gpu(name: str, field: str = "--gpu") -> GPU:
    gpus = builtin_gpus()
    key = _normalize(name).removeprefix("nvidia-").removeprefix("amd-")
    aliases = {"h100": "h100-sxm", "h100-sxm5": "h100-sxm", "a100": "a100-80gb", "a100-80g": "a100-80gb",
               "a100-40g": "a100-40gb", "h200-sxm": "h200", "a10": "a10g", "mi300": "mi300x"}
    key = aliases.get(key, key)
    if key not in gpus:
        raise _closest(name, sorted(gpus), field, "GPUs")
    return gpus[key]


def custom_gpu(memory_gb: float, bandwidth_tbs: float, bf16_tflops: float, eight_bit_tflops: float | None) -> GPU:
    for field, value in (("--gpu-memory-gb", memory_gb), ("--gpu-bandwidth-tbs", bandwidth_tbs),
                         ("--gpu-tflops", bf16_tflops), ("--gpu-8bit-tflops", eight_bit_tflops)):
        if value is not None:
            check_number(field, value, 0, MAX_GPU_FIGURE, "give the GPU's datasheet figure", above=True)
    return GPU(key="custom", name=f"custom GPU ({memory_gb:g} GB)", memory_gb=memory_gb,
               bandwidth_tbs=bandwidth_tbs, bf16_tflops=bf16_tflops,
               eight_bit_tflops=eight_bit_tflops or bf16_tflops, source="command-line flags")


def resolve_model(name: str, field: str) -> Architecture:
    """A built-in name (case-insensitive), a model directory or a config.json path."""
    path = Path(name).expanduser()
    try:
        local = path.exists()
    except OSError:  # too long to be a path (ENAMETOOLONG): a model name, then
        local = False
    if local:
        return read_hf_model(path, field)
    models = builtin_models()
    key = _normalize(name)
    if key not in models:
        raise _closest(name, sorted(models), field, "models")
    return models[key]
