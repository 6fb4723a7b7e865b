"""Doors that load their rooms on first use: `import specwise` or `import specwise.report` stays cheap and
pure, and a name's module is imported only when the name is asked for (PEP 562)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_door(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that resolves each name in `names` from its module (relative to `package`)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__
