"""The homogeneity control (SPEC §1.5), in one place. When P50 TPOT improves while P99 regresses on a
mixed-temperature workload, the same load rerun with one low temperature tells a mixed-workload
problem (P99 tightens) from a speculative-decoding one (it regresses too). Here: which workload is
the control, whether a workload needs one, its result as evidence, the command that runs it by
hand on servers specwise does not launch, and the control cells an experiment still has to run."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from specwise.analysis import LoadComparison, compare
from specwise.experiment.config import ExperimentConfig, Server, Workload
from specwise.experiment.layout import Cells, cell_runs
from specwise.urls import redact
from specwise.verdict import Control, LoadEvidence, divergent_loads
from specwise.verdict import needs_control as mix_needs_control

if TYPE_CHECKING:  # findings reads the controls' evidence; the controls to run read the findings
    from specwise.experiment.findings import Findings

CONTROL_SUFFIX = "-control"


class ControlResult(BaseModel):
    """A finding's control: the comparison on the control workload, or the command that would run it."""

    workload: str
    load: float
    comparison: LoadComparison | None = None
    prescription: str | None = None


def control_workload(workload: Workload) -> Workload:
    """The homogeneous low-temperature control of a mixed workload: same prompts, its lowest temperature."""
    low = min(t for t, _ in workload.mix)
    return Workload(name=workload.name + CONTROL_SUFFIX, dataset=workload.dataset, temperatures=f"{low:g}")


def control_name(workload: Workload) -> str:
    """The workload that serves as the control: declared in the experiment, or the derived one."""
    return workload.control or control_workload(workload).name


def needs_control(workload: Workload) -> bool:
    return mix_needs_control(workload.mix)


def prescription(config: ExperimentConfig, server: Server, workload: Workload, level: float) -> str:
    """The command that runs the control on the candidate (the baseline needs the same)."""
    control = control_workload(workload)
    flag = "--concurrency" if config.loads.unit == "concurrency" else "--rate"
    # Shell-quoted (a dataset path may hold spaces or quotes) and with the URL redacted: it is printed and stored.
    return shlex.join(["specwise", "bench", "--url", redact(server.url) if server.url else "URL",
                       "--dataset", control.dataset, "--temperatures", control.temperatures, flag, f"{level:g}",
                       "--requests", str(config.requests), "--max-tokens", str(config.max_tokens)])


def control_evidence(config: ExperimentConfig, cells: Cells, candidate: Server, workload: Workload,
                     loads: Sequence[LoadEvidence], seed: int = 0) -> tuple[Control | None, ControlResult | None]:
    """The control at the first load where P50 and P99 diverge: the workload itself when it is homogeneous,
    the control's measured comparison when its cells exist, else the command that would run it."""
    div = divergent_loads(loads)
    if not div:
        return None, None
    level = div[0]
    if not needs_control(workload):
        return Control(load=level, homogeneous=True), None
    name = control_name(workload)
    base = cell_runs(cells, config.baseline.name, name, level)
    cand = cell_runs(cells, candidate.name, name, level)
    if base and cand:
        cmp = compare(base, cand, seed)
        return (Control(load=level, tpot_p99_speedup=cmp.tpot_p99_speedup),
                ControlResult(workload=name, load=level, comparison=cmp))
    text = prescription(config, candidate, workload, level)
    return Control(load=level, prescription=text), ControlResult(workload=name, load=level, prescription=text)


def baseline_controls(config: ExperimentConfig) -> list[Workload]:
    """What a launched baseline runs while it is up, at every load: the controls of the mixed workloads
    that declare none (a candidate may need them; running them later would cost a restart)."""
    return [control_workload(w) for w in config.workloads if needs_control(w) and w.control is None]


def control_cells(config: ExperimentConfig, findings: Findings) -> list[tuple[Workload, float, list[str]]]:
    """The controls still to run: (control workload, load, servers) for each prescribed control of a
    workload whose control is not part of the experiment, on servers that specwise launches."""
    todo: dict[tuple[str, float], set[str]] = {}
    declared = {w.name for w in config.workloads}
    for f in findings.findings:
        workload = config.workload(f.workload)
        if f.control is None or f.control.prescription is None or workload.control in declared:
            continue
        servers = [config.baseline, next(s for s in config.candidates if s.name == f.candidate)]
        if any(s.launch is None for s in servers):
            continue  # external servers: prescribed, not run
        todo.setdefault((workload.name, f.control.load), set()).update(s.name for s in servers)
    order = [s.name for s in config.servers]
    return [(control_workload(config.workload(w)), level, sorted(names, key=order.index))
            for (w, level), names in sorted(todo.items())]
