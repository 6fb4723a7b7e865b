"""`specwise watch` as a function: poll each server's /metrics every interval, keep the polls, hand the views
on (URLs shown and stored redacted, userinfo never sent). An unreachable server is a failed poll (shown,
retried next interval), never an exception; with `record`, each poll is also stored as a run directory's
metric sample (every model's series summed, as `specwise bench` stores them), so `specwise summarize` reads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from specwise import __version__
from specwise.load.client import auth_headers
from specwise.metrics import all_models, snapshot_by_model
from specwise.monitor.view import ModelView, Poll, views
from specwise.results import Manifest, MetricSample, RunWriter, now_iso
from specwise.urls import redact, request_url

# A poll must never take longer than the interval: the next one would queue behind it.
MAX_POLL_TIMEOUT_S = 5.0
# Kept per server: enough for the longest window (5 m) at a 1 s interval, with room.
MAX_POLLS = 1000


async def poll(client: httpx.AsyncClient, url: str, t_s: float, timeout_s: float) -> Poll:
    try:
        response = await client.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
        response.raise_for_status()
        return Poll(t_s=t_s, models=await asyncio.to_thread(snapshot_by_model, response.text))
    except (httpx.HTTPError, ValueError) as exc:
        return Poll(t_s=t_s, error=type(exc).__name__)


def record_dir(root: Path, url: str, several: bool) -> Path:
    """One run directory per server: the root itself for one, a subdirectory per host:port for several."""
    if not several:
        return root
    parts = urlsplit(url)
    return root / f"{parts.hostname or 'server'}_{parts.port or ''}".rstrip("_")


def _writer(root: Path, url: str, several: bool, interval_s: float) -> RunWriter:
    manifest = Manifest(kind="specwise.watch", specwise_version=__version__, started_at=now_iso(), url=redact(url),
                        api="metrics", model="", seed=0, config={"interval_s": interval_s}, hardware={})
    return RunWriter(record_dir(root, url, several), manifest)


async def _watch(urls: Sequence[str], interval_s: float, polls_wanted: int | None, api_key: str | None,
                 record: Path | None, on_update: Callable[[list[ModelView]], None]) -> list[ModelView]:
    history: dict[str, list[Poll]] = {url: [] for url in urls}
    writers = {url: _writer(record, url, len(urls) > 1, interval_s) for url in urls} if record else {}
    zero = time.monotonic()
    shown: list[ModelView] = []
    try:
        async with httpx.AsyncClient(headers=auth_headers(api_key)) as client:
            n = 0
            while polls_wanted is None or n < polls_wanted:
                started = time.monotonic()
                t = started - zero
                results = await asyncio.gather(*(poll(client, request_url(url), t,
                                                      min(interval_s, MAX_POLL_TIMEOUT_S)) for url in urls))
                for url, p in zip(urls, results):
                    history[url] = (history[url] + [p])[-MAX_POLLS:]
                    if url in writers:
                        writers[url].metric(MetricSample(t_s=p.t_s, phase="during", values=all_models(p.models),
                                                         error=p.error))
                shown = [v for url in urls for v in views(redact(url), history[url], t)]
                on_update(shown)
                n += 1
                if polls_wanted is None or n < polls_wanted:
                    await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    finally:
        for writer in writers.values():
            writer.close(complete=True, stop_reason="stopped")
    return shown


def watch(urls: Sequence[str], interval_s: float, polls: int | None = None, api_key: str | None = None,
          record: Path | None = None,
          on_update: Callable[[list[ModelView]], None] = lambda v: None) -> list[ModelView]:
    """Poll every `interval_s` seconds, `polls` times (None: until interrupted); returns the last views."""
    return asyncio.run(_watch(urls, interval_s, polls, api_key, record, on_update))
