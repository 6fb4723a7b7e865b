"""Local Hugging Face model directories: config.json → Architecture, tokenizer fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from specwise.catalog.architecture import Architecture, Precision
from specwise.errors import SpecwiseError, parse_json, read_text, shown

# Above any released model's dimensions by orders of magnitude, below where the memory figures overflow a float.
MAX_DIMENSION = 1 << 40
CONFIG_FIX = "give the model's Hugging Face config.json as it was published"


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
    config = parse_json(read_text(config_path, field, CONFIG_FIX, limit=1 << 24), field, str(config_path), CONFIG_FIX)
    if not isinstance(config, dict):
        raise SpecwiseError(field, f"{config_path} holds a JSON {type(config).__name__}, not an object", CONFIG_FIX)
    name = config_path.parent.name if path.is_dir() or path.name == "config.json" else path.stem
    arch = architecture_from_config(config, name=name, source=str(config_path), field=field)
    return replace(arch, tokenizer_fingerprint=tokenizer_fingerprint(config_path.parent, field),
                   path=str(config_path.parent))


def _dimension(config: dict[str, Any], key: str, source: str, field: str) -> int:
    """A size from config.json: a whole number in [1, MAX_DIMENSION]. JSON allows "4096", 0, -1, 1e999 or a list
    where the count belongs, and each would surface as a wrong plan or a crash far from the file."""
    value = config.get(key)
    if value is None:
        raise SpecwiseError(field, f"{source} lacks {key!r}", "is this a decoder-only model config?")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_DIMENSION \
            or value != int(value):
        raise SpecwiseError(field, f"{source}: {key} is {shown(value)}, not a whole number ≥ 1", CONFIG_FIX)
    return int(value)


def architecture_from_config(config: dict[str, Any], name: str, source: str, field: str = "config") -> Architecture:
    text_config = config.get("text_config") or {}
    if not isinstance(text_config, dict):
        raise SpecwiseError(field, f"{source}: text_config is not an object", CONFIG_FIX)
    config = {**config, **text_config}
    model_type = config.get("model_type", "")
    if not isinstance(model_type, str) or model_type not in _FAMILY_BY_TYPE:
        raise SpecwiseError(field, f"model_type {shown(model_type)} is not supported",
                            f"supported: {', '.join(_SUPPORTED_TYPES)}")

    def size(key: str, default: int | None = None) -> int:
        # Optional sizes are often null or 0 for "not used" (q_lora_rank, n_shared_experts): their default.
        if default is not None and not config.get(key):
            return default
        return _dimension(config, key, source, field)

    heads = size("num_attention_heads")
    hidden = size("hidden_size")
    if hidden < heads:
        raise SpecwiseError(field, f"{source}: hidden_size {hidden} is smaller than num_attention_heads {heads}",
                            CONFIG_FIX)
    fields: dict[str, Any] = dict(
        num_layers=size("num_hidden_layers"),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=size("num_key_value_heads", heads),
        head_dim=size("head_dim", hidden // heads),
        intermediate_size=size("intermediate_size"),
        vocab_size=size("vocab_size"),
    )
    family = _FAMILY_BY_TYPE[model_type]
    fields["tie_embeddings"] = bool(config.get("tie_word_embeddings", model_type.startswith("gemma")))
    fields["attention_bias"] = bool(config.get("attention_bias", model_type.startswith("qwen2")))
    fields["mlp_bias"] = bool(config.get("mlp_bias", False))
    if model_type in ("gemma2", "gemma3_text"):
        fields["norms_per_layer"] = 4
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        fields["sliding_window"] = size("sliding_window")
        pattern = size("sliding_window_pattern") if config.get("sliding_window_pattern") else None
        fields["sliding_window_layers"] = 0.5 if model_type == "gemma2" else (
            (pattern - 1) / pattern if pattern else 1.0)
    experts_key = next((key for key in ("num_local_experts", "n_routed_experts", "num_experts") if config.get(key)),
                       None)
    if experts_key:
        fields["num_experts"] = size(experts_key)
        fields["experts_per_token"] = size("num_experts_per_tok")
        fields["moe_intermediate_size"] = size("moe_intermediate_size", fields["intermediate_size"])
        fields["num_shared_experts"] = size("n_shared_experts", 0)
        fields["first_dense_layers"] = size("first_k_dense_replace", 0)
    if config.get("kv_lora_rank"):
        for key in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            fields[key] = size(key, 0)
        fields["head_dim"] = fields["qk_nope_head_dim"] + fields["qk_rope_head_dim"]
        fields["num_kv_heads"] = heads
    return Architecture(name=name, family=family, tokenizer=f"{family}-local", source=source,
                        default_precision=_config_precision(config), **fields)


def _config_precision(config: dict[str, Any]) -> Precision:
    quant = config.get("quantization_config") or {}
    if isinstance(quant, dict) and quant:
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


def tokenizer_fingerprint(directory: Path, field: str = "model") -> str | None:
    """Digest of the token -> id mapping, so equal vocabularies compare equal
    whatever else differs in the files (chat templates, padding settings)."""
    tok_json = directory / "tokenizer.json"
    if tok_json.is_file():
        fix = "give the model's tokenizer.json as it was published"
        data = parse_json(read_text(tok_json, field, fix), field, str(tok_json), fix)
        try:
            vocab = data.get("model", {}).get("vocab", {})
            merges = data.get("model", {}).get("merges", [])
            added = sorted((t["id"], t["content"]) for t in data.get("added_tokens", []))
            payload = json.dumps([sorted(vocab.items()) if isinstance(vocab, dict) else vocab, merges, added])
        except (AttributeError, TypeError, KeyError):
            raise SpecwiseError(field, f"{tok_json} is not a Hugging Face tokenizer file", fix) from None
        return hashlib.sha256(payload.encode()).hexdigest()
    for candidate in ("tokenizer.model", "vocab.json"):
        file = directory / candidate
        if file.is_file():
            return hashlib.sha256(file.read_bytes()).hexdigest()
    return None
