"""`specwise tune`: k and the batch-size schedule for one candidate, searched with few runs and proven by an A/B."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from specwise.cli import app
from specwise.cli.run import _stamp, interruptible, progress_events
from specwise.errors import SpecwiseError, check_out_dir

if TYPE_CHECKING:
    from specwise.experiment.config import Tune

EXAMPLE = """\b
An experiment file with a tune section (its baseline and the candidate to tune):
  servers:
    - {name: baseline, role: baseline, url: http://10.0.0.5:8000}
    - {name: draft, url: http://10.0.0.6:8000, model: llama-3.1-70b}
  workloads: [{name: chat, dataset: prompts.jsonl, temperatures: "0.1:60,1.0:40"}]
  loads: {concurrency: [1, 8, 32, 128]}
  slo: {p99_tpot_ms: 60}
  tune:
    ks: [1, 2, 3, 4, 5, 6]
    objective: tpot            # tpot | throughput | goodput (needs slo)
    budget: 0.5                # at most this share of the full grid's runs
    urls: {"1": http://10.0.0.6:8001, "2": http://10.0.0.6:8002, ..., schedule: http://10.0.0.6:8100}
Launched candidates (launch: {mode: draft, ...}) are restarted per k by specwise instead."""


@app.command(epilog=EXAMPLE)
def tune(
    file: Optional[Path] = typer.Argument(None, help="Experiment YAML file with a tune: section."),
    quick: bool = typer.Option(False, "--quick", help="The embedded pair's draft model, k 1–6, concurrency 1, 4, "
                               "16."),
    out: Optional[Path] = typer.Option(None, "--out", help="Tune directory (default specwise-runs/NAME-TIME); an "
                                       "existing one of the same experiment is resumed."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="Prove this schedule instead of the searched "
                                           "one, as JSON: '[[1, 4, 3], [5, 256, 1]]', each band its first and last "
                                           "batch size and its k."),
    grid: bool = typer.Option(False, "--grid", help="Also measure every (k, load) the search skipped, to check "
                              "its picks against the full grid's."),
    print_commands: bool = typer.Option(False, "--print-commands", help="Print the vLLM command of every server "
                                        "the tune needs (one per k, and the schedule's), then exit."),
) -> None:
    """Find the k per batch-size band that serves the objective best (cheap search: per-position acceptance
    and a fitted step cost predict the k × load surface; only the runs that could change the choice are made),
    emit vLLM's num_speculative_tokens_per_batch_size, and prove it by an A/B against the baseline and the
    best static k."""
    from specwise.experiment import load_config, quick_tune_config
    from specwise.tune.runner import execute_tune, launch_commands

    if (file is None) == (not quick):
        raise SpecwiseError("FILE/--quick", "give an experiment file with a tune: section, or --quick",
                            "e.g. specwise tune exp.yaml")
    config = quick_tune_config() if quick else load_config(file)  # type: ignore[arg-type]
    if config.tune is None:
        raise SpecwiseError("tune", f"{file} has no tune: section", "add one (see `specwise tune --help`)")
    updates: dict[str, object] = {}
    if schedule is not None:
        updates["schedule"] = _schedule(schedule)
    if grid:
        updates["grid"] = True
    if updates:
        config = config.model_copy(update={"tune": _tune_with(config.tune, updates)})
    console = Console()
    if print_commands:
        for line in launch_commands(config):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        return
    root = check_out_dir(out or Path("specwise-runs") / f"{config.name}-{_stamp()}")
    started = time.monotonic()
    tune_ = config.tune
    assert tune_ is not None
    console.print(f"tune {config.tune_candidate.name}: k {', '.join(map(str, tune_.ks))} × concurrency "
                  f"{', '.join(f'{lv:g}' for lv in config.loads.levels)} on {config.tune_workload.name}, objective "
                  f"{tune_.objective} → {root}", highlight=False, markup=False)
    from specwise.report.tune_page import render_tune, write_tune_report

    with interruptible(root, console), progress_events(console) as events:
        result = execute_tune(config, root, events)
    render_tune(result, console)
    paths = write_tune_report(result, root)
    console.print(f"report: {paths['html']} (also {paths['markdown'].name}, tune.json)", highlight=False)
    console.print(f"done in {time.monotonic() - started:.0f} s", highlight=False)


def _schedule(text: str) -> list[tuple[int, int, int]]:
    import json

    fix = "give JSON like '[[1, 4, 3], [5, 256, 1]]'"
    try:
        value = json.loads(text)
    except ValueError:
        raise SpecwiseError("--schedule", "is not JSON", fix) from None
    if not (isinstance(value, list) and all(isinstance(b, list) and len(b) == 3 and
                                            all(isinstance(x, int) and not isinstance(x, bool) for x in b)
                                            for b in value)):
        raise SpecwiseError("--schedule", "must be a list of [first, last, k] integer triples", fix)
    return [tuple(b) for b in value]  # type: ignore[misc]


def _tune_with(tune_: Tune, updates: dict[str, object]) -> Tune:
    """The tune section with flags' values in, checked as a file's would be."""
    from pydantic import ValidationError

    from specwise.errors import validation_error
    from specwise.experiment.config import Tune

    try:
        return Tune.model_validate({**tune_.model_dump(), **updates})
    except ValidationError as exc:
        raise validation_error(exc, "tune", "fix the flag") from None
