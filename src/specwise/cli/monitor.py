"""`specwise watch URL…` (the live view of servers) and `specwise rules` (Prometheus rules and a Grafana
dashboard, with thresholds from an experiment when given one)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from specwise.cli import app
from specwise.errors import SpecwiseError, check_number, check_out_dir, check_url
from specwise.thresholds import ACCEPT_OFF


def _fraction(name: str, value: float | None) -> None:
    if value is not None:
        check_number(name, value, 0, 1, "an acceptance, e.g. 0.5", above=True)


@app.command()
def watch(
    urls: list[str] = typer.Argument(..., help="Server roots, e.g. http://127.0.0.1:8000 (their /metrics is read)."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between polls."),
    once: bool = typer.Option(False, "--once", help="Poll twice, --interval apart, print one sample and exit."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the sample as JSON (for scripts)."),
    record: Optional[Path] = typer.Option(None, "--record", help="Also store every poll in this directory, in the "
                                          "run format (`specwise summarize DIR` reads it)."),
    break_even: float = typer.Option(ACCEPT_OFF, "--break-even", help="Acceptance shown red below this (the "
                                     "guide's 0.5 by default; `specwise rules --from EXP_DIR` prints a measured one)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File holding the API key."),
) -> None:
    """Watch servers live: acceptance (1 m, 5 m, since start) and acceptance length from counter deltas, by draft
    position, drafts/s, output tokens/s, running and waiting requests, KV cache, preemptions. Survives counter
    resets, restarts and outages (shown, retried). Ctrl-C stops."""
    from rich.live import Live

    from specwise.load.bench import read_api_key
    from specwise.monitor import watch as run_watch
    from specwise.report import watch_table

    check_number("--interval", interval, 0.1, 3600, "seconds, e.g. 2")
    _fraction("--break-even", break_even)
    for url in urls:
        check_url(url, "URL")
    if record is not None:
        check_out_dir(record, "--record")
    if as_json and not once:
        raise SpecwiseError("--json", "needs --once", "specwise watch URL --once --json")
    key = read_api_key(api_key_env, api_key_file)
    console = Console()
    if once:
        views = run_watch(urls, interval, polls=2, api_key=key, record=record)
        if as_json:
            print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        else:
            console.print(watch_table(views, break_even))
        return
    with Live(console=console, auto_refresh=False) as live:
        try:
            run_watch(urls, interval, api_key=key, record=record,
                      on_update=lambda views: live.update(watch_table(views, break_even), refresh=True))
        except KeyboardInterrupt:
            pass
    if record:
        console.print(f"polls recorded in {record}", highlight=False)


@app.command()
def rules(
    from_dir: Optional[Path] = typer.Option(None, "--from", help="An experiment directory: alert thresholds from "
                                            "its measurements (break-even acceptance and the baseline's P99 TPOT at "
                                            "the verdict's limit) instead of the guide's 0.5."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the rules file here (default: print it)."),
    dashboard_file: Optional[Path] = typer.Option(None, "--dashboard", help="Also write the Grafana dashboard JSON."),
    k: Optional[int] = typer.Option(None, "--k", help="Speculative tokens per step: lets V0 servers (no drafts "
                                    "counter) get an acceptance length."),
    break_even: Optional[float] = typer.Option(None, "--break-even", help="Alert below this acceptance, for every "
                                               "model (overrides the guide's and the experiment's)."),
    tpot_p99_ms: Optional[float] = typer.Option(None, "--tpot-p99-ms", help="Alert when P99 TPOT exceeds this."),
) -> None:
    """Prometheus recording and alerting rules for speculative decoding (vLLM's current and V0 metric names),
    and a Grafana dashboard with the same panels. Check them with `promtool check rules FILE`."""
    import yaml

    from specwise import __version__
    from specwise.monitor import GUIDE, dashboard, rule_groups, thresholds_from_findings

    _fraction("--break-even", break_even)
    if k is not None:
        check_number("--k", k, 1, 64, "e.g. 4")
    if tpot_p99_ms is not None:
        check_number("--tpot-p99-ms", tpot_p99_ms, 0, fix="milliseconds, e.g. 50", above=True)
    thresholds = [GUIDE]
    if from_dir is not None:
        from specwise.experiment import findings_from_disk, served_models

        thresholds = thresholds_from_findings(findings_from_disk(from_dir), served_models(from_dir))
    # The flags override one figure each and keep the rest of every threshold (its model, its P99 from --from).
    if break_even is not None:
        thresholds = [replace(t, break_even=break_even, source="given with --break-even") for t in thresholds]
    if tpot_p99_ms is not None:
        thresholds = [replace(t, tpot_p99_s=tpot_p99_ms / 1000) for t in thresholds]
    header = (f"# Generated by specwise {__version__}. Acceptance thresholds: "
              + "; ".join(f"{t.model or ('every other model' if t.others else 'every model')}: "
                          f"{t.break_even:.3f} ({t.source})" for t in thresholds) + "\n")
    text = header + yaml.safe_dump(rule_groups(thresholds, k), sort_keys=False, width=10_000, allow_unicode=True)
    console = Console(stderr=True)
    if out is None:
        print(text, end="")
    else:
        _write(out, text, "--out")
        console.print(f"rules: {out} (check: promtool check rules {out})", highlight=False)
    if dashboard_file is not None:
        _write(dashboard_file, json.dumps(dashboard(min(t.break_even for t in thresholds)), indent=2) + "\n",
               "--dashboard")
        console.print(f"dashboard: {dashboard_file} (Grafana → Dashboards → Import)", highlight=False)


def _write(path: Path, text: str, field: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise SpecwiseError(field, f"cannot write {path}: {exc.strerror}", "give a writable path") from None
