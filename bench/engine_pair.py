"""Does the embedded pair behave like a real one? Measured on the real vLLM CPU build, in one run.

Starts, one at a time: the target alone (baseline), target + draft (k=4, greedy
drafting), the draft alone, and target + n-gram. Every load point is a
`specwise bench` run (the code users run), stored under one directory. Prints
acceptance by temperature (the server's counters over each run's window), the
draft's step cost against the target's, and TPOT by concurrency for baseline and
speculative decoding at two temperatures — where the crossover lies.

Usage: python bench/engine_pair.py [--requests N] [--levels C ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from specwise.load import BenchConfig, execute_bench
from specwise.engine.server import ServerSpec, VllmServer, embedded
from specwise.results import load_run
from specwise.analysis import summarize

K = 4
TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)
SWEEP_TEMPERATURES = (0.0, 0.5)
MAX_TOKENS = 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(server: VllmServer, runs: Path, dataset: str, concurrency: int, requests: int, temperature: float,
         warmup: int = 0) -> dict:
    out = runs / f"{server.spec.mode}-{server.port}-{dataset}-c{concurrency}-t{temperature}"
    config = BenchConfig(url=server.url, concurrency=concurrency, requests=requests, warmup=warmup,
                         max_tokens=MAX_TOKENS, temperatures=str(temperature), dataset=dataset,
                         k=K if server.spec.mode != "baseline" else None, scrape_interval_s=5.0)
    run = load_run(execute_bench(config, out))
    summary = summarize(run)
    ok = [r for r in run.requests if r.ok and not r.warmup]
    server_window = summary.acceptance.server
    row = {"concurrency": concurrency, "temperature": temperature, "dataset": dataset, "requests": summary.requests,
           "errors": summary.requests - summary.ok,
           "tpot_p50_ms": summary.tpot_ms.p50.value if summary.tpot_ms else None,
           "ttft_p50_ms": summary.ttft_ms.p50.value if summary.ttft_ms else None,
           # The draft alone streams faster than vLLM emits chunks (they arrive merged), so
           # its step is timed end to end: E2E / output tokens, the same for every server.
           "e2e_per_token_ms": 1e3 * statistics.median(r.e2e_s / r.tokens for r in ok if r.e2e_s and r.tokens)
           if ok else None, "error_types": summary.errors,
           "output_tok_s": summary.output_throughput_tok_s,
           "acceptance": server_window.acceptance_rate if server_window else None,
           "per_request_acceptance": summary.acceptance.per_request_pooled,
           "mean_acceptance_length": server_window.mean_acceptance_length if server_window else None,
           "run": str(out)}
    log(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def crossover(speedup: dict[int, float]) -> str:
    """Where speedup falls below 1 between two measured levels."""
    levels = sorted(speedup)
    for low, high in zip(levels, levels[1:]):
        if speedup[low] >= 1 > speedup[high]:
            return f"wins at concurrency {low}, loses at {high}"
    if all(v >= 1 for v in speedup.values()):
        return "wins at every measured level"
    return "loses at every measured level" if all(v < 1 for v in speedup.values()) else "crosses more than once"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per acceptance point and at c=1")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="concurrencies for the TPOT sweep (2 × c requests each, at least --requests)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="specwise-bench-"))
    logs, runs = root / "logs", root / "runs"
    started = time.monotonic()
    draft_dir = embedded("draft", log=log).draft or ""
    specs = {"baseline": embedded("baseline", log=log), "draft": embedded("draft", k=K, log=log),
             "draft-alone": ServerSpec(model=draft_dir, dtype="float32", served_model_name="specwise-draft"),
             "ngram": embedded("ngram", k=K, log=log)}
    out: dict = {"k": K, "max_tokens": MAX_TOKENS, "levels": args.levels, "runs": str(runs), "servers": {}}
    for name, spec in specs.items():
        log(f"=== {name}: starting vLLM (log and runs in {root})")
        t0 = time.monotonic()
        with VllmServer(spec, logs) as server:
            rows: dict = {"ready_s": round(time.monotonic() - t0, 1),
                          "warmup": load(server, runs, "structured", 2, 4, 0.0)}
            if name == "draft":
                rows["acceptance"] = {f"structured@{t}": load(server, runs, "structured", 4, args.requests, t)
                                      for t in TEMPERATURES}
                for other in ("open", "echo"):
                    rows["acceptance"][f"{other}@0.0"] = load(server, runs, other, 4, args.requests, 0.0)
            if name == "ngram":
                rows["acceptance"] = {f"{s}@0.0": load(server, runs, s, 4, args.requests, 0.0)
                                      for s in ("echo", "structured")}
            sweeps = SWEEP_TEMPERATURES if name in ("baseline", "draft") else (0.0,)
            levels = args.levels if name in ("baseline", "draft") else [1]
            rows["sweep"] = {f"{t}": {c: load(server, runs, "structured", c, max(args.requests, 2 * c), t)
                                      for c in levels} for t in sweeps}
            out["servers"][name] = rows

    s = out["servers"]
    tpot = {t: {c: (s["baseline"]["sweep"][f"{t}"][c]["tpot_p50_ms"], s["draft"]["sweep"][f"{t}"][c]["tpot_p50_ms"])
                for c in args.levels} for t in SWEEP_TEMPERATURES}
    speedup = {t: {c: base / spec for c, (base, spec) in rows.items()} for t, rows in tpot.items()}
    acc = s["draft"]["acceptance"]
    out["summary"] = summary = {
        "acceptance_by_temperature": {t: acc[f"structured@{t}"]["acceptance"] for t in TEMPERATURES},
        "draft_target_step_ratio": s["draft-alone"]["sweep"]["0.0"][1]["e2e_per_token_ms"]
        / s["baseline"]["sweep"]["0.0"][1]["e2e_per_token_ms"],
        "tpot_ms": tpot, "speedup": speedup, "crossover": {t: crossover(v) for t, v in speedup.items()},
        "ngram_acceptance": {k: v["acceptance"] for k, v in s["ngram"]["acceptance"].items()},
        "wall_s": round(time.monotonic() - started),
    }
    print(f"\nEmbedded pair on vLLM (CPU build), k={K}, {MAX_TOKENS}-token outputs, structured prompts, "
          "acceptance from the server's counters\n")
    print("| temperature | " + " | ".join(str(t) for t in TEMPERATURES) + " |")
    print("|---|" + "---|" * len(TEMPERATURES))
    print("| acceptance (draft, k=4) | " + " | ".join(f"{summary['acceptance_by_temperature'][t]:.3f}"
                                                     for t in TEMPERATURES) + " |")
    print(f"\nother prompt sets at T=0 — draft: open-ended {acc['open@0.0']['acceptance']:.3f}, "
          f"echo {acc['echo@0.0']['acceptance']:.3f}; n-gram: echo {summary['ngram_acceptance']['echo@0.0']:.3f}, "
          f"structured {summary['ngram_acceptance']['structured@0.0']:.3f}")
    print(f"draft step / target step (E2E per output token, c=1): {summary['draft_target_step_ratio']:.3f} "
          f"(1:{1 / summary['draft_target_step_ratio']:.1f})\n")
    print("| T | concurrency | baseline TPOT P50 ms | draft TPOT P50 ms | speedup |")
    print("|---|---|---|---|---|")
    for t, rows in tpot.items():
        for c, (base, spec) in rows.items():
            print(f"| {t} | {c} | {base:.1f} | {spec:.1f} | {speedup[t][c]:.2f}× |")
    for t, text in summary["crossover"].items():
        print(f"\nT={t}: speculation {text}", end="")
    print(f"\n\nwall time {summary['wall_s']} s; runs in {runs}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
