"""A rule evaluated on data — a plan check or a verdict rule: its status, the reason in words and the
numbers behind it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel


class Status(str, Enum):
    PASS = "PASS"
    WARN = "WARN"          # the plan's caution: it fits, but mind this
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"    # the data to decide it is missing


class Check(BaseModel):
    name: str
    status: Status
    reason: str
    values: dict[str, Any] = {}
