from __future__ import annotations

import pytest

from specwise.catalog import builtin_gpus, builtin_models


@pytest.fixture(scope="session")
def models():
    return builtin_models()


@pytest.fixture(scope="session")
def gpus():
    return builtin_gpus()
