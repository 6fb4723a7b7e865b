from __future__ import annotations

import pytest

from specwise.catalog import Precision, custom_gpu, resolve_gpu, resolve_model
from specwise.errors import SpecwiseError

# Vendor / reference figures (shared/notes/reference-data.md §4), in billions.
REFERENCE_PARAMS = {
    "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.55, "llama-3.1-405b": 405.9, "llama-3.2-1b": 1.24,
    "llama-3.2-3b": 3.21, "qwen2.5-0.5b": 0.49, "qwen2.5-1.5b": 1.54, "qwen2.5-3b": 3.09, "qwen2.5-7b": 7.62,
    "qwen2.5-14b": 14.77, "qwen2.5-32b": 32.76, "qwen2.5-72b": 72.71, "mistral-7b": 7.24, "mixtral-8x7b": 46.7,
    "gemma-2-2b": 2.61, "gemma-2-9b": 9.24, "gemma-2-27b": 27.2, "deepseek-v3": 671.0,
}
REFERENCE_ACTIVE = {"mixtral-8x7b": 12.9, "deepseek-v3": 37.6}


@pytest.mark.parametrize("name,billions", sorted(REFERENCE_PARAMS.items()))
def test_computed_param_counts_match_published(models, name, billions):
    assert models[name].param_count / 1e9 == pytest.approx(billions, rel=0.01)


@pytest.mark.parametrize("name,billions", sorted(REFERENCE_ACTIVE.items()))
def test_moe_active_params(models, name, billions):
    assert models[name].active_param_count / 1e9 == pytest.approx(billions, rel=0.01)
    assert models[name].active_param_count < models[name].param_count


def test_catalog_covers_the_required_models_with_sources(models):
    required = {"llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-3.2-1b", "llama-3.2-3b", "llama-3-70b",
                "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b",
                "qwen2.5-72b", "mistral-7b", "mixtral-8x7b", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b",
                "deepseek-v3"}
    assert required <= set(models)
    assert all(m.source and m.hf_id for m in models.values())


def test_catalog_covers_the_required_gpus(gpus):
    assert {"h100-sxm", "h100-pcie", "h200", "a100-40gb", "a100-80gb", "l40s", "l4", "a10g", "mi300x",
            "b200"} <= set(gpus)
    assert all(g.source and g.memory_gb > 0 and g.bandwidth_tbs > 0 for g in gpus.values())


@pytest.mark.parametrize("name", ["Llama-3.1-70B", "llama_3.1_70b", "meta-llama/Llama-3.1-70B-Instruct", "LLAMA-3.1-70B"])
def test_model_names_are_case_insensitive(name):
    assert resolve_model(name, "--target").name == "llama-3.1-70b"


@pytest.mark.parametrize("name,key", [("H100-SXM", "h100-sxm"), ("h100", "h100-sxm"), ("NVIDIA-H200", "h200"),
                                      ("a100-40gb", "a100-40gb")])
def test_gpu_names(name, key):
    assert resolve_gpu(name).key == key


def test_unknown_model_lists_closest_matches():
    with pytest.raises(SpecwiseError) as err:
        resolve_model("llama-3.1-7b", "--target")
    assert err.value.field == "--target"
    assert "closest" in err.value.fix and "llama-3.1-70b" in err.value.fix


def test_unknown_gpu_lists_closest_matches():
    with pytest.raises(SpecwiseError) as err:
        resolve_gpu("h300")
    assert err.value.field == "--gpu" and "h200" in err.value.fix


def test_custom_gpu_and_its_errors():
    gpu = custom_gpu(96, 4.0, 1000, None)
    assert gpu.memory_gb == 96 and gpu.eight_bit_tflops == 1000
    with pytest.raises(SpecwiseError, match="--gpu-memory-gb"):
        custom_gpu(0, 4.0, 1000, None)


@pytest.mark.parametrize("text,expected", [("INT8", Precision.int8), ("bfloat16", Precision.bf16),
                                           ("awq", Precision.int4), ("fp8", Precision.fp8)])
def test_precision_parse(text, expected):
    assert Precision.parse(text, "--target-quant") is expected


def test_unknown_precision_names_the_flag_and_allowed_values():
    with pytest.raises(SpecwiseError) as err:
        Precision.parse("int3", "--draft-quant")
    assert err.value.field == "--draft-quant" and "int8" in err.value.fix


def test_missing_config_and_unsupported_type(tmp_path):
    with pytest.raises(SpecwiseError, match="no config.json"):
        resolve_model(str(tmp_path), "--draft")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(SpecwiseError, match="not supported"):
        resolve_model(str(tmp_path), "--draft")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(SpecwiseError, match="valid JSON"):
        resolve_model(str(tmp_path), "--draft")
