"""The executor: launches or targets an experiment's servers, runs its bench cells (resuming), runs the
homogeneous controls its findings call for, and writes the findings next to the cells.

Launched servers run one at a time; `layout.schedule` decides the order.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specwise.errors import SpecwiseError
from specwise.experiment.config import ExperimentConfig, Server, Workload
from specwise.experiment.controls import baseline_controls, control_cells
from specwise.experiment.findings import Findings, findings_from_disk, write_findings
from specwise.experiment.layout import (LaunchedServer, cell_complete, cell_dir, cell_seed, launched_servers,
                                        load_label, prepare, schedule, write_launched)
from specwise.results import MANIFEST, Manifest, WriteFailed
from specwise.urls import CREDENTIALS_WARNING, has_userinfo

if TYPE_CHECKING:
    from specwise.engine.server import ServerSpec


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
    schedule = tuple(tuple(band) for band in launch.k_schedule) if launch.k_schedule else None
    if launch.model is None:
        overrides: dict[str, Any] = {"extra_args": tuple(launch.extra_args), "k_schedule": schedule}
        if launch.dtype:
            overrides["dtype"] = launch.dtype
        spec = embedded(launch.mode, launch.k, log=lambda m: None, **overrides)
        return dataclasses.replace(spec, draft=launch.draft) if launch.draft and launch.mode == "draft" else spec
    return ServerSpec(model=launch.model, mode=launch.mode, draft=launch.draft, k=launch.k, k_schedule=schedule,
                      dtype=launch.dtype,
                      per_request_metrics=True, extra_args=tuple(launch.extra_args))


def _read_key(server: Server) -> str | None:
    from specwise.load import read_api_key

    return read_api_key(server.api_key_env, server.api_key_file)


class CellRunner:
    """Runs cells, launching each server when its first cell comes and keeping it up while the next cells
    are its own (across calls, so that a control can follow on the same server without a restart)."""

    def __init__(self, config: ExperimentConfig, root: Path, events: Events) -> None:
        self.config, self.root, self.events = config, root, events
        self.stack = ExitStack()
        # (server name, url, API key, the repetition it was started for)
        self.running: tuple[str, str, str | None, int] | None = None
        self.launched = launched_servers(root)

    def __enter__(self) -> CellRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _serve(self, server: Server, rep: int) -> tuple[str, str | None]:
        """The server's URL and API key, launching it when needed (with the key it generated: held in memory
        only). A launched baseline restarts for each repetition, so that its repetitions measure the
        restart-to-restart noise a speedup must clear."""
        restart = server.role == "baseline" and server.launch is not None
        if self.running and self.running[0] == server.name and not (restart and self.running[3] != rep):
            return self.running[1], self.running[2]
        from specwise.engine import require_vllm
        from specwise.engine.server import VllmServer
        from specwise.engine.vllm import CPU_MAX_NUM_SEQS, kv_report, weights_bytes

        self.stack.close()
        url, key = server.url, _read_key(server)
        if server.launch is not None:
            require_vllm()
            spec = _launch_spec(server)
            self.events.log(f"starting {server.name} ({server.launch.mode}) — the CPU engine takes a minute")
            handle = self.stack.enter_context(VllmServer(spec, self.root / "logs"))
            report = kv_report(handle.log_path)
            self.launched[server.name] = LaunchedServer(
                mode=server.launch.mode, k=server.launch.k, target_weights_bytes=weights_bytes(spec.model),
                draft_weights_bytes=weights_bytes(spec.draft), kv_cache_space_bytes=spec.kv_cache_space_gb * 2**30,
                max_num_seqs=CPU_MAX_NUM_SEQS, **(report.model_dump() if report else {}))
            write_launched(self.root, self.launched)
            url, key = handle.url, handle.api_key
        assert url is not None
        self.running = (server.name, url, key, rep)
        return url, key

    def run(self, cells: list[tuple[int, Server, Workload, float]]) -> None:
        """Run the incomplete ones of `cells`, in order."""
        from specwise.load import BenchConfig, execute_bench

        config, unit = self.config, self.config.loads.unit
        todo = [c for c in cells if not cell_complete(cell_dir(self.root, c[2].name, unit, c[3], c[1].name, c[0]))]
        self.events.planned(len(todo))
        for rep, server, workload, level in todo:
            url, key = self._serve(server, rep)
            directory = cell_dir(self.root, workload.name, unit, level, server.name, rep)
            if directory.exists():
                shutil.rmtree(directory)  # an interrupted cell is redone whole
            bench = BenchConfig(
                url=url, api=config.api, model=server.model,
                concurrency=int(level) if unit == "concurrency" else None, rate=level if unit == "rate" else None,
                requests=workload.requests or config.requests, warmup=config.warmup, max_tokens=config.max_tokens,
                temperatures=workload.temperatures, dataset=workload.dataset, k=server.spec_k,
                seed=cell_seed(config, workload.name, level, rep),
                slo_ms=config.slo.bench_limits(), workers=config.load_generator.workers,
                ray=config.load_generator.ray)
            label = f"{server.name} · {workload.name} · {load_label(unit, level)} · rep {rep + 1}"
            self.events.cell_start(label, (workload.requests or config.requests) + config.warmup)
            try:
                execute_bench(bench, directory, api_key=key, on_record=lambda r: self.events.request_done(r.ok))
            except WriteFailed:
                raise
            except SpecwiseError as exc:  # e.g. an unreachable URL: name the server, not a bench flag
                raise SpecwiseError(f"servers.{server.name}", exc.problem, exc.fix) from None
            if Manifest.model_validate_json((directory / MANIFEST).read_text()).stop_reason == "server_died":
                # The cells after it would fail the same way; this one stays incomplete and is redone on resume.
                raise SpecwiseError(f"servers.{server.name}", f"stopped accepting connections during {label}",
                                    "check it (a launched server's log is under logs/), then rerun the same "
                                    "command: finished cells are kept")
            self.events.cell_end(label)


def execute_experiment(config: ExperimentConfig, root: Path, events: Events) -> Findings:
    """The cells in schedule order; then, where P50 and P99 diverge on a mixed workload, its homogeneous
    control. On launched servers the control needs no restart: the baseline runs the controls of the mixed
    workloads at every load while it is up, and a candidate runs its own right after its cells, as soon
    as they show the divergence."""
    prepare(config, root)
    for server in config.servers:
        if server.url and has_userinfo(server.url):
            events.log(f"warning: servers.{server.name}.url: {CREDENTIALS_WARNING}")
    auto = config.control == "auto"
    by_name = {s.name: s for s in config.servers}

    def controls_for(rep: int, server: Server | None) -> list[tuple[int, Server, Workload, float]]:
        todo = control_cells(config, write_findings(root, findings_from_disk(root, config)))
        return [(r, by_name[name], workload, level) for workload, level, names in todo for name in names
                for r in ([rep] if server else range(config.repetitions)) if server is None or name == server.name]

    with CellRunner(config, root, events) as runner:
        for rep, server in schedule(config):
            cells = [(rep, server, w, level) for w in config.workloads for level in config.loads.levels]
            if auto and server.launch is not None and server.role == "baseline":
                cells += [(rep, server, w, level) for w in baseline_controls(config) for level in config.loads.levels]
            runner.run(cells)
            if auto and server.launch is not None and server.role == "candidate":
                extra = controls_for(rep, server)
                if extra:
                    events.log(f"{server.name}: P50 and P99 diverge on a mixed workload — running its homogeneous "
                               "low-temperature control")
                runner.run(extra)
        if auto:
            runner.run(controls_for(0, None))  # what the order left (e.g. a baseline that ran after a candidate)
    return write_findings(root, findings_from_disk(root, config))
