"""The embedded engine: real vLLM servers started and stopped by specwise."""

from __future__ import annotations

import importlib.util

from specwise.errors import SpecwiseError

INSTALL_HINT = "run `make engine` in the specwise checkout (vLLM's CPU build), or install vllm on a GPU machine"


def require_vllm() -> None:
    """Commands that start a server call this first; everything else works without vLLM."""
    if importlib.util.find_spec("vllm") is None:
        raise SpecwiseError("engine", "vLLM is not installed in this Python environment", INSTALL_HINT)
