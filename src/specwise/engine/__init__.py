"""The embedded engine: real vLLM servers started and stopped by specwise, what vLLM's logs and model
directories say, the embedded draft/target pair, and the CPU sampler plugin. The door is lazy: a command
that only asks for the installed version does not load the launcher."""

from __future__ import annotations

import importlib.util

from specwise._lazy import lazy_door
from specwise.errors import SpecwiseError

INSTALL_HINT = "run `make engine` in the specwise checkout (vLLM's CPU build), or install vllm on a GPU machine"


def require_vllm() -> None:
    """Commands that start a server call this first; everything else works without vLLM."""
    if importlib.util.find_spec("vllm") is None:
        raise SpecwiseError("engine", "vLLM is not installed in this Python environment", INSTALL_HINT)


__all__ = ["INSTALL_HINT", "EngineError", "KvReport", "ServerSpec", "VllmServer", "embedded", "ensure_pair",
           "installed_vllm_version", "kv_report", "require_vllm", "weights_bytes"]

__getattr__ = lazy_door(__name__, {
    "EngineError": ".server", "ServerSpec": ".server", "VllmServer": ".server", "embedded": ".server",
    "ensure_pair": ".pair", "KvReport": ".vllm", "installed_vllm_version": ".vllm", "kv_report": ".vllm",
    "weights_bytes": ".vllm"})
