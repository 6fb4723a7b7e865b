"""k and the batch-size schedule: the surface predicted from a few measurements, and the schedule vLLM
takes (pure). The search runner and the A/B proof are built on this by the `tune` issue."""

from specwise.tune.predict import (Prediction, StepCost, StepFit, StepPoint, best_by_batch, fit_step_cost, predict,
                                   schedule, to_measure, tokens_per_step)

__all__ = ["Prediction", "StepCost", "StepFit", "StepPoint", "best_by_batch", "fit_step_cost", "predict", "schedule",
           "to_measure", "tokens_per_step"]
