"""Model architectures and GPUs: the built-in catalog and local Hugging Face configs.

Parameter counts are computed from the architecture (the same tensors the
Hugging Face implementation allocates), never typed in, so a local model
directory and a built-in entry are handled by the same code.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from dataclasses import dataclass, replace
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from specwise.errors import SpecwiseError


class Precision(str, Enum):
    """Storage precision of weights or of the KV cache."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"

    @property
    def bytes(self) -> float:
        return _PRECISION_BYTES[self]

    @property
    def bits(self) -> int:
        return int(self.bytes * 8)

    @classmethod
    def parse(cls, value: str, field: str) -> Precision:
        key = value.strip().lower().replace("bfloat16", "bf16").replace("float16", "fp16")
        key = {"float32": "fp32", "awq": "int4", "gptq": "int4", "w8a8": "int8", "w4a16": "int4"}.get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise SpecwiseError(field, f"unknown precision {value!r}", f"use one of {allowed}") from None


_PRECISION_BYTES = {
    Precision.fp32: 4.0,
    Precision.bf16: 2.0,
    Precision.fp16: 2.0,
    Precision.fp8: 1.0,
    Precision.int8: 1.0,
    Precision.int4: 0.5,
}


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer as far as memory and cost are concerned."""

    name: str
    family: str
    tokenizer: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    source: str
    hf_id: str | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    norms_per_layer: int = 2
    sliding_window: int | None = None
    sliding_window_layers: float = 0.0
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_dense_layers: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    default_precision: Precision = Precision.bf16
    # For local directories: a digest of the tokenizer's vocabulary, so two
    # directories can be compared token for token.
    tokenizer_fingerprint: str | None = None
    path: str | None = None

    @property
    def reference(self) -> str:
        """What to pass to vLLM's --model: the local path or the Hugging Face id."""
        return self.path or self.hf_id or self.name

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def _attention_params(self) -> int:
        h = self.hidden_size
        if self.is_mla:
            qk_head = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * self.num_heads * qk_head
            else:
                q = h * self.num_heads * qk_head
            kv = (
                h * (self.kv_lora_rank + self.qk_rope_head_dim)
                + self.kv_lora_rank
                + self.kv_lora_rank * self.num_heads * (self.qk_nope_head_dim + self.v_head_dim)
            )
            return q + kv + self.num_heads * self.v_head_dim * h
        q_out = self.num_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        params = h * q_out + 2 * h * kv_out + q_out * h
        if self.attention_bias:
            params += q_out + 2 * kv_out
        return params

    def _mlp_params(self, inter: int) -> int:
        return 3 * self.hidden_size * inter + (2 * inter + self.hidden_size if self.mlp_bias else 0)

    def _layer_params(self, experts: int) -> tuple[int, int]:
        """(dense-layer params, MoE-layer params) with `experts` routed experts counted."""
        norms = self.norms_per_layer * self.hidden_size
        if self.is_mla:
            norms = 2 * self.hidden_size  # the q/kv latent norms are in _attention_params
        base = self._attention_params() + norms
        dense = base + self._mlp_params(self.intermediate_size)
        if not self.is_moe:
            return dense, dense
        moe_inter = self.moe_intermediate_size or self.intermediate_size
        router = self.hidden_size * self.num_experts
        if self.is_mla:
            router += self.num_experts  # DeepSeek-V3's e_score_correction_bias
        moe = base + router + experts * self._mlp_params(moe_inter)
        moe += self.num_shared_experts * self._mlp_params(moe_inter)
        return dense, moe

    def _count(self, experts: int) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_embeddings else embed
        dense, moe = self._layer_params(experts)
        n_dense = self.first_dense_layers if self.is_moe else self.num_layers
        layers = n_dense * dense + (self.num_layers - n_dense) * moe
        return embed + head + layers + self.hidden_size

    @property
    def param_count(self) -> int:
        """All parameters held in memory."""
        return self._count(self.num_experts)

    @property
    def active_param_count(self) -> int:
        """Parameters touched per token (differs from param_count only for MoE)."""
        return self._count(self.experts_per_token) if self.is_moe else self.param_count


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_gb: float
    bandwidth_tbs: float
    bf16_tflops: float
    eight_bit_tflops: float
    source: str

    def tflops(self, precision: Precision) -> float:
        """Dense tensor throughput for matmuls with weights stored at `precision`.

        8-bit weights run on 8-bit tensor cores (W8A8 / FP8); 4-bit weight-only
        schemes dequantize to 16 bits, so they compute at the BF16 rate.
        """
        if precision in (Precision.fp8, Precision.int8):
            return self.eight_bit_tflops
        if precision is Precision.fp32:
            return self.bf16_tflops / 2
        return self.bf16_tflops


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
                         ("--gpu-tflops", bf16_tflops)):
        if value <= 0:
            raise SpecwiseError(field, f"must be positive, got {value}", "give the GPU's datasheet figure")
    return GPU(key="custom", name=f"custom GPU ({memory_gb:g} GB)", memory_gb=memory_gb,
               bandwidth_tbs=bandwidth_tbs, bf16_tflops=bf16_tflops,
               eight_bit_tflops=eight_bit_tflops or bf16_tflops, source="command-line flags")


def resolve_model(name: str, field: str) -> Architecture:
    """A built-in name (case-insensitive), a model directory or a config.json path."""
    path = Path(name).expanduser()
    if path.exists():
        return read_hf_model(path, field)
    models = builtin_models()
    key = _normalize(name)
    if key not in models:
        raise _closest(name, sorted(models), field, "models")
    return models[key]


# --- Hugging Face configs -------------------------------------------------

_FAMILY_BY_TYPE = {"llama": "llama", "mistral": "mistral", "mixtral": "mistral", "qwen2": "qwen2",
                   "qwen2_moe": "qwen2", "qwen3": "qwen3", "qwen3_moe": "qwen3", "gemma": "gemma",
                   "gemma2": "gemma-2", "gemma3_text": "gemma-3", "deepseek_v3": "deepseek-v3",
                   "deepseek_v2": "deepseek-v2", "phi3": "phi3"}
_SUPPORTED_TYPES = sorted(_FAMILY_BY_TYPE)


def read_hf_model(path: Path, field: str) -> Architecture:
    """Read a local model directory (config.json + tokenizer files) or a bare config.json."""
    config_path = path / "config.json" if path.is_dir() else path
    if not config_path.is_file():
        raise SpecwiseError(field, f"{path} has no config.json", "point at a Hugging Face model directory")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecwiseError(field, f"cannot read {config_path}: {exc}", "check the file is valid JSON") from None
    name = config_path.parent.name if path.is_dir() or path.name == "config.json" else path.stem
    arch = architecture_from_config(config, name=name, source=str(config_path), field=field)
    return replace(arch, tokenizer_fingerprint=tokenizer_fingerprint(config_path.parent), path=str(config_path.parent))


def architecture_from_config(config: dict[str, Any], name: str, source: str, field: str = "config") -> Architecture:
    config = {**config, **config.get("text_config", {})}
    model_type = config.get("model_type", "")
    if model_type not in _FAMILY_BY_TYPE:
        raise SpecwiseError(field, f"model_type {model_type!r} is not supported",
                            f"supported: {', '.join(_SUPPORTED_TYPES)}")
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        fields: dict[str, Any] = dict(
            num_layers=int(config["num_hidden_layers"]),
            hidden_size=hidden,
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
        )
    except KeyError as exc:
        raise SpecwiseError(field, f"{source} lacks {exc.args[0]!r}", "is this a decoder-only model config?") from None
    family = _FAMILY_BY_TYPE[model_type]
    fields["tie_embeddings"] = bool(config.get("tie_word_embeddings", model_type.startswith("gemma")))
    fields["attention_bias"] = bool(config.get("attention_bias", model_type.startswith("qwen2")))
    fields["mlp_bias"] = bool(config.get("mlp_bias", False))
    if model_type in ("gemma2", "gemma3_text"):
        fields["norms_per_layer"] = 4
    window = config.get("sliding_window")
    if window and config.get("use_sliding_window", True):
        fields["sliding_window"] = int(window)
        pattern = config.get("sliding_window_pattern")
        fields["sliding_window_layers"] = 0.5 if model_type == "gemma2" else (
            (pattern - 1) / pattern if pattern else 1.0)
    if "num_local_experts" in config or "n_routed_experts" in config or config.get("num_experts"):
        fields["num_experts"] = int(config.get("num_local_experts") or config.get("n_routed_experts")
                                    or config["num_experts"])
        fields["experts_per_token"] = int(config["num_experts_per_tok"])
        fields["moe_intermediate_size"] = int(config.get("moe_intermediate_size") or fields["intermediate_size"])
        fields["num_shared_experts"] = int(config.get("n_shared_experts") or 0)
        fields["first_dense_layers"] = int(config.get("first_k_dense_replace") or 0)
    if config.get("kv_lora_rank"):
        for key in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            fields[key] = int(config.get(key) or 0)
        fields["head_dim"] = fields["qk_nope_head_dim"] + fields["qk_rope_head_dim"]
        fields["num_kv_heads"] = heads
    return Architecture(name=name, family=family, tokenizer=f"{family}-local", source=source,
                        default_precision=_config_precision(config), **fields)


def _config_precision(config: dict[str, Any]) -> Precision:
    quant = config.get("quantization_config") or {}
    if quant:
        method = str(quant.get("quant_method", "")).lower()
        bits = quant.get("bits") or quant.get("w_bit")
        if bits == 4 or method in ("awq", "gptq") and bits in (None, 4):
            return Precision.int4
        if method == "fp8":
            return Precision.fp8
        if bits == 8:
            return Precision.int8
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    try:
        return Precision.parse(dtype.removeprefix("torch."), "torch_dtype")
    except SpecwiseError:
        return Precision.bf16


def tokenizer_fingerprint(directory: Path) -> str | None:
    """Digest of the token -> id mapping, so equal vocabularies compare equal
    whatever else differs in the files (chat templates, padding settings)."""
    tok_json = directory / "tokenizer.json"
    if tok_json.is_file():
        data = json.loads(tok_json.read_text())
        vocab = data.get("model", {}).get("vocab", {})
        merges = data.get("model", {}).get("merges", [])
        added = sorted((t["id"], t["content"]) for t in data.get("added_tokens", []))
        payload = json.dumps([sorted(vocab.items()) if isinstance(vocab, dict) else vocab, merges, added])
        return hashlib.sha256(payload.encode()).hexdigest()
    for candidate in ("tokenizer.model", "vocab.json"):
        file = directory / candidate
        if file.is_file():
            return hashlib.sha256(file.read_bytes()).hexdigest()
    return None
