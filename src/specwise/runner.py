"""Executes an experiment: launches or targets its servers, runs its bench cells (resuming), runs the
homogeneous controls its findings call for, and writes the findings next to the cells.

Launched servers run one at a time; `experiment.schedule` decides the order.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwise.experiment import (ExperimentConfig, Server, Workload, cell_complete, cell_dir, cell_seed,
                                 iter_cell_dirs, load_label, main_cells, prepare)
from specwise.findings import Cells, Findings, analyze, control_cells
from specwise.results import Run, load_run, write_json_atomic

if TYPE_CHECKING:
    from specwise.engine.server import ServerSpec

FINDINGS = "findings.json"
SERVERS = "servers.json"


KV_LINE = re.compile(r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")


def server_report(log: Path) -> dict[str, float]:
    """What a launched vLLM said about its KV cache (the squeeze a draft causes is measured, not assumed)."""
    try:
        match = KV_LINE.search(log.read_text(errors="replace"))
    except OSError:
        return {}
    if not match:
        return {}
    return {"kv_cache_tokens": float(match[1].replace(",", "")), "context": float(match[2].replace(",", "")),
            "max_concurrency": float(match[3])}


def weights_bytes(directory: str | None) -> float:
    if not directory or not Path(directory).is_dir():
        return 0.0
    return float(sum(p.stat().st_size for p in Path(directory).glob("*.safetensors")))


class Events:
    """What the experiment tells its caller (the CLI draws progress from it)."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log

    def planned(self, count: int) -> None:
        """`count` more cells are about to run (the ones already complete are not counted)."""

    def cell_start(self, label: str, requests: int) -> None:
        self.log(f"cell {label}: {requests} requests")

    def request_done(self, ok: bool) -> None:
        pass

    def cell_end(self, label: str) -> None:
        pass


def _launch_spec(server: Server) -> ServerSpec:
    from specwise.engine.server import ServerSpec, embedded

    launch = server.launch
    assert launch is not None
    if launch.model is None:
        overrides: dict[str, Any] = {"extra_args": tuple(launch.extra_args)}
        if launch.dtype:
            overrides["dtype"] = launch.dtype
        spec = embedded(launch.mode, launch.k, log=lambda m: None, **overrides)
        return dataclasses.replace(spec, draft=launch.draft) if launch.draft and launch.mode == "draft" else spec
    return ServerSpec(model=launch.model, mode=launch.mode, draft=launch.draft, k=launch.k, dtype=launch.dtype,
                      per_request_metrics=True, extra_args=tuple(launch.extra_args))


def _read_key(server: Server) -> str | None:
    from specwise.benchmark import read_api_key

    return read_api_key(server.api_key_env, server.api_key_file)


def run_cells(config: ExperimentConfig, root: Path, cells: list[tuple[int, Server, Workload, float]],
              events: Events) -> None:
    """Run the incomplete ones of `cells`, launching each server once per stretch of its cells."""
    from specwise.benchmark import BenchConfig, run_bench
    from specwise.engine import require_vllm
    from specwise.engine.server import VllmServer

    todo = [c for c in cells if not cell_complete(cell_dir(root, c[2].name, config.loads.unit, c[3], c[1].name, c[0]))]
    events.planned(len(todo))
    servers_info_path = root / SERVERS
    info: dict[str, Any] = json.loads(servers_info_path.read_text()) if servers_info_path.exists() else {}
    with ExitStack() as stack:
        running: tuple[str, str] | None = None  # (server name, url)
        for rep, server, workload, level in todo:
            if running is None or running[0] != server.name:
                stack.close()
                if server.launch is not None:
                    require_vllm()
                    spec = _launch_spec(server)
                    events.log(f"starting {server.name} ({server.launch.mode}) — the CPU engine takes a minute")
                    handle = stack.enter_context(VllmServer(spec, root / "logs"))
                    info[server.name] = {"mode": server.launch.mode, "k": server.launch.k,
                                         "target_weights_bytes": weights_bytes(spec.model),
                                         "draft_weights_bytes": weights_bytes(spec.draft),
                                         "kv_cache_space_bytes": spec.kv_cache_space_gb * 2**30,
                                         # vLLM 0.32's default for an API server on a CPU (arg_utils.py)
                                         "max_num_seqs": 128, **server_report(handle.log_path)}
                    write_json_atomic(servers_info_path, info)
                    running = (server.name, handle.url)
                else:
                    assert server.url is not None
                    running = (server.name, server.url)
            directory = cell_dir(root, workload.name, config.loads.unit, level, server.name, rep)
            if directory.exists():
                shutil.rmtree(directory)  # an interrupted cell is redone whole
            bench = BenchConfig(
                url=running[1], api=config.api, model=server.model,
                concurrency=int(level) if config.loads.unit == "concurrency" else None,
                rate=level if config.loads.unit == "rate" else None, requests=config.requests, warmup=config.warmup,
                max_tokens=config.max_tokens, temperatures=workload.temperatures, dataset=workload.dataset,
                k=server.spec_k, seed=cell_seed(config, workload.name, level, rep),
                slo_ms={k.removeprefix("p99_"): v for k, v in config.slo.as_limits().items()})
            label = f"{server.name} · {workload.name} · {load_label(config.loads.unit, level)} · rep {rep + 1}"
            events.cell_start(label, config.requests + config.warmup)
            run_bench(bench, directory, api_key=_read_key(server), on_record=lambda r: events.request_done(r.ok))
            events.cell_end(label)


def load_cells(root: Path, config: ExperimentConfig) -> Cells:
    cells: Cells = {}
    labels = {load_label(config.loads.unit, level): level for level in config.loads.levels}
    for workload, label, server, _rep, directory in iter_cell_dirs(root):
        if label in labels:
            cells.setdefault((server, workload, labels[label]), []).append(load_run(directory))
    return cells


def servers_info(root: Path) -> dict[str, Any]:
    path = root / SERVERS
    return json.loads(path.read_text()) if path.exists() else {}


def findings_of(root: Path, config: ExperimentConfig) -> Findings:
    findings = analyze(config, load_cells(root, config), servers_info(root), seed=config.seed)
    write_json_atomic(root / FINDINGS, findings.model_dump(mode="json"))
    return findings


def run_experiment(config: ExperimentConfig, root: Path, events: Events) -> Findings:
    prepare(config, root)
    run_cells(config, root, main_cells(config), events)
    findings = findings_of(root, config)
    if config.control == "auto":
        controls = control_cells(config, findings)
        if controls:
            by_name = {s.name: s for s in config.servers}
            cells = [(rep, by_name[name], workload, level) for workload, level, names in controls
                     for rep in range(config.repetitions) for name in names]
            events.log("P50 and P99 diverge on a mixed workload: running the homogeneous low-temperature control")
            run_cells(config, root, cells, events)
            findings = findings_of(root, config)
    return findings
