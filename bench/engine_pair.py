"""Does the embedded pair behave like a real one? Measured on the real vLLM CPU build, in one run.

Starts, one at a time: the target alone (baseline), target + draft (k=4, greedy
drafting), the draft alone, and target + n-gram. Prints acceptance by
temperature (from the server's counters over each measured window), the draft's
step cost against the target's, and TPOT at concurrency 1 and high concurrency
for baseline and speculative decoding — the crossover.

Usage: python bench/engine_pair.py [--requests N] [--levels C ...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from specwise.engine.server import ServerSpec, VllmServer, embedded
from specwise.load import RequestResult, closed_loop
from specwise.metrics import spec_counters
from specwise.prompts import load_prompt_set

K = 4
TEMPERATURES = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_TOKENS = 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median_ms(results: list[RequestResult], attr: str) -> float:
    values = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
    return 1e3 * statistics.median(values) if values else float("nan")


def load(server: VllmServer, prompts: tuple[str, ...], concurrency: int, requests: int, temperature: float) -> dict:
    before = spec_counters(httpx.get(f"{server.url}/metrics", timeout=30).text)
    start = time.monotonic()
    results = asyncio.run(closed_loop(server.url, server.spec.model_name, prompts, concurrency=concurrency,
                                      requests=requests, temperature=temperature, max_tokens=MAX_TOKENS))
    wall = time.monotonic() - start
    window = spec_counters(httpx.get(f"{server.url}/metrics", timeout=30).text) - before
    errors = [r.error for r in results if r.error]
    row = {"concurrency": concurrency, "temperature": temperature, "requests": requests, "errors": len(errors),
           "tpot_p50_ms": median_ms(results, "tpot_s"), "ttft_p50_ms": median_ms(results, "ttft_s"),
           "e2e_per_token_ms": 1e3 * statistics.median(r.e2e_s / r.output_tokens for r in results
                                                        if r.e2e_s and r.output_tokens),
           "output_tok_s": sum(r.output_tokens or 0 for r in results) / wall,
           "acceptance": window.acceptance_rate, "mean_acceptance_length": window.mean_acceptance_length,
           "per_position": {p: n / window.drafts for p, n in sorted(window.accepted_per_pos.items())}
           if window.drafts else {}}
    log(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests per acceptance point and at c=1")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64],
                        help="concurrencies for the TPOT sweep (2 × c requests each, at least --requests)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    structured = load_prompt_set("structured")
    logs = Path(tempfile.mkdtemp(prefix="specwise-bench-"))
    started = time.monotonic()
    draft_dir = embedded("draft", log=log).draft or ""
    specs = {"baseline": embedded("baseline", log=log), "draft": embedded("draft", k=K, log=log),
             "draft-alone": ServerSpec(model=draft_dir, dtype="float32", served_model_name="specwise-draft"),
             "ngram": embedded("ngram", k=K, log=log)}
    out: dict = {"k": K, "max_tokens": MAX_TOKENS, "levels": args.levels, "servers": {}}
    for name, spec in specs.items():
        log(f"=== {name}: starting vLLM (log in {logs})")
        t0 = time.monotonic()
        with VllmServer(spec, logs) as server:
            rows: dict = {"ready_s": round(time.monotonic() - t0, 1)}
            load(server, structured, 2, 4, 0.0)  # warm-up, not reported
            if name == "draft":
                rows["acceptance"] = {f"structured@{t}": load(server, structured, 4, args.requests, t)
                                      for t in TEMPERATURES}
                for other in ("open", "echo"):
                    rows["acceptance"][f"{other}@0.0"] = load(server, load_prompt_set(other), 4, args.requests, 0.0)
            if name == "ngram":
                rows["acceptance"] = {f"{s}@0.0": load(server, load_prompt_set(s), 4, args.requests, 0.0)
                                      for s in ("echo", "structured")}
            levels = args.levels if name in ("baseline", "draft") else [1]
            rows["sweep"] = {c: load(server, structured, c, max(args.requests, 2 * c), 0.0) for c in levels}
            out["servers"][name] = rows

    s = out["servers"]
    tpot = {c: (s["baseline"]["sweep"][c]["tpot_p50_ms"], s["draft"]["sweep"][c]["tpot_p50_ms"]) for c in args.levels}
    speedup = {c: base / spec for c, (base, spec) in tpot.items()}
    out["summary"] = summary = {
        "acceptance_by_temperature": {t: s["draft"]["acceptance"][f"structured@{t}"]["acceptance"]
                                      for t in TEMPERATURES},
        # The draft alone streams its tokens faster than vLLM emits chunks (they
        # arrive merged), so a decode step is timed end to end: E2E / output tokens.
        "draft_target_step_ratio": s["draft-alone"]["sweep"][1]["e2e_per_token_ms"]
        / s["baseline"]["sweep"][1]["e2e_per_token_ms"],
        "tpot_ms": tpot, "speedup": speedup,
        "crossover": crossover(speedup),
        "ngram_acceptance": {k: v["acceptance"] for k, v in s["ngram"]["acceptance"].items()},
        "wall_s": round(time.monotonic() - started),
    }
    print(f"\nEmbedded pair on vLLM (CPU build), k={K}, {MAX_TOKENS}-token outputs, structured prompts\n")
    print("| temperature | " + " | ".join(str(t) for t in TEMPERATURES) + " |")
    print("|---|" + "---|" * len(TEMPERATURES))
    print("| acceptance (draft) | " + " | ".join(f"{summary['acceptance_by_temperature'][t]:.3f}"
                                                for t in TEMPERATURES) + " |")
    print(f"\nopen-ended set T=0: {s['draft']['acceptance']['open@0.0']['acceptance']:.3f}; "
          f"echo set T=0: {s['draft']['acceptance']['echo@0.0']['acceptance']:.3f}")
    print(f"n-gram acceptance T=0: echo {summary['ngram_acceptance']['echo@0.0']:.3f}, "
          f"structured {summary['ngram_acceptance']['structured@0.0']:.3f}")
    print(f"draft step / target step (E2E per output token, c=1): {summary['draft_target_step_ratio']:.3f} "
          f"(1:{1 / summary['draft_target_step_ratio']:.1f})\n")
    print("| concurrency | baseline TPOT P50 ms | draft TPOT P50 ms | speedup |")
    print("|---|---|---|---|")
    for c, (base, spec) in tpot.items():
        print(f"| {c} | {base:.1f} | {spec:.1f} | {speedup[c]:.2f}× |")
    print(f"\ncrossover: {summary['crossover']}")
    print(f"wall time {summary['wall_s']} s")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


def crossover(speedup: dict[int, float]) -> str:
    """Where speedup falls below 1 between two measured levels."""
    levels = sorted(speedup)
    for low, high in zip(levels, levels[1:]):
        if speedup[low] >= 1 > speedup[high]:
            return f"speculation wins at concurrency {low} and loses at {high}"
    side = "wins" if all(v >= 1 for v in speedup.values()) else "loses" if all(v < 1 for v in speedup.values()) \
        else "crosses more than once"
    return f"speculation {side} at every measured level"


if __name__ == "__main__":
    main()
