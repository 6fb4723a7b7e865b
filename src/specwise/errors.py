"""The one error type users see: it names the field at fault and the fix."""

from __future__ import annotations


class SpecwiseError(ValueError):
    """Bad input. Rendered by the CLI as one line and a non-zero exit."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.field}: {self.problem}"
        return f"{text}; {self.fix}" if self.fix else text
