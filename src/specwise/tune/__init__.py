"""`specwise tune`: k and the batch-size schedule for one candidate — the surface predicted from a few runs
(`predict`, pure), the search and the picks (`search`, pure), the result and its proof's rule (`result`), and
the runner that measures and proves it (`runner`, the shell)."""

from specwise.tune.predict import Prediction, StepCost, StepFit, StepPoint, fit_step_cost, predict, tokens_per_step
from specwise.tune.result import RESULT, GridCheck, ProofRow, SurfacePoint, TuneResult, judge
from specwise.tune.search import Measured, bands, best_static, choice, contenders, next_runs, surface

__all__ = ["RESULT", "GridCheck", "Measured", "Prediction", "ProofRow", "StepCost", "StepFit", "StepPoint",
           "SurfacePoint", "TuneResult", "bands", "best_static", "choice", "contenders", "execute_tune",
           "fit_step_cost", "judge", "next_runs", "predict", "surface", "tokens_per_step"]


def __getattr__(name: str) -> object:
    # The runner pulls in the experiment executor; the pure parts stay importable without it.
    if name == "execute_tune":
        from specwise.tune.runner import execute_tune

        return execute_tune
    raise AttributeError(name)
