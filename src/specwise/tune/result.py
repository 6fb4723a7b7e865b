"""What `tune` found, on disk as tune.json: the surface (predicted and measured), the picks, the schedule, the
runs it spent against the full grid, and the A/B that proves or rejects the schedule — and the rule that turns
the A/B into a recommendation (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from specwise.tune.search import Cell, Measured

RESULT = "tune.json"
WINS = ("win", "probable win")


class SurfacePoint(BaseModel):
    k: int
    load: float
    predicted: float | None = Field(None, description="predicted P50 TPOT speedup over the baseline")
    low: float | None = None
    high: float | None = None
    measured: float | None = Field(None, description="the objective, candidate over baseline, where measured")
    speedup: float | None = Field(None, description="measured P50 TPOT speedup")
    breaks: list[str] = Field(default_factory=list, description="SLOs the baseline meets here and this k does not")
    by_search: bool = Field(False, description="measured by the search (else by the grid check, or not at all)")


class GridCheck(BaseModel):
    """At one load: the best k of the full grid against the search's pick, both measured in the same run."""

    load: float
    grid_k: int
    grid_value: float
    pick_k: int
    pick_value: float

    @property
    def shortfall(self) -> float:
        return 1 - self.pick_value / self.grid_value if self.grid_value > 0 else 0.0


class ProofRow(BaseModel):
    load: float
    k: int = Field(description="the schedule's k at this batch size")
    vs_baseline: str
    vs_baseline_why: str = ""
    vs_static: str | None = None
    vs_static_why: str = ""


class TuneResult(BaseModel):
    candidate: str
    workload: str
    objective: str
    ks: list[int]
    loads: list[float]
    surface: list[SurfacePoint]
    picks: dict[float, int] = Field(description="by load: the measured best k (0: no k beats the baseline)")
    batches: dict[float, float] = Field(default_factory=dict, description="by load: the batch the baseline really "
                                        "held there (sequences decoding at once, on average), where the schedule "
                                        "places it")
    schedule: list[list[int]] = Field(description="[[first batch size, last, k], …]")
    static_k: int | None = Field(None, description="the best single k across the loads")
    runs: int = Field(description="(k, load) runs the search made, the baseline's included")
    grid_runs: int = Field(description="runs of the full grid, the baseline's included")
    budget_runs: int
    grid: list[GridCheck] = Field(default_factory=list)
    proof: list[ProofRow] = Field(default_factory=list)
    decision: str | None = Field(None, description="the verdict on the tuned configuration against the baseline")
    recommended: str
    reasons: list[str] = Field(default_factory=list)
    command: str = ""
    command_notes: list[str] = Field(default_factory=list)


def surface_points(cells: Sequence[Cell], extra: Sequence[Measured] = ()) -> list[SurfacePoint]:
    """The surface; `extra` are the grid check's runs, shown as measured but not by the search."""
    others = {(m.k, m.load): m for m in extra}
    out = []
    for c in cells:
        m = c.measured or others.get((c.k, c.load))
        out.append(SurfacePoint(k=c.k, load=c.load, predicted=c.predicted, low=c.low, high=c.high,
                                measured=m.value if m else None, speedup=m.speedup if m else None,
                                breaks=list(m.breaks) if m else [], by_search=c.measured is not None))
    return out


def grid_check(picks: dict[float, int], everything: Sequence[Measured]) -> list[GridCheck]:
    """The search's picks against the best of every measured k at each load (k = 0, the baseline, is 1.0)."""
    out = []
    for load, k in sorted(picks.items()):
        here = [m for m in everything if m.load == load and m.eligible]
        best = max(here, key=lambda m: m.value or 0.0, default=None)
        grid_k, grid_value = (best.k, best.value or 0.0) if best and (best.value or 0.0) > 1.0 else (0, 1.0)
        mine = next((m for m in here if m.k == k), None)
        out.append(GridCheck(load=load, grid_k=grid_k, grid_value=grid_value, pick_k=k,
                             pick_value=(mine.value or 0.0) if mine else 1.0))
    return out


def judge(proof: Sequence[ProofRow], decision: str | None, static_k: int | None,
          static_by_load: dict[float, str]) -> tuple[str, list[str]]:
    """The recommendation among the schedule, the best static k and no speculation: the schedule when it loses
    nowhere — to the baseline or to the best static k — and wins somewhere; else the static k when its own A/B
    against the baseline loses nowhere and wins somewhere; else the schedule again when only the static k beat
    it somewhere and it still beats the baseline somewhere and loses to it nowhere — the static k cannot replace
    it (it loses to the baseline, or wins nowhere), and no speculation would give up the schedule's wins; the
    reasons say where the static k was better. Else no speculation."""
    to_baseline = [f"loses to the baseline at {r.load:g} ({r.vs_baseline_why})" for r in proof
                   if r.vs_baseline == "loss"]
    if decision == "DISABLE":
        to_baseline.append("the verdict against the baseline is DISABLE")
    to_static = [f"loses to static k={static_k} at {r.load:g} ({r.vs_static_why})" for r in proof
                 if r.vs_static == "loss"]
    won = ", ".join(f"{r.load:g}" for r in proof if r.vs_baseline in WINS)
    if won and not to_baseline and not to_static:
        return "schedule", [f"wins against the baseline at {won} and loses nowhere"]
    reasons = to_baseline + to_static + ([] if won else ["wins against the baseline at no load"])
    static_lost = sorted(load for load, o in static_by_load.items() if o == "loss")
    static_won = sorted(load for load, o in static_by_load.items() if o in WINS)
    if static_k is not None and static_won and not static_lost:
        reasons.append(f"static k={static_k} wins at {', '.join(f'{x:g}' for x in static_won)} and loses "
                       "nowhere")
        return f"static k={static_k}", reasons
    if won and not to_baseline:
        why = (f"loses to the baseline at {', '.join(f'{x:g}' for x in static_lost)}" if static_lost
               else "wins against the baseline nowhere")
        return "schedule", reasons + [f"static k={static_k} {why}: the schedule, which wins against the baseline "
                                      f"at {won} and loses to it nowhere, is the better choice all the same"]
    return "none", reasons + ["no configuration tested wins without losing somewhere: keep speculation off"]
