"""The verdict (pure): evidence → rules of the decision framework → decision, with its reasons."""

from specwise.check import Status
from specwise.verdict.decision import decide, limit_setting
from specwise.verdict.evidence import (Control, Decision, Evidence, Limit, LoadEvidence, LoadUnit, PrimarySlo, Rule,
                                       Verdict)
from specwise.verdict.rules import (RULES, acceptance_drop, crossover, divergent_loads, diverges, needs_control,
                                    p99_regresses, requests_to_decide, wins)
from specwise.workload import median_temperature

__all__ = ["RULES", "Control", "Decision", "Evidence", "Limit", "LoadEvidence", "LoadUnit", "PrimarySlo", "Rule",
           "Status", "Verdict", "acceptance_drop", "crossover", "decide", "divergent_loads", "diverges",
           "limit_setting", "median_temperature", "needs_control", "p99_regresses", "requests_to_decide", "wins"]
