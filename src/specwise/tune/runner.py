"""The shell of `tune`: the search's rounds as cells of an experiment (OUT/search/, one server per k, launched
one at a time), the optional grid check, then the proof — an experiment of the baseline, the tuned schedule and
the best static k (OUT/verify/) through the verdict — and tune.json. Interrupted, it resumes: finished cells
are kept, and the search's rounds are replayed from them to the same decisions."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

from specwise.analysis.compare import compare
from specwise.experiment.config import ExperimentConfig, Server, Tune, Workload
from specwise.experiment.executor import CellRunner, Events, execute_experiment
from specwise.experiment.findings import build_findings
from specwise.experiment.layout import cell_runs, launched_servers, load_cells, prepare
from specwise.results import write_json_atomic
from specwise.tune.result import RESULT, ProofRow, TuneResult, grid_check, judge, surface_points
from specwise.tune.search import (Measured, Objective, bands, batch_at, best_static, choice, first_round, fit,
                                  measured, next_runs, surface)

if TYPE_CHECKING:
    from specwise.engine.server import ServerSpec
    from specwise.verdict import Verdict

SEARCH, VERIFY = "search", "verify"
BASELINE_K = 0


def _tune(config: ExperimentConfig) -> Tune:
    assert config.tune is not None
    return config.tune


def k_server(config: ExperimentConfig, name: str, k: int, schedule: list[list[int]] | None = None) -> Server:
    """The candidate at one k, or with a schedule: launched with it, or the URL the user gave for it."""
    cand, tune = config.tune_candidate, _tune(config)
    if cand.launch is not None:
        launch = cand.launch.model_copy(update={"k": k, "k_schedule": [tuple(b) for b in schedule] if schedule
                                                else None})
        return cand.model_copy(update={"name": name, "launch": launch, "k": None})
    return cand.model_copy(update={"name": name, "url": tune.urls["schedule" if schedule else str(k)], "k": k})


def search_config(config: ExperimentConfig) -> ExperimentConfig:
    tune = _tune(config)
    return config.model_copy(update={
        "name": f"{config.name}-search",
        "servers": [config.baseline, *(k_server(config, f"k{k}", k) for k in tune.ks)],
        "workloads": [config.tune_workload], "repetitions": 1, "control": "prescribe", "tune": None})


def verify_config(config: ExperimentConfig, schedule: list[list[int]], static_k: int | None) -> ExperimentConfig:
    tune = _tune(config)
    ks = {k for _lo, _hi, k in schedule}
    # One k at every batch size: the schedule is that static k.
    servers = [config.baseline, k_server(config, "tuned", max(ks), schedule if len(ks) > 1 else None)]
    if static_k is not None and not (len(ks) == 1 and static_k in ks):
        servers.append(k_server(config, f"static-k{static_k}", static_k))
    return config.model_copy(update={
        "name": f"{config.name}-verify", "servers": servers, "workloads": [config.tune_workload],
        "primary_slo": "throughput" if tune.objective == "throughput" else config.primary_slo, "tune": None})


def _measured_runs(sconf: ExperimentConfig, root: Path, keys: set[tuple[int, float]],
                   objective: Objective) -> list[Measured]:
    cells, workload = load_cells(root, sconf), sconf.workloads[0].name
    out = []
    for k, level in sorted(keys):
        base, cand = cell_runs(cells, sconf.baseline.name, workload, level), cell_runs(cells, f"k{k}", workload,
                                                                                         level)
        if base and cand:
            out.append(measured(k, compare(base, cand, sconf.seed), objective, sconf.slo.as_limits()))
    return out


def execute_tune(config: ExperimentConfig, root: Path, events: Events) -> TuneResult:
    tune = _tune(config)
    sconf = search_config(config)
    sroot = root / SEARCH
    prepare(sconf, sroot)
    levels, ks = config.loads.levels, tune.ks
    workload = sconf.workloads[0]
    by_name = {s.name: s for s in sconf.servers}
    grid_runs = len(levels) * (len(ks) + 1)
    budget = max(math.floor(tune.budget * grid_runs), 2 * len(levels))

    def cells_of(keys: list[tuple[int, float]]) -> list[tuple[int, Server, Workload, float]]:
        return [(0, by_name[f"k{k}" if k else sconf.baseline.name], workload, level) for k, level in keys]

    spent: set[tuple[int, float]] = set()
    with CellRunner(sconf, sroot, events) as runner:
        todo = [(BASELINE_K, level) for level in levels] + first_round(ks, levels)
        while todo:
            runner.run(cells_of(todo))
            spent |= {key for key in todo if key[0]}
            runs = _measured_runs(sconf, sroot, spent, tune.objective)
            cells = surface(runs, ks, levels, config.seed)
            todo = next_runs(cells, budget - len(levels) - len(spent))
            if todo:
                events.log(f"search: k={todo[0][0]} at {', '.join(f'{lv:g}' for _k, lv in todo)} "
                           f"({len(levels) + len(spent)} of at most {budget} runs so far)")
        grid_extra: list[Measured] = []
        if tune.grid:
            rest = [(k, level) for k in ks for level in levels if (k, level) not in spent]
            events.log(f"grid check: the {len(rest)} runs the search skipped")
            runner.run(cells_of(rest))
            grid_extra = _measured_runs(sconf, sroot, set(rest), tune.objective)
    picked = choice(cells, levels)
    picks = {level: m.k if m else 0 for level, m in picked.items()}
    static_k = best_static(cells, ks, levels)
    cand = config.tune_candidate
    max_batch = _max_batch(config, cand)
    schedule = ([list(b) for b in tune.schedule] if tune.schedule
                else bands(picks, fit(runs, config.seed), runs, max_batch))
    result = TuneResult(
        candidate=cand.name, workload=workload.name, objective=tune.objective, ks=ks, loads=levels,
        surface=surface_points(cells, grid_extra), picks=picks, schedule=schedule, static_k=static_k,
        batches={level: batch_at(runs, level) for level in levels},
        runs=len(levels) + len(spent), grid_runs=grid_runs, budget_runs=budget,
        grid=grid_check(picks, runs + grid_extra) if tune.grid else [], recommended="none")
    if not any(k for _lo, _hi, k in schedule):
        result.reasons = ["no k beats the baseline at any load measured: keep speculation off"]
    elif tune.verify and _unserved(config, schedule):
        result.recommended = "unproven"
        result.reasons = ["no server with the schedule to prove it on: start it with the command below, give its URL "
                          "as tune.urls.schedule and rerun with the same --out (the search's runs are kept)"]
    elif tune.verify:
        result = _prove(config, root, events, result)
    else:
        result.recommended, result.reasons = "unproven", ["tune.verify is off: the schedule was not A/B tested"]
    result = result.model_copy(update=_command(config, result))
    write_json_atomic(root / RESULT, result.model_dump(mode="json"))
    return result


def _unserved(config: ExperimentConfig, schedule: list[list[int]]) -> bool:
    """A schedule of several k values on servers specwise does not launch, and no URL for its server."""
    one_k = len({k for _lo, _hi, k in schedule}) == 1
    return config.tune_candidate.launch is None and not one_k and "schedule" not in _tune(config).urls


def _max_batch(config: ExperimentConfig, cand: Server) -> int:
    if cand.launch is not None:
        from specwise.engine.vllm import CPU_MAX_NUM_SEQS

        return CPU_MAX_NUM_SEQS
    return cand.max_num_seqs


def _prove(config: ExperimentConfig, root: Path, events: Events, result: TuneResult) -> TuneResult:
    vconf = verify_config(config, result.schedule, result.static_k)
    vroot = root / VERIFY
    events.log(f"proof: {', '.join(s.name for s in vconf.servers)} at every load, {vconf.repetitions} "
               "repetition(s)")
    findings = execute_experiment(vconf, vroot, events)
    tuned = next(f for f in findings.findings if f.candidate == "tuned")
    static_name = next((s.name for s in vconf.servers if s.name.startswith("static-")), None)
    static_verdict = tuned.verdict
    vs_static: dict[float, tuple[str, str]] = {}
    if static_name is not None:
        static_verdict = next(f for f in findings.findings if f.candidate == static_name).verdict
        # tuned against the static k: the same cells, the static k in the baseline's place
        view = vconf.model_copy(update={"servers": [
            next(s for s in vconf.servers if s.name == static_name).model_copy(update={"role": "baseline"}),
            next(s for s in vconf.servers if s.name == "tuned")]})
        head = build_findings(view, load_cells(vroot, vconf), launched_servers(vroot), seed=config.seed).findings[0]
        vs_static = {load: (_outcome(head.verdict, load), head.verdict.why_by_load.get(load, ""))
                     for load in head.verdict.by_load}
    rows = []
    for level in result.loads:
        b = max(1, round(result.batches.get(level, level)))
        k = next((k for lo, hi, k in result.schedule if lo <= b <= hi), result.schedule[-1][2])
        rows.append(ProofRow(load=level, k=k, vs_baseline=_outcome(tuned.verdict, level),
                             vs_baseline_why=tuned.verdict.why_by_load.get(level, ""),
                             **_against_static(vs_static.get(level), k, result.static_k)))
    static_by_load = {load: _outcome(static_verdict, load) for load in static_verdict.by_load}
    recommended, reasons = judge(rows, tuned.verdict.decision.value, result.static_k, static_by_load)
    return result.model_copy(update={"proof": rows, "decision": tuned.verdict.decision.value,
                                     "recommended": recommended, "reasons": reasons})


def _against_static(found: tuple[str, str] | None, k: int, static_k: int | None) -> dict[str, str | None]:
    """Where the schedule serves the static k itself the two are one configuration: their difference there is
    run-to-run noise (a P99 of a few dozen requests), not a loss."""
    if found is None:
        return {"vs_static": None, "vs_static_why": ""}
    if k == static_k:
        return {"vs_static": "same k", "vs_static_why": f"the schedule serves k={k} here too"}
    return {"vs_static": found[0], "vs_static_why": found[1]}


def _outcome(verdict: Verdict, load: float) -> str:
    """The verdict's outcome at a load, a loss by less than the noise floor read as a tie: the issue's bar is
    a schedule that loses "beyond the noise floor"."""
    if load in verdict.within_noise:
        return "tie (a loss within the noise floor)"
    return verdict.by_load.get(load, "not measured")


def _spec(config: ExperimentConfig, k: int, schedule: list[list[int]] | None) -> ServerSpec:
    """The candidate's server at k (or with a schedule), as the planner's generator writes its command; for a
    server specwise does not launch, its model name (or TARGET) and DRAFT stand in for the paths."""
    from specwise.engine.server import ServerSpec, embedded

    cand = config.tune_candidate
    bands_ = tuple(tuple(b) for b in schedule) if schedule else None
    launch = cand.launch
    if launch is not None and launch.model is None:
        base = embedded(launch.mode, build=False, log=lambda m: None)
    elif launch is not None:
        base = ServerSpec(model=launch.model, mode=launch.mode, draft=launch.draft)
    else:  # a GPU server: its own context length, not the embedded pair's
        base = ServerSpec(model=cand.model or "TARGET", mode="draft", draft="DRAFT", max_model_len=0)
    # The printed command is the one a user runs: without the per-request metrics specwise launches with.
    return dataclasses.replace(base, k=k, k_schedule=bands_, per_request_metrics=False)


def _command(config: ExperimentConfig, result: TuneResult) -> dict[str, object]:
    """The vLLM command of what is recommended (of the schedule while it awaits its proof), from the planner's
    generator (`specwise plan`'s)."""
    from specwise.engine.vllm import installed_vllm_version

    if result.recommended in ("schedule", "unproven"):
        spec = _spec(config, 1, result.schedule)
    elif result.recommended.startswith("static k=") and result.static_k:
        spec = _spec(config, result.static_k, None)
    else:
        return {}
    command = spec.command(vllm_version=installed_vllm_version())
    return {"command": command.shell, "command_notes": command.notes}


def launch_commands(config: ExperimentConfig) -> list[str]:
    """What the user starts for a tune on servers specwise does not launch: one server per k, then the
    schedule's (known only after the search, unless given)."""
    from specwise.engine.vllm import installed_vllm_version

    tune, version = _tune(config), installed_vllm_version()
    lines = [f"# k={k} (tune.urls \"{k}\"):\n{_spec(config, k, None).command(vllm_version=version).shell}"
             for k in tune.ks]
    if tune.schedule:
        lines.append(f"# the schedule (tune.urls \"schedule\"):\n"
                     f"{_spec(config, 1, [list(b) for b in tune.schedule]).command(vllm_version=version).shell}")
    else:
        lines.append("# the schedule's server (tune.urls \"schedule\"): its command is printed when the search "
                     "ends; start it and rerun the same command with the same --out to prove it")
    return lines
