"""Real tensors: tiny random-weight models saved with transformers, read back by specwise."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from specwise.catalog import Precision, resolve_model  # noqa: E402
from specwise.check import Status  # noqa: E402
from specwise.plan.memory import kv_bytes_per_token  # noqa: E402
from specwise.plan.pair import tokenizer_check  # noqa: E402

COMMON = dict(vocab_size=1000, hidden_size=128, intermediate_size=352, num_hidden_layers=3,
              num_attention_heads=4, max_position_embeddings=256)
CONFIGS = {
    "llama": (transformers.LlamaConfig, dict(num_key_value_heads=2)),
    "llama-tied-bias": (transformers.LlamaConfig, dict(num_key_value_heads=4, tie_word_embeddings=True,
                                                       attention_bias=True, mlp_bias=True)),
    "qwen2": (transformers.Qwen2Config, dict(num_key_value_heads=2)),
    "mistral": (transformers.MistralConfig, dict(num_key_value_heads=1, sliding_window=64)),
    "gemma2": (transformers.Gemma2Config, dict(num_key_value_heads=2, head_dim=64)),
    "mixtral": (transformers.MixtralConfig, dict(num_key_value_heads=2, num_local_experts=4,
                                                 num_experts_per_tok=2)),
    "deepseek_v3": (transformers.DeepseekV3Config, dict(
        num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
        n_shared_experts=1, first_k_dense_replace=1, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
        qk_rope_head_dim=16, v_head_dim=16, n_group=1, topk_group=1)),
}


def _save(tmp_path_factory, kind):
    cls, extra = CONFIGS[kind]
    torch.manual_seed(0)
    config = cls(**{**COMMON, **extra})
    model = transformers.AutoModelForCausalLM.from_config(config)
    directory = tmp_path_factory.mktemp(kind)
    model.save_pretrained(directory)
    return model, directory


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_param_count_matches_real_model(tmp_path_factory, kind):
    model, directory = _save(tmp_path_factory, kind)
    real = sum(p.numel() for p in model.parameters())
    arch = resolve_model(str(directory), "--target")
    assert arch.param_count == pytest.approx(real, rel=0.01)
    assert arch.path == str(directory)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "llama-tied-bias"])
def test_kv_bytes_per_token_match_vllm_formula_and_real_cache(tmp_path_factory, kind):
    model, directory = _save(tmp_path_factory, kind)
    config = json.loads((directory / "config.json").read_text())
    arch = resolve_model(str(directory), "--target")
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    vllm_formula = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 4  # fp32
    assert kv_bytes_per_token(arch, Precision.fp32) == vllm_formula
    tokens = 7
    with torch.no_grad():
        cache = model(torch.arange(tokens).unsqueeze(0), use_cache=True).past_key_values
    layers = [(layer.keys, layer.values) for layer in cache.layers] if hasattr(cache, "layers") \
        else list(zip(cache.key_cache, cache.value_cache))
    real = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
    assert real / tokens == vllm_formula


def test_local_dtype_and_quantization_are_read(tmp_path):
    config = {"model_type": "llama", **COMMON, "torch_dtype": "float32"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_model(str(tmp_path), "--draft").default_precision is Precision.fp32
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert resolve_model(str(tmp_path), "--draft").default_precision is Precision.int4


def _tokenizer_dir(tmp_path_factory, name, corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, show_progress=False))
    directory = tmp_path_factory.mktemp(name)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.save_pretrained(directory)
    config = {"model_type": "llama", **COMMON, "vocab_size": tok.get_vocab_size()}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_local_tokenizers_are_compared_by_their_files(tmp_path_factory):
    corpus = ["def add(a, b):\n    return a + b\n"] * 50 + ["for i in range(10):\n    print(i)\n"] * 50
    other = ["the quick brown fox jumps over the lazy dog"] * 100
    a = resolve_model(str(_tokenizer_dir(tmp_path_factory, "a", corpus)), "--target")
    b = resolve_model(str(_tokenizer_dir(tmp_path_factory, "b", corpus)), "--draft")
    c = resolve_model(str(_tokenizer_dir(tmp_path_factory, "c", other)), "--draft")
    assert a.tokenizer_fingerprint == b.tokenizer_fingerprint
    assert tokenizer_check(a, b).status is Status.PASS
    mismatch = tokenizer_check(a, c)
    assert mismatch.status is Status.FAIL and "differ" in mismatch.reason
