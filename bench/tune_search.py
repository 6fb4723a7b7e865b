"""`specwise tune`'s cheap search against the full grid, side by side in one run on the embedded engine.

Runs `tune --quick --grid`: the draft model of the embedded pair, k 1–6 at concurrency 1, 4 and 16. The search
makes its own runs (the baseline and k = 6 at every load, then one k per round where the prediction says it
could change the choice, within half the grid); the grid check then measures every (k, load) the search
skipped, on the same servers in the same run; finally the proof (baseline, tuned schedule, best static k,
two repetitions) through the verdict. Prints, per load, the search's pick and the grid's best, both measured,
the shortfall, and the run counts; then the whole tune report. The tune directory is kept (--out).

    python bench/tune_search.py [--out specwise-runs/tune-bench] [--requests 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from specwise.experiment import Events, quick_tune_config
from specwise.report.tune_page import render_tune, write_tune_report
from specwise.tune.runner import execute_tune

WITHIN = 0.05   # the bar: the pick's measured outcome within 5 % of the grid's best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("specwise-runs/tune-bench"))
    parser.add_argument("--requests", type=int, default=None, help="measured requests per cell (default: quick's)")
    args = parser.parse_args()
    config = quick_tune_config()
    assert config.tune is not None
    updates: dict[str, object] = {"name": "tune-bench", "tune": config.tune.model_copy(update={"grid": True})}
    if args.requests:
        updates["requests"] = args.requests
    config = config.model_copy(update=updates)
    started = time.monotonic()
    result = execute_tune(config, args.out, Events())
    minutes = (time.monotonic() - started) / 60
    console = Console(width=120)
    console.print(f"\nsearch vs full grid ({config.tune_candidate.name}, k {config.tune.ks[0]}–{config.tune.ks[-1]}, "
                  f"{config.requests} requests × {config.max_tokens} tokens per cell), {minutes:.0f} min this "
                  "invocation (cells already in --out are reused)")
    print(f"{'load':>6} {'search k':>9} {'measured':>9} {'grid k':>7} {'measured':>9} {'short':>7}  within 5 %")
    for g in result.grid:
        print(f"{'c%g' % g.load:>6} {g.pick_k:>9} {g.pick_value:>8.3f}× {g.grid_k:>7} {g.grid_value:>8.3f}× "
              f"{100 * g.shortfall:>6.1f}%  {'yes' if g.shortfall <= WITHIN else 'NO'}")
    print(f"runs: search {result.runs}, full grid {result.grid_runs} (the baseline's included): ratio "
          f"{result.runs / result.grid_runs:.2f}")
    render_tune(result, console)
    write_tune_report(result, args.out)


if __name__ == "__main__":
    main()
