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
from specwise.load.senders import STOP_GRACE_S, Job, Tally, run_sender
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


def check_address(address: str) -> None:
    """Fail at once, as one error naming --ray, when Ray is not installed, `address` is not a Ray address, or
    nothing accepts a connection there (what a caller can check before a run begins; `RaySenders` checks it too)."""
    import_ray()
    _check_reachable(address)


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
        if self._stopped:
            return {"sender": job.share.sender, "stopped": True}

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

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()


class RaySenders(Tally):
    """One Ray actor per share of the schedule; the interface of `ProcessSenders`."""

    # Test hook: a shift of each actor's clock (s), as if it ran on another machine (see `_Sender`).
    clock_skew_s: tuple[float, ...] = ()

    def __init__(self, address: str, jobs: list[Job], zero: float, on_line: Callable[[str], None]) -> None:
        self.ray = import_ray()
        _host_port(address)   # a malformed address fails here, before anything is started
        super().__init__(jobs, zero, on_line)
        self.address = address
        self._owns_connection = False
        self._actors: list[Any] = []
        self._infos: list[dict[str, Any]] = []
        self._clocks: list[tuple[float, float]] = []        # (offset, round trip) per actor, before the run
        self._runs: list[asyncio.Future[dict[str, Any]]] = []
        self._drains: list[asyncio.Task[None]] = []
        self._closed = False

    # -- the connection and the actors ------------------------------------------------------------------------

    async def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return   # the caller's own connection: used, and left open
        await asyncio.to_thread(_check_reachable, self.address)
        # ray.init in a thread: bounded here, and it leaves the main thread's SIGTERM handler alone.
        init = asyncio.to_thread(ray.init, address=self.address, ignore_reinit_error=True, log_to_driver=False,
                                 logging_level=logging.ERROR)
        try:
            await asyncio.wait_for(init, INIT_TIMEOUT_S)
        except TimeoutError:
            raise SpecwiseError(FIELD, f"no answer from a Ray cluster at {self.address} within "
                                f"{INIT_TIMEOUT_S:g} s", "check that it is a Ray cluster's address") from None
        except (Exception, SystemExit) as exc:   # Ray exits its own way when it gives up on the cluster
            raise SpecwiseError(FIELD, f"cannot connect to the Ray cluster at {self.address}: {_one_line(exc)}",
                                "check the address and that this Ray version matches the cluster's") from None
        self._owns_connection = True

    async def _measure_clock(self, actor: Any) -> tuple[float, float]:
        """(offset, round trip): the actor's clock minus this one's, from the sample with the shortest trip."""
        best: tuple[float, float] | None = None
        for _ in range(CLOCK_SAMPLES):
            sent = time.perf_counter()
            theirs = await actor.clock.remote()
            back = time.perf_counter()
            if best is None or back - sent < best[1]:
                best = (theirs - (sent + back) / 2, back - sent)
        assert best is not None
        return best

    async def start(self) -> None:
        try:
            await self._start()
        except Exception:
            if self._closed:   # stopped meanwhile (Ctrl-C during the start): the failure is that stop's
                raise asyncio.CancelledError from None
            raise

    async def _start(self) -> None:
        ray = self.ray
        await self._connect()
        remote = ray.remote(_Sender)
        skews = self.clock_skew_s
        for job in self.jobs:
            i = job.share.sender
            self._actors.append(remote.options(num_cpus=1, scheduling_strategy="SPREAD", max_restarts=0,
                                               max_task_retries=0)
                                .remote(skews[i] if i < len(skews) else 0.0))
        try:
            self._infos = await asyncio.wait_for(asyncio.gather(*(a.info.remote() for a in self._actors)),
                                                 ACTOR_START_TIMEOUT_S)
        except TimeoutError:
            free = ray.available_resources().get("CPU", 0)
            raise SpecwiseError(FIELD, f"the {self.senders} sender actors did not start within "
                                f"{ACTOR_START_TIMEOUT_S:g} s (they need one CPU each; the cluster has {free:g} "
                                "free)", "give fewer --workers or a larger cluster") from None
        except Exception as exc:
            text = str(exc)
            missing = "No module named" in text and "specwise" in text
            raise SpecwiseError(FIELD, f"a sender actor could not start: {_one_line(exc)}",
                                f"install specwise {__version__} on every node of the cluster" if missing else
                                "see the cluster's logs (ray logs)") from None
        for info in self._infos:
            if info["version"] != __version__:
                raise SpecwiseError(FIELD, f"node {info['node_ip']} ({info['host']}) runs specwise "
                                    f"{info['version']}, this is {__version__}",
                                    f"install specwise {__version__} on every node of the cluster")
        self._clocks = [await self._measure_clock(actor) for actor in self._actors]
        for job, actor, (offset, _) in zip(self.jobs, self._actors, self._clocks):
            # On the actor's clock, the run's zero is ours plus the offset: its records are on our clock.
            self._runs.append(asyncio.wrap_future(actor.run.remote(job, self.zero + offset).future()))
        self._drains = [asyncio.create_task(self._drain(i)) for i in range(self.senders)]
        await self._until(lambda: len(self._ready | set(self._stats)) == self.senders)

    # -- records, failures ------------------------------------------------------------------------------------

    def _with_clock(self, i: int, stats: dict[str, Any]) -> dict[str, Any]:
        info = self._infos[i] if i < len(self._infos) else {}
        offset, rtt = self._clocks[i] if i < len(self._clocks) else (None, None)
        return {**stats, "ray_node_id": info.get("node_id"), "ray_node_ip": info.get("node_ip"),
                "clock_offset_s": offset, "clock_rtt_s": rtt}

    def _fail(self, i: int, exc: BaseException) -> None:
        self._stats.setdefault(i, self._with_clock(i, {"sender": self.jobs[i].share.sender, "failed": True}))
        if not self._failed:
            info = self._infos[i] if i < len(self._infos) else {}
            where = f" on {info['host']}" if info.get("host") else ""
            self._failed = f"sender {i} (a Ray actor{where}) failed: {_one_line(exc)}"

    async def _drain(self, i: int) -> None:
        """Actor i's records, every DRAIN_S, until its run is over and the last of them are taken."""
        actor, run = self._actors[i], self._runs[i]
        while True:
            over = run.done()   # read before the drain: a drain after the run's end takes all it made
            try:
                lines, ready = await actor.drain.remote()
            except Exception as exc:   # the actor is gone (its process, its node): its run says why
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(run), STOP_GRACE_S)
                cause = run.exception() if run.done() and not run.cancelled() else None
                self._fail(i, cause or exc)
                return
            self._take(lines)
            if ready:
                self._ready.add(i)
            if over:
                failure = run.exception()
                if failure is not None:
                    self._fail(i, failure)
                else:
                    self._stats[i] = self._with_clock(i, run.result())
                return
            await asyncio.sleep(DRAIN_S)

    # -- the run ----------------------------------------------------------------------------------------------

    def go(self, start_s: float) -> None:
        start_s = max(start_s, time.perf_counter() - self.zero + START_LEAD_S)
        for actor in self._actors:
            actor.go.remote(start_s)

    async def finished(self) -> list[dict[str, Any]]:
        try:
            await self._until(lambda: len(self._stats) == self.senders)
            await self._measure_drift()
        finally:
            await self._close()
        return [self._stats[i] for i in sorted(self._stats)]

    async def _measure_drift(self) -> None:
        """The offsets measured again: how far each actor's clock drifted from ours during the run."""
        for i, actor in enumerate(self._actors):
            with contextlib.suppress(Exception):
                offset, _ = await asyncio.wait_for(self._measure_clock(actor), STOP_GRACE_S)
                self._stats[i]["clock_drift_s"] = offset - self._clocks[i][0]

    async def stop(self) -> list[dict[str, Any]]:
        """Stop every sender: each cancels its requests and hands in what it has; then the actors are killed."""
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
            if i not in self._stats:   # never started its run, or did not end in time: what it still holds
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
