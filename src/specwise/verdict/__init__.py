"""The verdict (pure): the measurement decides (validity, outputs, outcome by load and by temperature);
the guide's rules of thumb explain it, add conditions and risks, and say when they disagree."""

from specwise.check import Status
from specwise.verdict.decision import decide, limit_setting
from specwise.verdict.evidence import (Arm, BucketEvidence, Control, Decision, Evidence, Limit, LoadEvidence,
                                       LoadUnit, PrimarySlo, Role, Rule, Verdict)
from specwise.verdict.outcome import Outcome, diverges, load_outcome, p99_regresses, squeezed
from specwise.verdict.rules import (acceptance_drop, break_even_acceptance, crossover, divergent_loads,
                                    needs_control, requests_to_decide)
from specwise.workload import median_temperature

__all__ = ["Arm", "BucketEvidence", "Control", "Decision", "Evidence", "Limit", "LoadEvidence", "LoadUnit",
           "Outcome", "PrimarySlo", "Role", "Rule", "Status", "Verdict", "acceptance_drop", "break_even_acceptance",
           "crossover", "decide", "diverges", "divergent_loads", "limit_setting", "load_outcome", "median_temperature",
           "needs_control", "p99_regresses", "requests_to_decide", "squeezed"]
