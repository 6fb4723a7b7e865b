"""Model architectures and weight/KV precisions.

Parameter counts are computed from the architecture (the same tensors the
Hugging Face implementation allocates), never typed in, so a local model
directory and a built-in entry are handled by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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
