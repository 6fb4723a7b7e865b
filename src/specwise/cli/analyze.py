"""`specwise analyze LOG`: read request logs into a traffic profile, say which method to test and why, and
emit a workload that `bench` and `run` replay (and an experiment that tests it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer
from rich.console import Console

from specwise.cli import app
from specwise.errors import SpecwiseError, check_number, shown

MAX_SAMPLES = 100_000


def _tokenizer(name: str):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise SpecwiseError("--tokenizer", "needs the transformers package",
                            "pip install transformers, or leave --tokenizer out to count characters") from None
    try:
        tok = AutoTokenizer.from_pretrained(name, local_files_only=not re.match(r"^[\w.-]+/[\w.-]+$", name))
    except Exception as exc:  # noqa: BLE001  (transformers raises many kinds for a path that holds no tokenizer)
        raise SpecwiseError("--tokenizer", f"cannot load a tokenizer from {shown(name)} ({type(exc).__name__})",
                            "give a local model directory with its tokenizer files") from None
    return lambda text: tok.encode(text, add_special_tokens=False)


@app.command()
def analyze(
    log: Path = typer.Argument(..., help="A JSONL request log (OpenAI request bodies, or records wrapping a "
                               "request and its response), a ShareGPT JSON file, or a specwise run directory."),
    fmt: str | None = typer.Option(None, "--format", help="jsonl | sharegpt | specwise-run (default: told by "
                                      "the file)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="A model directory whose tokenizer counts "
                                            "lengths in tokens (default: the log's usage counts, else characters)."),
    samples: int = typer.Option(200, "--samples", help="Requests sampled into the emitted workload."),
    include_samples: bool = typer.Option(False, "--include-samples", help="Put the sampled prompts' text in the "
                                         "workload and the JSON output (default: stand-ins of the same lengths; "
                                         "no prompt or output text leaves the log)."),
    emit_workload: Path | None = typer.Option(None, "--emit-workload", help="Write the replayable workload "
                                                 "(JSON) here: `specwise bench --workload FILE`."),
    emit_experiment: Path | None = typer.Option(None, "--emit-experiment", help="Write an experiment (YAML) "
                                                   "testing the recommendation on that workload: `specwise run "
                                                   "FILE`. Needs --emit-workload."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile and recommendation as JSON."),
) -> None:
    """Profile a request log: temperature mix and homogeneity, lengths, prompt/output overlap, structured share,
    arrival rate and burstiness, TTFT- or TPOT-bound latency; which speculative method to test, per traffic
    class, with the guide's reasons. Bad lines are counted and listed by number, never fatal."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from specwise.report.console import render_traffic
    from specwise.verdict.method import recommend
    from specwise.workload import Profiler, build_workload, detect_format, read_log, write_workload

    if fmt is not None and fmt not in ("jsonl", "sharegpt", "specwise-run"):
        raise SpecwiseError("--format", f"unknown format {shown(fmt)}", "use jsonl, sharegpt or specwise-run")
    check_number("--samples", samples, 1, MAX_SAMPLES, "e.g. 200")
    if emit_experiment is not None and emit_workload is None:
        raise SpecwiseError("--emit-experiment", "the experiment replays a workload file",
                            "give --emit-workload FILE too")
    fmt = fmt or detect_format(log)
    profiler = Profiler(str(log), fmt, _tokenizer(tokenizer) if tokenizer else None, samples, include_samples)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("[bold]analyze[/] {task.fields[n]} requests, {task.fields[bad]} bad "
                                              "lines"), TimeElapsedColumn(), console=console, transient=True,
                  disable=as_json or not console.is_terminal) as progress:
        task = progress.add_task("log", n=0, bad=0)
        for i, item in enumerate(read_log(log, fmt)):
            profiler.add(item)
            if i % 5000 == 0:
                progress.update(task, n=profiler.requests, bad=profiler.bad)
    profile = profiler.profile()
    if not profile.requests:
        raise SpecwiseError("LOG", f"{log} holds no readable request ({profile.bad_lines} bad lines"
                            + (f", first: line {profile.bad_examples[0][0]}: {profile.bad_examples[0][1]}"
                               if profile.bad_examples else "") + ")",
                            "give OpenAI request bodies or records wrapping them, one per line (see --help)")
    advice = recommend(profile)
    written = []
    if emit_workload is not None:
        workload = build_workload(profile, re.sub(r"[^A-Za-z0-9_.-]", "-", log.stem or "traffic").strip("-.")
                                  or "traffic")
        experiment = None
        if emit_experiment is not None:
            import yaml

            from specwise.experiment.config import parse_config
            from specwise.experiment.emit import experiment_for

            # The log's name and the headline are the log's words: one line each, in a comment.
            source, headline = " ".join(log.name.split()), " ".join(advice.headline.split())
            experiment = (f"# Written by specwise analyze from {source}: {headline}.\n# Launches the embedded "
                          "pair; for your own servers replace `launch:` by `url:` (see README).\n"
                          + yaml.safe_dump(experiment_for(workload, str(emit_workload.resolve()), advice),
                                           sort_keys=False))
        # Both files are checked before either is written: a workload whose experiment cannot run is not left.
        write_workload(workload, emit_workload)
        if experiment is not None:
            try:
                parse_config(experiment, "the emitted experiment")
            except SpecwiseError:
                emit_workload.unlink()
                raise
            emit_experiment.write_text(experiment)
        written.append(f"workload: {emit_workload} ({len(workload.requests)} requests"
                       f"{', prompt text included' if include_samples else ', stand-in prompts of the logged lengths'}"
                       f"); replay: specwise bench --url URL --workload {emit_workload} --requests N")
        if experiment is not None:
            written.append(f"experiment: {emit_experiment}; run: specwise run {emit_experiment}")
    if as_json:
        dump = profile.model_dump(mode="json", exclude={"samples"} if not include_samples else None)
        print(json.dumps({"profile": dump, "recommendation": advice.model_dump(mode="json"), "written": written},
                         indent=2))
        return
    out = Console()
    render_traffic(profile, advice, out)
    for line in written:
        out.print(line, highlight=False, markup=False)
