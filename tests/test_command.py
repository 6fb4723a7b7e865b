from __future__ import annotations

import json

import pytest
from packaging.version import Version

from specwise.errors import SpecwiseError
from specwise.plan.command import SpecOptions, parse_version, vllm_command

DRAFT = SpecOptions(target="meta-llama/Llama-3.1-70B-Instruct", draft="meta-llama/Llama-3.1-8B-Instruct", k=5,
                    tensor_parallel_size=4, draft_tensor_parallel_size=1)
NGRAM = SpecOptions(target="meta-llama/Llama-3.1-70B-Instruct", method="ngram", ngram_prompt_lookup_max=5,
                    ngram_prompt_lookup_min=2)


def spec_config(cmd):
    return json.loads(cmd.argv[cmd.argv.index("--speculative-config") + 1])


@pytest.mark.parametrize("version,draft_tp", [("0.15.0", None), ("0.32.0", 4), ("0.8.3", 1), ("0.9.2", 1)])
def test_speculative_config_json(version, draft_tp):
    from dataclasses import replace

    cmd = vllm_command(replace(DRAFT, draft_tensor_parallel_size=draft_tp), Version(version))
    assert "--speculative-model" not in cmd.argv and not cmd.env
    expected = {"method": "draft_model", "num_speculative_tokens": 5, "model": "meta-llama/Llama-3.1-8B-Instruct"}
    if draft_tp is not None:
        expected["draft_tensor_parallel_size"] = draft_tp
    assert spec_config(cmd) == expected
    assert cmd.argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"]
    assert "--tensor-parallel-size" in cmd.argv and "127.0.0.1" in cmd.argv


def test_v1_draft_model_needs_matching_draft_tp():
    with pytest.raises(SpecwiseError) as err:
        vllm_command(DRAFT, Version("0.15.0"))
    assert err.value.field == "--draft-tp" and "--draft-tp 4" in err.value.fix


def test_0_8_2_draft_model_json_needs_v0_engine():
    cmd = vllm_command(DRAFT, Version("0.8.2"))
    assert cmd.env == {"VLLM_USE_V1": "0"} and cmd.shell.startswith("VLLM_USE_V1=0 vllm serve")
    assert vllm_command(NGRAM, Version("0.8.2")).env == {}


def test_before_0_5_2_the_api_server_module_is_the_launcher():
    argv = vllm_command(DRAFT, Version("0.5.1")).argv
    assert argv[:5] == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model",
                        "meta-llama/Llama-3.1-70B-Instruct"]
    assert vllm_command(DRAFT, Version("0.5.2")).argv[:2] == ["vllm", "serve"]


@pytest.mark.parametrize("version,expected", [("0.19.0", "0.9"), ("0.20.0", "0.92"), ("0.8.1", "0.9")])
def test_default_utilization_follows_the_version(version, expected):
    argv = vllm_command(NGRAM, Version(version)).argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == expected


def test_k_per_batch_size_replaces_disable_by_batch_size_from_0_24():
    from dataclasses import replace

    opts = replace(DRAFT, draft_tensor_parallel_size=None, disable_by_batch_size=32)
    assert spec_config(vllm_command(opts, Version("0.24.0")))["num_speculative_tokens_per_batch_size"] == [
        [1, 32, 5], [33, 33, 0]]
    gap = vllm_command(opts, Version("0.20.0"))
    assert "num_speculative_tokens_per_batch_size" not in spec_config(gap)
    assert any("--max-num-seqs" in n for n in gap.notes)
    with pytest.raises(SpecwiseError, match="--disable-by-batch-size"):
        vllm_command(replace(opts, disable_by_batch_size=0), Version("0.24.0"))


def test_heterogeneous_vocab():
    from dataclasses import replace

    opts = replace(DRAFT, draft_tensor_parallel_size=None, heterogeneous_vocab=True)
    assert spec_config(vllm_command(opts, Version("0.25.0")))["use_heterogeneous_vocab"] is True
    with pytest.raises(SpecwiseError, match="vocabulary"):
        vllm_command(opts, Version("0.24.0"))


def test_first_config_version_is_0_8_2():
    assert "--speculative-config" in vllm_command(DRAFT, Version("0.8.2")).argv
    legacy = vllm_command(DRAFT, Version("0.8.1"))
    assert "--speculative-config" not in legacy.argv
    argv = legacy.argv
    assert argv[argv.index("--speculative-model") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert argv[argv.index("--num-speculative-tokens") + 1] == "5"
    assert argv[argv.index("--speculative-draft-tensor-parallel-size") + 1] == "1"


def test_legacy_ngram_and_typical_acceptance_and_disable_by_batch():
    from dataclasses import replace

    opts = replace(NGRAM, acceptance_method="typical_acceptance_sampler", disable_by_batch_size=8)
    argv = vllm_command(opts, Version("0.7.3")).argv
    assert argv[argv.index("--speculative-model") + 1] == "[ngram]"
    assert argv[argv.index("--ngram-prompt-lookup-max") + 1] == "5"
    assert argv[argv.index("--ngram-prompt-lookup-min") + 1] == "2"
    assert argv[argv.index("--spec-decoding-acceptance-method") + 1] == "typical_acceptance_sampler"
    assert argv[argv.index("--typical-acceptance-sampler-posterior-threshold") + 1] == "0.09"
    assert argv[argv.index("--typical-acceptance-sampler-posterior-alpha") + 1] == "0.3"
    assert argv[argv.index("--speculative-disable-by-batch-size") + 1] == "8"
    assert any("gives up exact outputs" in n for n in vllm_command(opts, Version("0.7.3")).notes)
    assert not any("exact outputs" in n for n in vllm_command(NGRAM, Version("0.7.3")).notes)


def test_v0_options_in_config_json_before_0_10():
    from dataclasses import replace

    opts = replace(DRAFT, acceptance_method="typical_acceptance_sampler", disable_by_batch_size=16,
                   draft_quantization="fp8")
    config = spec_config(vllm_command(opts, Version("0.9.2")))
    assert config["acceptance_method"] == "typical_acceptance_sampler"
    assert config["posterior_threshold"] == 0.09 and config["posterior_alpha"] == 0.3
    assert config["disable_by_batch_size"] == 16 and config["quantization"] == "fp8"


def test_ngram_config():
    config = spec_config(vllm_command(NGRAM, Version("0.32.0")))
    assert config == {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 5, "prompt_lookup_min": 2}


@pytest.mark.parametrize("version", ["0.10.0", "0.12.0", "0.14.1"])
def test_draft_model_gap_is_an_error(version):
    with pytest.raises(SpecwiseError) as err:
        vllm_command(DRAFT, Version(version))
    assert err.value.field == "--vllm-version" and "0.15.0" in err.value.fix
    assert "--speculative-config" in vllm_command(NGRAM, Version(version)).argv


def test_typical_acceptance_gone_in_v1():
    from dataclasses import replace

    with pytest.raises(SpecwiseError, match="--acceptance-method"):
        vllm_command(replace(DRAFT, acceptance_method="typical_acceptance_sampler"), Version("0.15.0"))


def test_disable_by_batch_size_is_noted_not_emitted_in_v1():
    from dataclasses import replace

    cmd = vllm_command(replace(DRAFT, disable_by_batch_size=8, draft_tensor_parallel_size=None), Version("0.15.0"))
    assert "disable_by_batch_size" not in spec_config(cmd)
    assert any("no effect since 0.10.0" in n for n in cmd.notes)


def test_eagle_needs_the_config_interface():
    from dataclasses import replace

    eagle = replace(DRAFT, method="eagle", draft="yuhuili/EAGLE-LLaMA3.1-Instruct-8B")
    assert spec_config(vllm_command(eagle, Version("0.9.2")))["method"] == "eagle"
    with pytest.raises(SpecwiseError, match="--method"):
        vllm_command(eagle, Version("0.8.1"))
    renamed = replace(eagle, draft="my/eagle_head")
    assert any("'eagle-'" in n for n in vllm_command(renamed, Version("0.8.4")).notes)
    assert not vllm_command(renamed, Version("0.8.5")).notes


def test_quantization_flags():
    from dataclasses import replace

    cmd = vllm_command(replace(DRAFT, target_quantization="fp8", kv_cache_dtype="fp8"), Version("0.9.2"))
    assert cmd.argv[cmd.argv.index("--quantization") + 1] == "fp8"
    assert cmd.argv[cmd.argv.index("--kv-cache-dtype") + 1] == "fp8"
    int4 = vllm_command(replace(DRAFT, target_quantization="int4"), Version("0.9.2"))
    assert "--quantization" not in int4.argv and any("already quantized" in n for n in int4.notes)


def test_baseline_has_no_speculation():
    cmd = vllm_command(DRAFT, Version("0.32.0"), speculative=False)
    assert not any(a.startswith("--spec") for a in cmd.argv)


def test_parse_version():
    assert parse_version("v0.8.2") == Version("0.8.2")
    with pytest.raises(SpecwiseError, match="--vllm-version"):
        parse_version("latest")


def test_shell_string_is_quoted():
    cmd = vllm_command(NGRAM, Version("0.32.0"))
    assert "'{\"method\"" in cmd.shell
