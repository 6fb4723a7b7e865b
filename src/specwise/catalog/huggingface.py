"""Local Hugging Face model directories: config.json → Architecture, tokenizer fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from specwise.catalog.architecture import Architecture, Precision
from specwise.errors import SpecwiseError


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
