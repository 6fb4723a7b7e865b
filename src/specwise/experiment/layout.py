"""An experiment on disk: where its cells live, which are complete, the order they run in, and what the
servers specwise launched reported.

    EXP_DIR/experiment.json                          the validated config (a resume must match it)
    EXP_DIR/servers.json                             what each launched server reported (LaunchedServer)
    EXP_DIR/cells/WORKLOAD/LOAD/SERVER/repN/         one bench run each (a *cell*)
    EXP_DIR/findings.json                            the analysis, rebuilt by `specwise report`
    EXP_DIR/logs/                                    the launched servers' logs

Servers specwise launches run one at a time on the same hardware; the order of the
servers alternates between repetitions (A B, then B A) so that drift cancels, and a
server that ends one repetition starts the next without a restart. A and B get the same
prompts, temperatures and seeds. A cell whose manifest says complete is never rerun; an
interrupted experiment resumes at the first incomplete cell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, RootModel

from specwise.analysis import CellRuns
from specwise.errors import SpecwiseError, parse_json, read_model, read_text
from specwise.experiment.config import ExperimentConfig, Server
from specwise.results import MANIFEST, Manifest, Run, load_run, write_json_atomic

FINDINGS = "findings.json"
SERVERS = "servers.json"
EXPERIMENT_FIX = "give a directory written by specwise run"

Cells = dict[tuple[str, str, float], list[Run]]   # (server, workload, load) → repetitions


class LaunchedServer(BaseModel):
    """What a server specwise launched was given and reported: the memory evidence of the CPU engine."""

    mode: str
    k: int
    target_weights_bytes: float
    draft_weights_bytes: float
    kv_cache_space_bytes: float
    max_num_seqs: int
    kv_cache_tokens: float | None = None
    context: float | None = None
    max_concurrency: float | None = None


class LaunchedServers(RootModel[dict[str, LaunchedServer]]):
    """servers.json: each launched server by name."""


def load_label(unit: str, level: float) -> str:
    return f"{'c' if unit == 'concurrency' else 'r'}{level:g}"


def cell_dir(root: Path, workload: str, unit: str, level: float, server: str, rep: int) -> Path:
    return root / "cells" / workload / load_label(unit, level) / server / f"rep{rep}"


def cell_complete(directory: Path) -> bool:
    try:
        return Manifest.model_validate_json((directory / MANIFEST).read_text()).complete
    except (OSError, ValueError):
        return False


def cell_seed(config: ExperimentConfig, workload: str, level: float, rep: int) -> int:
    """The same for every server: A and B get the same prompts, temperatures and seeds."""
    names = [w.name for w in config.workloads]
    index = names.index(workload) if workload in names else len(names)
    return config.seed * 1_000_003 + index * 10_007 + int(level * 1000) * 101 + rep


def schedule(config: ExperimentConfig) -> list[tuple[int, Server]]:
    """(repetition, server) in run order: the server order alternates between repetitions."""
    order: list[tuple[int, Server]] = []
    for rep in range(config.repetitions):
        servers = config.servers if rep % 2 == 0 else list(reversed(config.servers))
        order += [(rep, s) for s in servers]
    return order


def prepare(config: ExperimentConfig, root: Path) -> None:
    """Create the experiment directory, or check that a resumed one holds this same experiment."""
    stored = root / "experiment.json"
    if root.exists() and not stored.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SpecwiseError("--out", f"{root} holds something else than an experiment",
                            "give a new --out directory, or remove this one")
    root.mkdir(parents=True, exist_ok=True)
    data = config.model_dump(mode="json")
    if stored.exists():
        fix = "give a new --out directory"
        if parse_json(read_text(stored, "--out", fix), "--out", str(stored), fix) != data:
            raise SpecwiseError("--out", f"{root} holds a different experiment",
                                "give a new --out directory, or the same experiment file to resume")
        return
    write_json_atomic(stored, data)


def stored_config(root: Path) -> ExperimentConfig:
    path = root / "experiment.json"
    if not path.exists():
        raise SpecwiseError("RUN_DIR", f"{root} holds no experiment.json", EXPERIMENT_FIX)
    return read_model(path, ExperimentConfig, "RUN_DIR", EXPERIMENT_FIX)


def iter_cell_dirs(root: Path) -> Iterator[tuple[str, str, str, int, Path]]:
    """(workload, load label, server, rep, directory) of every stored cell."""
    for directory in sorted((root / "cells").glob("*/*/*/rep*")):
        if not directory.name.removeprefix("rep").isdigit():
            continue  # not a cell specwise wrote (rep1.bak, a stray file)
        workload, label, server = directory.parts[-4:-1]
        yield workload, label, server, int(directory.name.removeprefix("rep")), directory


def load_cells(root: Path, config: ExperimentConfig) -> Cells:
    cells: Cells = {}
    labels = {load_label(config.loads.unit, level): level for level in config.loads.levels}
    for workload, label, server, _rep, directory in iter_cell_dirs(root):
        if label in labels:
            cells.setdefault((server, workload, labels[label]), []).append(load_run(directory))
    return cells


def served_models(root: Path) -> dict[str, str]:
    """Each server's served model name, as its cells' manifests recorded it (what its metrics are labelled by)."""
    out: dict[str, str] = {}
    for _workload, _label, server, _rep, directory in iter_cell_dirs(root):
        if server not in out:
            try:
                out[server] = Manifest.model_validate_json((directory / MANIFEST).read_text()).model
            except (OSError, ValueError):
                continue
    return out


def launched_servers(root: Path) -> dict[str, LaunchedServer]:
    path = root / SERVERS
    if not path.exists():
        return {}
    return read_model(path, LaunchedServers, "RUN_DIR", EXPERIMENT_FIX).root


def write_launched(root: Path, servers: dict[str, LaunchedServer]) -> None:
    write_json_atomic(root / SERVERS, {name: s.model_dump(exclude_none=True) for name, s in servers.items()})


def cell_runs(cells: Cells, server: str, workload: str, level: float) -> CellRuns | None:
    runs = cells.get((server, workload, level))
    return CellRuns(server, workload, level, tuple(runs)) if runs else None
