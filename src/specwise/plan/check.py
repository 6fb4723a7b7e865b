"""A rule evaluated on data: PASS / WARN / FAIL with the reason and the numbers behind it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel


class Status(str, Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


class Check(BaseModel):
    name: str
    status: Status
    reason: str
    values: dict[str, Any] = {}
