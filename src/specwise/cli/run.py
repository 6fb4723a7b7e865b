"""`specwise run` (an A/B experiment from YAML), `specwise report RUN_DIR` and `specwise demo`."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from specwise.cli import EXIT_INTERRUPTED, app
from specwise.cli.bench import EXIT_TERMINATED
from specwise.errors import SpecwiseError, check_out_dir

if TYPE_CHECKING:
    from specwise.experiment import Events, ExperimentConfig, Findings

EXAMPLE = """\b
Example experiment file:
  name: chat-ab
  servers:
    - {name: baseline, role: baseline, url: http://10.0.0.5:8000}
    - {name: eagle, url: http://10.0.0.6:8000, k: 4, api_key_env: VLLM_KEY}
  workloads:
    - {name: code, dataset: structured, temperatures: "0.2"}
    - {name: chat, dataset: prompts.jsonl, temperatures: "0.1:60,1.0:40",
       production_temperatures: "0.1:50,0.7:20,1.0:30", requests: 128}
  loads: {concurrency: [1, 4, 16, 64]}      # or rate: [0.5, 2, 8]
  repetitions: 2
  requests: 64
  max_tokens: 128
  slo: {p99_tpot_ms: 60}
  primary_slo: tpot                         # tpot | ttft | e2e | throughput
  monitoring: false                         # is acceptance monitored in production?
  memory: {device_gb: 160, target_weights_gb: 70, draft_weights_gb: 16}
A server specwise starts instead of a URL: launch: {mode: draft, k: 4} (the embedded pair),
or launch: {mode: draft, model: TARGET_DIR, draft: DRAFT_DIR}."""


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


@contextmanager
def progress_events(console: Console) -> Iterator[Events]:
    """An experiment's events drawn as progress bars: the cells to run, and the current cell's requests."""
    from specwise.experiment import Events

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        cells = progress.add_task("cells to run", total=0)
        current = progress.add_task("", total=1, visible=False)

        class Shown(Events):
            def planned(self, count: int) -> None:
                progress.update(cells, total=(progress.tasks[cells].total or 0) + count)

            def cell_start(self, label: str, requests: int) -> None:
                progress.reset(current, total=requests, description=f"  {label}", visible=True)

            def request_done(self, ok: bool) -> None:
                progress.advance(current)

            def cell_end(self, label: str) -> None:
                progress.update(current, visible=False)
                progress.advance(cells)

        yield Shown(lambda m: progress.console.print(m, highlight=False, markup=False))


@contextmanager
def interruptible(out: Path, console: Console) -> Iterator[None]:
    """Ctrl-C or SIGTERM between or inside cells: the launched servers stop on the way out, the finished cells
    stay, and the exit says how to resume."""
    from specwise.load.bench import Terminated, sigterm_as_terminated

    try:
        with sigterm_as_terminated():
            yield
    except KeyboardInterrupt as stop:
        console.print("interrupted: finished cells are kept; resume with the same command and --out "
                      f"{shlex.quote(str(out))}", highlight=False, markup=False)
        raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None


def _execute(config: ExperimentConfig, out: Path, console: Console) -> Findings:
    from specwise.experiment import execute_experiment

    with progress_events(console) as events:
        return execute_experiment(config, out, events)


def _finish(findings: Findings, out: Path, console: Console, started: float) -> None:
    from specwise.report import render_verdicts, write_report

    paths = write_report(findings, out)
    render_verdicts(findings, console)
    console.print(f"report: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name})", highlight=False)
    console.print(f"done in {time.monotonic() - started:.0f} s", highlight=False)


def _run(config: ExperimentConfig, out: Path, console: Console) -> None:
    started = time.monotonic()
    console.print(f"experiment {config.name}: {len(config.servers)} servers × {len(config.workloads)} workloads × "
                  f"{len(config.loads.levels)} loads × {config.repetitions} repetition(s), {config.requests} requests "
                  f"per cell → {out}", highlight=False)
    with interruptible(out, console):
        findings = _execute(config, out, console)
    _finish(findings, out, console, started)


@app.command(epilog=EXAMPLE)
def run(
    file: Optional[Path] = typer.Argument(None, help="Experiment YAML file (see the example below)."),
    quick: bool = typer.Option(False, "--quick", help="The built-in experiment on the embedded pair: baseline, "
                               "draft and n-gram; structured T=0 and mixed temperatures; concurrency 1 and 8."),
    out: Optional[Path] = typer.Option(None, "--out", help="Experiment directory (default specwise-runs/NAME-TIME). "
                                       "An existing one of the same experiment is resumed."),
) -> None:
    """Run an A/B experiment — baseline vs speculative candidates, same prompts, temperatures and loads — and
    give a verdict with its reasons, and a report."""
    from specwise.experiment import load_config, quick_config

    if (file is None) == (not quick):
        raise SpecwiseError("FILE/--quick", "give an experiment file or --quick", "e.g. specwise run exp.yaml")
    config = quick_config() if quick else load_config(file)  # type: ignore[arg-type]
    _run(config, check_out_dir(out or Path("specwise-runs") / f"{config.name}-{_stamp()}"), Console(stderr=False))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A directory written by specwise run / demo, or by "
                                         "specwise watch --record.")) -> None:
    """Rebuild the HTML, Markdown and JSON report of an experiment (or of a recorded watch) from its directory
    alone."""
    from specwise.experiment import findings_from_disk, stored_config, write_findings

    started = time.monotonic()
    if (run_dir / "manifest.json").exists():
        from specwise.report import write_watch_report
        from specwise.results import load_run

        run = load_run(run_dir)
        if run.manifest.kind == "specwise.watch":
            paths = write_watch_report(run)
            Console().print(f"report: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name})",
                            highlight=False)
            return
    config = stored_config(run_dir)
    _finish(write_findings(run_dir, findings_from_disk(run_dir, config)), run_dir, Console(), started)


@app.command()
def demo(out: Optional[Path] = typer.Option(None, "--out", help="Experiment directory (default "
                                            "specwise-runs/demo-TIME); an existing one is resumed.")) -> None:
    """The whole loop on the embedded CPU pair: builds the pair if needed, then `specwise run --quick`, the
    verdicts and the report."""
    from specwise.engine import require_vllm
    from specwise.engine.pair import ensure_pair
    from specwise.experiment import quick_config

    console = Console()
    out = check_out_dir(out or Path("specwise-runs") / f"demo-{_stamp()}")
    require_vllm()
    ensure_pair(lambda m: console.print(m, highlight=False))
    config = quick_config().model_copy(update={"name": "demo"})
    _run(config, out, console)
