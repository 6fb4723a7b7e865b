"""Compare specwise's load generator with `vllm bench serve` and GuideLLM, on the same server,
the same prompts and the same request count.

Part A — agreement at low load (one request in flight): every tool runs the same N prompts
against the same OpenAI-compatible streaming server (by default the embedded engine,
started here; or --url) with the same fixed output length (ignore_eos), in --rounds
interleaved rounds (the order rotates each round, so the server's drift over minutes falls
on every tool alike). Each tool's own per-request records (TTFT, TPOT, E2E as it defines
them) are pooled over its rounds, and the percentiles of every tool are computed the same
way (numpy, linear), so that the table compares what the tools measured, not how each
interpolates a percentile; throughput is the mean of what each tool reported per round.
Printed: request and output-token throughput, TTFT, TPOT and E2E at P50/P99, with each
tool's ratio to specwise (✓: within 5 %).

How the tools define what is compared (read from their sources):
- TTFT: first content chunk − request start, in all three.
- TPOT: specwise, per request (last chunk − first chunk) / (output tokens − 1);
  `vllm bench serve`, per request (latency − ttft) / (output tokens − 1), where its
  latency ends at the last content chunk — the same quantity. GuideLLM calls this
  `inter_token_latency_ms` ((last token − first token) / (tokens − 1)); its own
  `time_per_output_token_ms` is (last token − request start) / tokens, TTFT included,
  so the TPOT row uses GuideLLM's per-request inter_token_latency_ms.
- E2E: specwise, request start → end of the stream ([DONE]); vllm bench, start → last
  content chunk (`e2el`); GuideLLM, request_start → request_end (`request_latency`).
- Request / output-token throughput: specwise, ok requests (tokens) over first send →
  last end; vllm bench, completed over its whole benchmark duration (first scheduled
  send → last completion); GuideLLM, its `requests_per_second` / `output_tokens_per_second`
  (successful), means over its measured window.

Part B — generator ceiling: against a fast local streaming server (the in-process
FaultServer of tests/faultserver.py, run here in a child process so that the server does
not share a GIL with specwise), every tool sends the same request count at increasing
constant rates, and its send lag is measured:
- client side, from what each tool records: specwise `sent_s − scheduled_s` per request;
  GuideLLM `request_start − targeted_start` per request (its `request_dispatch_delay`);
  `vllm bench serve` records when each request started (`start_times`, with
  --save-detailed) but not when it was scheduled: its constant-rate schedule is
  start + (i + 1)/rate with an unknown start, so its lag is reported offset-free —
  lag_i − min_j lag_j, a lower bound (exact up to the lag of its least-late request).
- server side, the same way for every tool: the child server timestamps every completion
  request at connection accept (CLOCK_MONOTONIC), and the k-th arrival is compared with
  the k-th slot of a constant schedule, offset-free as above. This includes the connect
  and the server's own accept delay, so it is an upper-side cross-check, identical for all.
The table gives each tool's highest rate with p99 lag ≤ --lag-limit-ms (1 ms).

    .venv/bin/python bench/compare_tools.py                       # embedded engine (~2 min to start)
    .venv/bin/python bench/compare_tools.py --url http://127.0.0.1:8000 --tokenizer DIR
    .venv/bin/python bench/compare_tools.py --skip-guidellm --rates 50,100 --out raw.json

GuideLLM lives in its own virtual environment (its dependencies clash with vLLM's):
`make compare` creates `.venv-guidellm/` and runs this script; --guidellm PATH points at
another guidellm binary. It is skipped with a note when absent. Nothing here is hard-coded: every number printed is measured in this run.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = ROOT / "tests"
DEFAULT_GUIDELLM = Path(".venv-guidellm/bin/guidellm")
SHIPPED_TOKENIZER = ROOT / "src" / "specwise" / "data" / "pair" / "target-small"
TOOLS = ("specwise", "vllm bench serve", "guidellm")
WITHIN = 0.05

# `vllm bench serve`, run as the CLI subcommand runs it (BenchmarkServingSubcommand.cmd → serve.main).
# The `vllm` entry point itself needs vLLM's package metadata, and the custom dataset reads its JSONL
# with pandas; where either is missing from the environment, the same code is run through this runner,
# with a minimal stand-in for the one pandas call the custom dataset makes (read_json(lines=True)).
VLLM_RUNNER = r"""
import json, sys
import vllm.benchmarks.datasets.datasets as D
try:
    import pandas  # noqa: F401
except ImportError:
    class _Row(dict):
        def to_dict(self):
            return dict(self)
    class _Frame:
        def __init__(self, rows):
            self.rows = rows
            self.columns = sorted({k for r in rows for k in r})
        def iterrows(self):
            return ((i, _Row(r)) for i, r in enumerate(self.rows))
    class _pd:
        @staticmethod
        def read_json(path_or_buf, lines=True):
            with open(path_or_buf) as f:
                return _Frame([json.loads(line) for line in f if line.strip()])
    D.pd = _pd
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks.serve import add_cli_args, main
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""


# ---------------------------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def tail(text: str, lines: int = 15) -> str:
    keep = [line for line in text.splitlines() if line.strip() and "nanobind" not in line and "leaked " not in line]
    return "\n".join(keep[-lines:])


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def lag_stats(lags_s: list[float]) -> dict[str, Any]:
    ms = [1e3 * v for v in lags_s]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": max(ms) if ms else None}


STEADY_SKIP = 0.1


def steady(lags_in_schedule_order: list[float]) -> list[float]:
    """The lags without the first STEADY_SKIP of the requests: a tool's start-up (connection pools,
    worker processes, first-request imports) shows in its first requests, not in its steady rate."""
    return lags_in_schedule_order[math.ceil(STEADY_SKIP * len(lags_in_schedule_order)):]


def offset_free(times_s: list[float], rate: float) -> list[float]:
    """Lags of sorted send/arrival times against a constant schedule k/rate whose origin is unknown:
    each lag minus the smallest, so the least-late request counts as on time (a lower bound)."""
    times = sorted(times_s)
    raw = [t - k / rate for k, t in enumerate(times)]
    low = min(raw) if raw else 0.0
    return [r - low for r in raw]


def run_cmd(argv: list[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    with log_path.open("w") as handle:
        try:
            proc = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s,
                                  env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, log_path.read_text(errors="replace")


def served_model(url: str) -> str:
    response = httpx.get(f"{url.rstrip('/')}/v1/models", timeout=10)
    response.raise_for_status()
    return response.json()["data"][0]["id"]


def write_prompts(path: Path, dataset: str, count: int, output_tokens: int) -> list[str]:
    """`count` prompts (the dataset cycled) as JSONL that all three tools read: `prompt` (specwise,
    vllm's custom dataset, GuideLLM's text column), `output_tokens` (vllm's custom dataset; also given
    as --custom-output-len) and `output_tokens_count` (GuideLLM: max_tokens + ignore_eos)."""
    from specwise.workload import load_dataset

    prompts = load_dataset(dataset)
    rows = [prompts[i % len(prompts)] for i in range(count)]
    with path.open("w", encoding="utf-8") as handle:
        for i, p in enumerate(rows):
            handle.write(json.dumps({"id": f"{i}-{p.id}", "prompt": p.text, "output_tokens": output_tokens,
                                     "output_tokens_count": output_tokens}) + "\n")
    return [p.text for p in rows]


# ---------------------------------------------------------------------------------------------- the tools

def run_specwise(url: str, model: str, prompts: Path, requests: int, max_tokens: int, out: Path, *,
                 concurrency: int | None = None, rate: float | None = None) -> dict[str, Any]:
    from specwise.load import BenchConfig, execute_bench
    from specwise.results import load_run
    from specwise.analysis import summarize

    config = BenchConfig(url=url, model=model, concurrency=concurrency, rate=rate, arrivals="constant",
                         requests=requests, max_tokens=max_tokens, temperatures="0", dataset=str(prompts),
                         scrape_interval_s=30.0)
    execute_bench(config, out)
    run = load_run(out)
    summary = summarize(run)
    return {"run": run, "summary": summary}


def specwise_requests(result: dict[str, Any]) -> dict[str, Any]:
    """Per-request TTFT/TPOT/E2E (ms) from specwise's records, and its own throughput figures."""
    ok = [r for r in result["run"].requests if not r.warmup and r.ok]
    s = result["summary"]
    return {"ttft": [1e3 * r.ttft_s for r in ok], "tpot": [1e3 * r.tpot_s for r in ok if r.tpot_s is not None],
            "e2e": [1e3 * r.e2e_s for r in ok], "req_s": s.request_throughput_rps, "tok_s": s.output_throughput_tok_s,
            "ok": s.ok, "requests": s.requests}


def run_vllm(args: argparse.Namespace, url: str, model: str, tokenizer: str, prompts: Path, requests: int,
             max_tokens: int, work: Path, name: str, *, concurrency: int | None = None,
             rate: float | None = None) -> dict[str, Any]:
    argv = [args.vllm_python, "-c", VLLM_RUNNER,
            "--backend", "openai", "--base-url", url.rstrip("/"), "--endpoint", "/v1/completions",
            "--model", model, "--tokenizer", tokenizer,
            "--dataset-name", "custom", "--dataset-path", str(prompts), "--custom-output-len", str(max_tokens),
            "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(requests), "--ignore-eos",
            "--temperature", "0", "--save-result", "--save-detailed", "--result-dir", str(work),
            "--result-filename", f"{name}.json", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,99", "--disable-tqdm"]
    if concurrency is not None:
        argv += ["--max-concurrency", str(concurrency)]
    if rate is not None:
        # burstiness inf: constant gaps of 1/rate (serve.get_request), the schedule Part B needs to know.
        argv += ["--request-rate", str(rate), "--burstiness", "inf"]
    code, output = run_cmd(argv, work / f"{name}.log", args.tool_timeout, {"TOKENIZERS_PARALLELISM": "false"})
    path = work / f"{name}.json"
    if code != 0 or not path.exists():
        raise RuntimeError(f"vllm bench serve exited {code}; log {work / (name + '.log')}:\n{tail(output)}")
    return json.loads(path.read_text())


def vllm_requests(d: dict[str, Any]) -> dict[str, Any]:
    """Per request, as `vllm bench serve` computes them: TPOT = (latency − ttft) / (output tokens − 1)."""
    rows = [(t, lat, n) for t, lat, n, err in zip(d["ttfts"], d["latencies"], d["output_lens"], d["errors"])
            if not err and lat]
    return {"ttft": [1e3 * t for t, _, _ in rows], "tpot": [1e3 * (lat - t) / (n - 1) for t, lat, n in rows if n > 1],
            "e2e": [1e3 * lat for _, lat, _ in rows], "req_s": d.get("request_throughput"),
            "tok_s": d.get("output_throughput"), "ok": d.get("completed"), "requests": d.get("num_prompts")}


def run_guidellm(args: argparse.Namespace, url: str, model: str, tokenizer: str, prompts: Path, requests: int,
                 work: Path, name: str, *, concurrency: int | None = None, rate: float | None = None) -> dict[str, Any]:
    profile = ({"kind": "concurrent", "streams": concurrency} if concurrency is not None
               else {"kind": "constant", "rate": rate})
    out = work / f"{name}.json"
    scenario = {"spec": {
        # validate_backend off: it GETs /health, which an OpenAI-compatible server need not serve.
        "backend": {"kind": "openai_http", "target": url.rstrip("/"), "model": model,
                    "request_format": "/v1/completions", "validate_backend": False},
        "profile": profile,
        "constraints": [{"kind": "max_requests", "count": requests}],
        "tokenizer": {"kind": "huggingface_auto", "model": tokenizer},
        # output_tokens_count in each row → max_tokens = that, ignore_eos = true, stop = null.
        "data": [{"kind": "json_file", "path": str(prompts)}],
        "outputs": [{"kind": "json", "path": str(out)}],
    }}
    scenario_path = work / f"{name}.scenario.json"
    scenario_path.write_text(json.dumps(scenario, indent=1))
    code, output = run_cmd([str(args.guidellm), "run", "-c", str(scenario_path), "--disable-console-interactive"],
                           work / f"{name}.log", args.tool_timeout, {"TOKENIZERS_PARALLELISM": "false"})
    if code != 0 or not out.exists():
        raise RuntimeError(f"guidellm exited {code}; log {work / (name + '.log')}:\n{tail(output)}")
    data = json.loads(out.read_text())
    if not data.get("benchmarks"):
        raise RuntimeError(f"guidellm wrote no benchmark to {out}:\n{tail(output)}")
    return data["benchmarks"][0]


def guidellm_per_request(b: dict[str, Any]) -> dict[str, Any]:
    """Per request, GuideLLM's own figures: time_to_first_token_ms, inter_token_latency_ms (its name for
    (last token − first token) / (tokens − 1)), request_latency."""
    reqs = guidellm_requests(b)
    m = b["metrics"]

    def mean(key: str) -> float | None:
        dist = (m.get(key) or {}).get("successful") or {}
        return dist.get("mean") if dist.get("count") else None

    totals = m.get("request_totals", {})
    return {"ttft": [r["time_to_first_token_ms"] for r in reqs if r.get("time_to_first_token_ms") is not None],
            "tpot": [r["inter_token_latency_ms"] for r in reqs if r.get("inter_token_latency_ms") is not None],
            "e2e": [1e3 * r["request_latency"] for r in reqs if r.get("request_latency") is not None],
            "req_s": mean("requests_per_second"), "tok_s": mean("output_tokens_per_second"),
            "ok": totals.get("successful"), "requests": totals.get("total")}


def guidellm_requests(b: dict[str, Any]) -> list[dict[str, Any]]:
    return list((b.get("requests") or {}).get("successful") or [])


def guidellm_usable(args: argparse.Namespace) -> str | None:
    """None when GuideLLM can run; otherwise why not."""
    if args.skip_guidellm:
        return "skipped (--skip-guidellm)"
    path = Path(args.guidellm)
    if not path.is_file() or not os.access(path, os.X_OK):
        return (f"not found at {path} (install it into its own venv: python3 -m venv "
                f".venv-guidellm && .venv-guidellm/bin/pip install guidellm==0.8.1, or run `make compare`)")
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {path}: {exc}"
    if out.returncode != 0:
        return f"{path} --version exited {out.returncode}:\n{tail(out.stdout + out.stderr)}"
    log(f"GuideLLM: {(out.stdout or out.stderr).strip()}")
    return None


# ---------------------------------------------------------------------------------------------- Part A

ROWS = (("req_s", "request throughput (req/s)"), ("tok_s", "output token throughput (tok/s)"),
        ("ttft_p50", "TTFT P50 (ms)"), ("ttft_p99", "TTFT P99 (ms)"), ("tpot_p50", "TPOT P50 (ms)"),
        ("tpot_p99", "TPOT P99 (ms)"), ("e2e_p50", "E2E P50 (ms)"), ("e2e_p99", "E2E P99 (ms)"))


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "—"
    if v == 0 or abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}g}"


def ratio_cell(v: float | None, ref: float | None) -> str:
    if v is None or ref is None or ref == 0:
        return "—"
    r = v / ref
    return f"{r:.3f} ✓" if abs(r - 1) <= WITHIN else f"{r:.3f}"


def agreement_table(metrics: dict[str, dict[str, float | None] | None]) -> str:
    ref = metrics.get("specwise") or {}
    others = [t for t in TOOLS[1:]]
    head = "| metric | specwise | " + " | ".join(f"{t} | {t} / specwise" for t in others) + " |"
    sep = "|---|---:|" + "---:|---:|" * len(others)
    lines = [head, sep]
    for key, label in ROWS:
        cells = [label, fmt(ref.get(key))]
        for t in others:
            m = metrics.get(t)
            cells += ["n/a", "—"] if m is None else [fmt(m.get(key)), ratio_cell(m.get(key), ref.get(key))]
        lines.append("| " + " | ".join(cells) + " |")
    counts = []
    for t in TOOLS:
        m = metrics.get(t)
        counts.append(f"{t}: n/a" if m is None else f"{t}: {m.get('ok')}/{m.get('requests')} ok")
    lines.append("")
    lines.append("requests: " + "; ".join(counts) + f".  ✓ = within {100 * WITHIN:.0f} % of specwise.")
    return "\n".join(lines)


SERVER_HISTOGRAMS = {"ttft": "vllm:time_to_first_token_seconds", "e2e": "vllm:e2e_request_latency_seconds"}


def server_sums(url: str) -> dict[str, float]:
    """The server's own latency histograms (sum and count, summed over labels) — the reference every
    client's figures can be held against: a client adds its own overhead on top of the server's."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except (httpx.HTTPError, ValueError):
        return out  # a server without vLLM's /metrics: no reference column, the tools still run
    for family in families:
        for key, name in SERVER_HISTOGRAMS.items():
            if family.name == name:
                for sample in family.samples:
                    if sample.name in (name + "_sum", name + "_count"):
                        tag = f"{key}_{sample.name.rsplit('_', 1)[1]}"
                        out[tag] = out.get(tag, 0.0) + sample.value
    return out


def pooled_metrics(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """One tool's rounds: percentiles over all its requests (numpy, linear — the same for every tool), and the
    mean of the throughput it reported per round."""
    out: dict[str, float | None] = {}
    for name in ("ttft", "tpot", "e2e"):
        values = [v for r in rounds for v in r[name]]
        out[f"{name}_p50"], out[f"{name}_p99"] = pct(values, 50), pct(values, 99)
    for name in ("req_s", "tok_s"):
        values = [r[name] for r in rounds if r.get(name) is not None]
        out[name] = float(np.mean(values)) if values else None
    for name in ("ttft", "e2e"):
        values = [v for r in rounds for v in r[name]]
        out[f"{name}_mean"] = float(np.mean(values)) if values else None
        total = {part: sum(r.get("server", {}).get(f"{name}_{part}", 0.0) for r in rounds) for part in ("sum", "count")}
        out[f"server_{name}_mean"] = 1e3 * total["sum"] / total["count"] if total["count"] else None
        out[f"server_{name}_count"] = total["count"]
    out["ok"] = sum(r.get("ok") or 0 for r in rounds)
    out["requests"] = sum(r.get("requests") or 0 for r in rounds)
    return out


def part_a(args: argparse.Namespace, url: str, model: str, tokenizer: str, work: Path,
           guidellm_note: str | None) -> dict[str, Any]:
    prompts = work / "prompts-a.jsonl"
    write_prompts(prompts, args.dataset, args.requests, args.max_tokens)
    errors: dict[str, str] = {}
    # Warm the server first, unmeasured, so that whichever tool runs first does not pay for a cold
    # engine (first-request compilation and caches) — that would be the order, not the tool. Both
    # kinds of request the tools send are warmed: with logprobs (specwise counts tokens with them;
    # vLLM's first logprobs request is over a second slower) and without (the others).
    log(f"Part A: warming the server with {args.warmup} unmeasured requests of each kind")
    for text in write_prompts(work / "prompts-warmup.jsonl", args.dataset, args.warmup, args.max_tokens):
        for extra in ({}, {"logprobs": 0}):
            try:
                httpx.post(f"{url.rstrip('/')}/v1/completions", timeout=300,
                           json={"model": model, "prompt": text, "max_tokens": args.max_tokens, "ignore_eos": True,
                                 "temperature": 0, "stream": True, **extra}).read()
            except httpx.HTTPError as exc:
                log(f"warm-up request failed: {type(exc).__name__}: {exc}")

    def specwise_round(name: str) -> dict[str, Any]:
        return specwise_requests(run_specwise(url, model, prompts, args.requests, args.max_tokens, work / name,
                                              concurrency=1))

    def vllm_round(name: str) -> dict[str, Any]:
        return vllm_requests(run_vllm(args, url, model, tokenizer, prompts, args.requests, args.max_tokens, work,
                                      name, concurrency=1))

    def guidellm_round(name: str) -> dict[str, Any]:
        return guidellm_per_request(run_guidellm(args, url, model, tokenizer, prompts, args.requests, work, name,
                                                 concurrency=1))

    runners = {"specwise": specwise_round, "vllm bench serve": vllm_round, "guidellm": guidellm_round}
    if args.skip_vllm:
        errors["vllm bench serve"] = "skipped (--skip-vllm)"
    if guidellm_note:
        errors["guidellm"] = guidellm_note
    tools = [t for t in TOOLS if t not in errors]
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    # The server drifts over minutes (it was measurably slower by the third tool of a run): the tools take
    # turns, in a rotated order each round, so that drift spreads over all of them instead of the last.
    for r in range(args.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for tool in order:
            if tool in errors:
                continue
            log(f"Part A round {r + 1}/{args.rounds}: {tool}, {args.requests} requests, 1 in flight")
            try:
                before = server_sums(url)
                result = runners[tool](f"a-{tool.split()[0]}-r{r}")
                after = server_sums(url)
                # The server's window holds every request the tool sent, unmeasured ones included
                # (`vllm bench serve` sends one test request first): the counts are shown.
                result["server"] = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                rounds[tool].append(result)
            except Exception as exc:  # noqa: BLE001 — a failing tool is reported, the others still run
                errors[tool] = f"{type(exc).__name__}: {exc}\n{tail(traceback.format_exc())}"
    metrics = {t: pooled_metrics(rounds[t]) for t in tools if t not in errors and rounds[t]}

    print(f"\n## Part A — agreement at low load ({args.rounds} interleaved rounds × {args.requests} requests per "
          f"tool, 1 in flight, {args.max_tokens} output tokens, ignore_eos; server {url}, model {model})\n")
    print(agreement_table({t: metrics.get(t) for t in TOOLS}))
    print("\nEach tool against the server's own clock (vLLM's TTFT and E2E histograms over the same requests): "
          "what a client adds on top is its own overhead.\n")
    print("| tool | requests measured / seen by the server | TTFT mean (ms) | server's TTFT mean (ms) | "
          "client − server (ms) | E2E mean (ms) | server's E2E mean (ms) | client − server (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for tool in tools:
        m = metrics.get(tool)
        if not m:
            continue
        cells = []
        for name in ("ttft", "e2e"):
            c, srv = m.get(f"{name}_mean"), m.get(f"server_{name}_mean")
            cells += [fmt(c), fmt(srv), fmt(c - srv) if c is not None and srv is not None else "—"]
        print(f"| {tool} | {m.get('ok')} / {m.get('server_ttft_count') or 0:.0f} | " + " | ".join(cells) + " |")
    for tool, err in errors.items():
        print(f"\n{tool}: {err}")
    return {"metrics": metrics, "errors": errors, "rounds": rounds}


# ---------------------------------------------------------------------------------------------- Part B

_arrived: contextvars.ContextVar[float] = contextvars.ContextVar("arrived")


def _arrival_server(conn: Any, tokens: int, chunk: int, gap_s: float) -> None:
    """Child process: the tests' FaultServer, wrapped to timestamp each completion request at accept."""
    sys.path.insert(0, str(TESTS_DIR))
    from faultserver import FaultServer  # noqa: PLC0415 — only in the child

    class ArrivalServer(FaultServer):
        async def _handle(self, reader: Any, writer: Any) -> None:
            _arrived.set(time.perf_counter())  # CLOCK_MONOTONIC: comparable across processes
            await super()._handle(reader, writer)

        async def _completion(self, writer: Any, request: dict) -> None:
            self.arrivals.append(_arrived.get())
            await super()._completion(writer, request)

    server = ArrivalServer(tokens=tokens, chunk=chunk, gap_s=gap_s)
    server.arrivals = []  # type: ignore[attr-defined]
    with server:
        conn.send(server.url)
        while True:
            cmd = conn.recv()
            if cmd == "reset":
                server.arrivals.clear()  # type: ignore[attr-defined]
                server.requests.clear()
                server.auth.clear()
                conn.send(True)
            elif cmd == "get":
                conn.send(list(server.arrivals))  # type: ignore[attr-defined]
            else:
                break


class ArrivalServerProcess:
    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    def __enter__(self) -> ArrivalServerProcess:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_arrival_server, args=(child, self.tokens, 1, 0.0), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the fault server did not start")
        self.url = self.conn.recv()
        return self

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def arrivals(self) -> list[float]:
        self.conn.send("get")
        return self.conn.recv()

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def part_b(args: argparse.Namespace, work: Path, tokenizer: str, guidellm_note: str | None) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    n = args.ceiling_requests
    tokens = args.ceiling_tokens
    prompts = work / "prompts-b.jsonl"
    write_prompts(prompts, args.dataset, n, tokens)
    tools = ["specwise"]
    skipped: dict[str, str] = {}
    if args.skip_vllm:
        skipped["vllm bench serve"] = "skipped (--skip-vllm)"
    else:
        tools.append("vllm bench serve")
    if guidellm_note:
        skipped["guidellm"] = guidellm_note
    else:
        tools.append("guidellm")
    results: dict[str, dict[str, Any]] = {t: {} for t in tools}

    with ArrivalServerProcess(tokens) as server:
        model = served_model(server.url)
        log(f"Part B: fault server {server.url} (child process), {n} requests per rate, {tokens} tokens each")
        for rate in rates:
            for tool in tools:
                key = f"{rate:g}"
                name = f"b-{tool.split()[0]}-{key}"
                log(f"Part B: {tool} at {key} req/s")
                server.reset()
                entry: dict[str, Any] = {"rate": rate}
                try:
                    if tool == "specwise":
                        res = run_specwise(server.url, model, prompts, n, tokens, work / name, rate=rate)
                        records = sorted((r for r in res["run"].requests if not r.warmup), key=lambda r: r.scheduled_s)
                        entry["client"] = lag_stats([r.send_lag_s for r in records])
                        entry["client_steady"] = lag_stats(steady([r.send_lag_s for r in records]))
                        entry["client_kind"] = "recorded (sent − scheduled)"
                        entry["client_offset_free"] = lag_stats(offset_free([r.sent_s for r in records], rate))
                        entry["ok"] = sum(1 for r in records if r.ok)
                        sent = [r.sent_s for r in records]
                    elif tool == "vllm bench serve":
                        d = run_vllm(args, server.url, model, tokenizer, prompts, n, tokens, work, name, rate=rate)
                        starts = [s for s in d.get("start_times") or [] if s]
                        if not starts:
                            raise RuntimeError("no start_times in its result (needs --save-detailed)")
                        entry["client"] = lag_stats(offset_free(starts, rate))
                        entry["client_steady"] = lag_stats(steady(offset_free(starts, rate)))
                        entry["client_kind"] = "offset-free (start_times vs (i+1)/rate; schedule origin unrecorded)"
                        entry["client_offset_free"] = entry["client"]
                        entry["ok"] = d.get("completed")
                        sent = starts
                    else:
                        b = run_guidellm(args, server.url, model, tokenizer, prompts, n, work, name, rate=rate)
                        reqs = guidellm_requests(b)
                        pairs = [(r["info"]["timings"].get("targeted_start"), r["info"]["timings"].get("request_start"))
                                 for r in reqs]
                        pairs = sorted((t, s) for t, s in pairs if t is not None and s is not None)
                        if not pairs:
                            raise RuntimeError("no targeted_start/request_start timings in its benchmark JSON")
                        entry["client"] = lag_stats([s - t for t, s in pairs])
                        entry["client_steady"] = lag_stats(steady([s - t for t, s in pairs]))
                        entry["client_kind"] = "recorded (request_start − targeted_start)"
                        entry["client_offset_free"] = lag_stats(offset_free([s for _, s in pairs], rate))
                        entry["ok"] = (b["metrics"].get("request_totals") or {}).get("successful")
                        sent = [s for _, s in pairs]
                    entry["achieved_send_rate"] = ((len(sent) - 1) / (max(sent) - min(sent))
                                                   if len(sent) > 1 and max(sent) > min(sent) else None)
                    arrivals = server.arrivals()
                    entry["server_arrivals"] = len(arrivals)
                    entry["server_offset_free"] = lag_stats(offset_free(arrivals, rate))
                except Exception as exc:  # noqa: BLE001
                    entry["error"] = f"{type(exc).__name__}: {exc}"
                    log(f"Part B: {tool} at {key} req/s failed: {tail(entry['error'], 6)}")
                results[tool][key] = entry

    limit = args.lag_limit_ms
    print(f"\n## Part B — generator ceiling (fault server, {tokens} tokens per request, {n} requests per rate, "
          f"constant arrivals; p99 send lag in ms)\n")
    head = "| tool | lag measure | " + " | ".join(f"{r:g} req/s" for r in rates) + " | highest rate with p99 ≤ " \
           f"{limit:g} ms |"
    print(head)
    print("|---|---|" + "---:|" * len(rates) + "---:|")
    ceilings: dict[str, dict[str, float | None]] = {}
    for tool in tools:
        ceilings[tool] = {}
        for measure, label in (("client", None), ("client_steady", f"same, first {100 * STEADY_SKIP:.0f} % dropped"),
                               ("server_offset_free", "server arrivals, offset-free")):
            cells, passing = [], []
            kind = label
            for rate in rates:
                e = results[tool][f"{rate:g}"]
                if "error" in e:
                    cells.append("error")
                    continue
                kind = kind or e.get("client_kind")
                p99 = e[measure]["p99_ms"]
                achieved = e.get("achieved_send_rate")
                # A tool that fell behind the schedule did not reach the rate, whatever its lag figure says.
                reached = achieved is not None and achieved >= 0.95 * rate
                cells.append(f"{fmt(p99)}" + ("" if reached else f" (sent {fmt(achieved)}/s)"))
                if p99 is not None and p99 <= limit and reached:
                    passing.append(rate)
            best = max(passing) if passing else None
            ceilings[tool][measure] = best
            print(f"| {tool} | {kind} | " + " | ".join(cells) + f" | {fmt(best) if best else 'none'} |")
    for tool, note in skipped.items():
        print(f"\n{tool}: {note}")
    for tool in tools:
        for key, e in results[tool].items():
            if "error" in e:
                print(f"\n{tool} at {key} req/s: {e['error']}")

    print()
    for measure, label in (("client", "as each tool records it (vllm bench: offset-free)"),
                           ("client_steady", f"as recorded, first {100 * STEADY_SKIP:.0f} % of requests dropped"),
                           ("server_offset_free", "server-side arrivals, offset-free, the same for all")):
        mine = ceilings["specwise"].get(measure)
        others = {t: c.get(measure) for t, c in ceilings.items() if t != "specwise"}
        if not others:
            print(f"Ceiling {label}: specwise {fmt(mine) if mine else 'none'} req/s; no other tool ran.")
            continue
        best_tool = max(others, key=lambda t: others[t] or 0.0)
        best = others[best_tool]
        if mine is None and best is None:
            verdict = "no tool kept its p99 send lag within the limit at any tested rate"
        elif best is None or (mine is not None and mine > best):
            verdict = "specwise sustains a higher rate"
        elif mine is None or mine < best:
            verdict = f"{best_tool} sustains a higher rate"
        else:
            verdict = "the same ceiling within the tested rates"
        print(f"Ceiling {label}: specwise {fmt(mine) if mine else 'none'} req/s vs best other "
              f"({best_tool}) {fmt(best) if best else 'none'} req/s — {verdict}.")
    return {"rates": rates, "requests": n, "lag_limit_ms": limit, "results": results, "ceilings": ceilings,
            "skipped": skipped}


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing OpenAI-compatible streaming server (default: start the embedded "
                                      "engine, baseline mode)")
    parser.add_argument("--model", help="served model name (default: the server's first)")
    parser.add_argument("--tokenizer", help="tokenizer directory for vllm bench / GuideLLM (default: the embedded "
                                            "target's; with --url, the shipped target-small)")
    parser.add_argument("--requests", type=int, default=64, help="Part A requests per tool and round (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="Part A interleaved rounds (default 3)")
    parser.add_argument("--max-tokens", type=int, default=32, help="Part A output tokens (ignore_eos; default 32)")
    parser.add_argument("--warmup", type=int, default=4, help="Part A unmeasured warm-up requests (default 4)")
    parser.add_argument("--dataset", default="mixed", help="specwise prompt set or JSONL (default mixed)")
    parser.add_argument("--rates", default="50,100,200,400,800", help="Part B request rates, req/s")
    parser.add_argument("--ceiling-requests", type=int, default=256, help="Part B requests per rate and tool")
    parser.add_argument("--ceiling-tokens", type=int, default=8, help="Part B tokens per response")
    parser.add_argument("--lag-limit-ms", type=float, default=1.0, help="Part B p99 send-lag limit (default 1 ms)")
    parser.add_argument("--guidellm", default=str(DEFAULT_GUIDELLM), help="path to the guidellm binary of its venv")
    parser.add_argument("--vllm-python", default=sys.executable, help="python with vLLM (default: this one)")
    parser.add_argument("--skip-guidellm", action="store_true")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true", help="skip Part A")
    parser.add_argument("--skip-ceiling", action="store_true", help="skip Part B")
    parser.add_argument("--tool-timeout", type=float, default=600.0, help="seconds per tool run")
    parser.add_argument("--work-dir", type=Path, help="where the tools' outputs go (default: a new temp dir)")
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="specwise-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work dir {work}")
    guidellm_note = guidellm_usable(args)
    if guidellm_note:
        print(f"note: GuideLLM {guidellm_note}")
    raw: dict[str, Any] = {"work_dir": str(work), "args": {k: str(v) for k, v in vars(args).items()}}

    if not args.skip_agreement:
        if args.url:
            model = args.model or served_model(args.url)
            tokenizer = args.tokenizer or str(SHIPPED_TOKENIZER)
            raw["part_a"] = part_a(args, args.url, model, tokenizer, work, guidellm_note)
        else:
            from specwise.engine.server import VllmServer, embedded

            spec = embedded("baseline")
            tokenizer = args.tokenizer or spec.model
            log("starting the embedded engine (baseline) — this takes a while")
            t0 = time.monotonic()
            with VllmServer(spec, work / "server") as server:
                log(f"engine ready at {server.url} after {time.monotonic() - t0:.0f} s")
                model = args.model or spec.model_name
                raw["part_a"] = part_a(args, server.url, model, tokenizer, work, guidellm_note)
    if not args.skip_ceiling:
        raw["part_b"] = part_b(args, work, args.tokenizer or str(SHIPPED_TOKENIZER), guidellm_note)

    if args.out:
        args.out.write_text(json.dumps(raw, indent=2, default=str) + "\n")
        log(f"raw numbers in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
