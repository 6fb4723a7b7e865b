from __future__ import annotations

import os

import pytest

# No test needs the Hugging Face hub; on a closed network a lookup stalls instead of failing.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"):
    os.environ.setdefault(_name, "1")

from specwise.catalog import builtin_gpus, builtin_models


@pytest.fixture(scope="session")
def models():
    return builtin_models()


@pytest.fixture(scope="session")
def gpus():
    return builtin_gpus()
