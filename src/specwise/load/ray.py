"""Senders as Ray actors (`specwise bench --ray ADDRESS`): the same sender as a worker process, anywhere on a
Ray cluster, each with its share of the one schedule.

- Each sender is an async actor (one CPU, spread over the nodes) that runs `run_sender`; its short calls
  (`drain`, `go`, `clock`, `stop`) interleave with the long `run` on the actor's event loop.
- Clocks: an actor may run on another machine, whose `perf_counter` has another origin. Before the run its
  offset is measured NTP-style — `CLOCK_SAMPLES` round trips timed here, the shortest kept: offset =
  t_actor − (t_send + t_recv) / 2, wrong by at most half that round trip — and the actor runs on
  `zero + offset`, so that every time it records is already on this process's clock. The offset is measured
  again after the run: the difference is the clocks' drift over it. Each actor's offset, round trip and drift
  go into its stats (the manifest's `senders`).
- Records: the actor keeps them as JSON lines; this process drains every actor every `DRAIN_S` and hands each
  line on as it comes, then drains a last time when the actor is done.
- The actors are always killed at the end; a cluster this process connected to is disconnected from
  (`ray.shutdown()`), never stopped. A connection made before (`ray.init` by a library user) is left open.

Ray is optional (`pip install 'specwise[ray]'`) and is imported by this module only. specwise itself must be
installed, at this version, on every node: the actor's code is specwise's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from specwise import __version__
from specwise.errors import SpecwiseError
from specwise.load.senders import STOP_GRACE_S, Job, SenderFailed, run_sender
from specwise.results import RequestRecord

FIELD = "--ray"
# How often each actor's finished records are fetched: a record reaches the run directory this long after it ends.
DRAIN_S = 0.05
# Round trips per clock measurement; the shortest is kept.
CLOCK_SAMPLES = 12
# Ray calls cross machines: the start is set at least this far ahead of `go`, so every actor hears it in time.
START_LEAD_S = 0.5
# An address that does not accept a TCP connection within this is unreachable (ray.init would retry for minutes).
CONNECT_TIMEOUT_S = 5.0
# Connecting to a reachable cluster, and the actors' start (a busy cluster may be slow to find them a CPU).
INIT_TIMEOUT_S = 60.0
ACTOR_START_TIMEOUT_S = 120.0
INSTALL_FIX = "pip install 'specwise[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpecwiseError(FIELD, "Ray is not installed", INSTALL_FIX) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port that must accept a connection: a GCS address HOST:PORT or a Ray Client ray://HOST:PORT
    (default port 10001); None for what Ray resolves itself ("auto", "local")."""
    rest = address.removeprefix("ray://")
    if address.startswith("ray://"):
        rest = rest.split("/", 1)[0]
    elif "://" in address or ":" not in rest:
        return None
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "10001"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecwiseError(FIELD, f"{address!r} is not a Ray address",
                            "give HOST:PORT (the cluster's GCS, e.g. 10.0.0.5:6379) or ray://HOST:10001")
    return host, int(port)


def _check_reachable(address: str) -> None:
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise SpecwiseError(FIELD, f"cannot reach the Ray cluster at {address} ({why})",
                            "start it (ray start --head) or give its address: HOST:6379 on a cluster node, "
                            "ray://HEAD:10001 from elsewhere") from None


def _one_line(exc: BaseException) -> str:
    """A Ray error as one line: the exception the actor raised, not Ray's wrapping and traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Sender:
    """The actor: one sender. `run` is its life; `drain` hands over its records so far (and whether its warm-up
    is done); `go` gives it the start; `clock` reads its clock; `stop` cancels its run.

    `skew_s` shifts this process's `perf_counter`, as if the actor ran on a machine whose clock has another
    origin (for tests of the offset's correction; 0 otherwise)."""

    def __init__(self, skew_s: float = 0.0) -> None:
        if skew_s:
            real = time.perf_counter
            time.perf_counter = lambda: real() + skew_s   # the actor has its own process: this is its clock
        self._lines: list[str] = []
        self._ready = False
        self._stopped = False
        self._go: asyncio.Future[float] | None = None
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._zero = 0.0
        self._go_margin_s: float | None = None

    async def info(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"version": __version__, "host": socket.gethostname(), "pid": os.getpid(),
                "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address()}

    async def clock(self) -> float:
        return time.perf_counter()

    def _start_future(self) -> asyncio.Future[float]:
        if self._go is None:
            self._go = asyncio.get_running_loop().create_future()
        return self._go

    async def run(self, job: Job, zero: float) -> dict[str, Any]:
        self._zero = zero

        def emit(record: RequestRecord) -> None:
            self._lines.append(record.model_dump_json())

        def ready() -> None:
            self._ready = True

        self._task = asyncio.create_task(run_sender(job, zero, emit, ready, self._start_future()))
        try:
            stats = await self._task
        except asyncio.CancelledError:
            if not self._stopped:
                raise
            return {"sender": job.share.sender, "stopped": True}
        return {**stats, "go_margin_s": self._go_margin_s}

    async def drain(self) -> tuple[list[str], bool]:
        lines, self._lines = self._lines, []
        return lines, self._ready

    async def go(self, start_s: float) -> None:
        # How long before the start the actor heard it (negative: too late, its first sends lag).
        self._go_margin_s = start_s - (time.perf_counter() - self._zero)
        future = self._start_future()
        if not future.done():
            future.set_result(start_s)

    async def stop(self) -> list[dict[str, Any]]:
        """Stop every sender: each cancels its requests; what it has is taken; then the actors are killed."""
        await self._close()
        return [self._stats[i] for i in sorted(self._stats)]

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # A sender still running (stopped early, or another one failed) cancels its requests and hands in
        # what it has, within STOP_GRACE_S.
        for actor, run in zip(self._actors, self._runs):
            if not run.done():
                with contextlib.suppress(Exception):
                    actor.stop.remote()
        if self._drains:
            await asyncio.wait(self._drains, timeout=STOP_GRACE_S)
        for task in self._drains:
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)
        for i, actor in enumerate(self._actors):
            if i not in self._stats:   # never started its run, or did not answer in time: what it still holds
                with contextlib.suppress(Exception):
                    lines, _ = await asyncio.wait_for(actor.drain.remote(), STOP_GRACE_S)
                    self._take(lines)
                self._stats[i] = self._with_clock(i, {"sender": self.jobs[i].share.sender, "stopped": True})
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
        for run in self._runs:
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        if self._owns_connection:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.ray.shutdown)
