"""The senders of a run: who sends its requests, each with its share of the one schedule.

- `LocalSenders`: one sender in this process's event loop (the default; what every test of a bench's
  behaviour runs).
- `ProcessSenders`: one worker process per sender, each with its own event loop, uvloop when installed, and
  its own connections, so that keeping the schedule and parsing streams never share a core with the run's
  writing and scraping. Records come back as JSON lines on its stdout and are written as they arrive. Every
  process reads the same monotonic clock (CLOCK_MONOTONIC is system-wide), so their times need no correction.
- `load.ray.RaySenders`: the same sender as a Ray actor, anywhere on a Ray cluster, its clock's offset
  measured and taken out.

Each sender does its warm-up share, says it is ready, waits for the run's start (the caller scrapes the
counters in between, so their window holds measured requests only), sends its share and reports its
`Gauge` stats. A sender that fails says why; the run then ends as crashed, its records kept.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from specwise.load.client import Connections, Endpoint
from specwise.load.driver import Gauge, drive
from specwise.load.protocol import MAX_LINE_BYTES
from specwise.results import RequestRecord
from specwise.workload import LoadShape, Mix, Prompt, Share, arrival_offsets, request_plan

# A sender's records travel in batches: at most this long after they end, or this many at once.
BATCH_S = 0.02
BATCH_RECORDS = 256
# How long a stopped sender gets to send what it has before it is killed.
STOP_GRACE_S = 5.0


class SenderFailed(Exception):
    """A sender (process or actor) crashed or could not start; the message says which and why."""


@dataclass(frozen=True)
class Job:
    """Everything a sender needs, picklable: the run's schedule is rebuilt from it, identically, in each."""

    endpoint: Endpoint
    prompts: tuple[Prompt, ...]
    mix: Mix
    seed: int
    warmup: int
    shape: LoadShape
    max_tokens: int
    ignore_eos: bool
    share: Share = Share()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (libuv: less overhead per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def run_sender(job: Job, zero: float, emit: Callable[[RequestRecord], None], ready: Callable[[], None],
                     go: Awaitable[float]) -> dict[str, Any]:
    """One sender's whole life: its warm-up share, `ready()`, the start time from `go`, its measured share.
    Returns its stats (`Gauge.stats`, and where it ran)."""
    share, shape = job.share, job.shape
    plan = request_plan(job.prompts, job.mix, job.seed, job.warmup)
    mine = share.shape(shape)
    gauge = Gauge(zero)
    watching = asyncio.create_task(gauge.run())
    async with Connections() as pool:
        try:
            warm = share.warmup(plan, job.warmup)
            if warm:
                # Warm-up on its own, before the counters' first scrape; it also opens the connections the
                # measured requests then reuse.
                width = min(len(warm), mine.concurrency or mine.max_in_flight or 4)
                await drive(pool, job.endpoint, iter(warm), LoadShape(concurrency=width, requests=len(warm)),
                            max_tokens=job.max_tokens, ignore_eos=job.ignore_eos, on_record=emit, zero=zero,
                            start_s=time.perf_counter() - zero, sender=share.sender)
            ready()
            start_s = await go
            offsets = (share.offsets(arrival_offsets(shape.rate, shape.arrivals, shape.burstiness, job.seed))
                       if shape.rate is not None else None)
            await drive(pool, job.endpoint, share.measured(plan), mine, max_tokens=job.max_tokens,
                        ignore_eos=job.ignore_eos, on_record=emit, zero=zero, start_s=start_s, offsets=offsets,
                        gauge=gauge, sender=share.sender)
        finally:
            watching.cancel()
    return {"sender": share.sender, "host": socket.gethostname(), "pid": os.getpid(), **gauge.stats()}


class LocalSenders:
    """One sender in the caller's event loop."""

    def __init__(self, job: Job, zero: float, on_record: Callable[[RequestRecord], None]) -> None:
        self.job, self.zero, self.on_record = job, zero, on_record
        self.senders = 1

    async def start(self) -> None:
        self._ready = asyncio.Event()
        self._go: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(run_sender(self.job, self.zero, self.on_record, self._ready.set, self._go))
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._task.done():
            self._task.result()   # the warm-up's own failure

    def go(self, start_s: float) -> None:
        self._go.set_result(start_s)

    async def finished(self) -> list[dict[str, Any]]:
        return [await self._task]

    async def stop(self) -> list[dict[str, Any]]:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return []


def _child_main() -> None:
    """A worker process (`python -m specwise.load.senders`): its job comes pickled on stdin's first line, then
    `go START_S` or `stop`; it writes one message per line on stdout — `R <record JSON>`, `ready`, `done <stats
    JSON>` or `failed <why>`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle: it says `stop`
    stdin, out = sys.stdin.buffer, sys.stdout.buffer
    job, zero = pickle.loads(base64.b64decode(stdin.readline()))
    pending: list[bytes] = []
    last = time.perf_counter()

    def put(line: bytes) -> None:
        out.write(line + b"\n")
        out.flush()

    def flush() -> None:
        nonlocal last
        if pending:
            out.write(b"".join(pending))
            out.flush()
            pending.clear()
        last = time.perf_counter()

    def emit(record: RequestRecord) -> None:
        pending.append(b"R " + record.model_dump_json().encode() + b"\n")
        if len(pending) >= BATCH_RECORDS or time.perf_counter() - last >= BATCH_S:
            flush()

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start: asyncio.Future[float] = loop.create_future()
        stopped = asyncio.Event()

        def listen() -> None:   # a thread: the parent's words on stdin
            for line in stdin:
                word, _, value = line.decode().strip().partition(" ")
                if word == "go":
                    loop.call_soon_threadsafe(start.set_result, float(value))
                elif word == "stop":
                    break
            loop.call_soon_threadsafe(stopped.set)   # `stop`, or the parent is gone

        async def ticker() -> None:   # records of a quiet spell still leave within BATCH_S
            while True:
                await asyncio.sleep(BATCH_S)
                flush()

        threading.Thread(target=listen, daemon=True).start()
        flushing = asyncio.create_task(ticker())
        running = asyncio.create_task(run_sender(job, zero, emit, lambda: put(b"ready"), start))
        stopping = asyncio.create_task(stopped.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                return {"sender": job.share.sender, "stopped": True}
            return running.result()
        finally:
            flushing.cancel()
            stopping.cancel()
            flush()

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            stats = runner.run(main())
        put(b"done " + json.dumps(stats).encode())
    except BaseException as exc:   # noqa: BLE001 — whatever it was, the parent must hear of it, not wait
        flush()
        put(b"failed " + f"{type(exc).__name__}: {exc}".replace("\n", " ").encode())


class Tally:
    """What senders elsewhere (processes, actors) have said so far: who is ready, who is done with what stats,
    the first failure; records handed on as they come, a failure to take them (a full disk) kept to raise."""

    def __init__(self, jobs: list[Job], zero: float, on_line: Callable[[str], None]) -> None:
        self.jobs, self.zero, self.on_line = jobs, zero, on_line
        self.senders = len(jobs)
        self._stats: dict[int, dict[str, Any]] = {}
        self._ready: set[int] = set()
        self._failed: str | None = None
        self._error: BaseException | None = None

    def _take(self, lines: list[str]) -> None:
        try:
            for line in lines:
                self.on_line(line)
        except Exception as exc:   # the run directory refused a write: the caller's to handle, as is
            self._error = self._error or exc

    async def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            if self._error is not None:
                raise self._error
            if self._failed:
                raise SenderFailed(self._failed)
            await asyncio.sleep(0.01)
        if self._error is not None:
            raise self._error


class ProcessSenders(Tally):
    """One worker process per share of the schedule; their records come back as JSON lines on their stdout.

    Started as `python -m specwise.load.senders`, not through multiprocessing: spawning re-imports the
    caller's main script, which a library cannot ask of its callers."""

    def __init__(self, jobs: list[Job], zero: float, on_line: Callable[[str], None]) -> None:
        super().__init__(jobs, zero, on_line)
        self._processes: list[asyncio.subprocess.Process] = []
        self._readers: list[asyncio.Task[None]] = []

    async def _read(self, sender: int, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode().rstrip("\n")
            if line.startswith("R "):
                self._take([line[2:]])
            elif line == "ready":
                self._ready.add(sender)
            elif line.startswith("done "):
                self._stats[sender] = json.loads(line[5:])
            elif line.startswith("failed "):
                self._stats[sender] = {"sender": sender, "failed": True}
                self._failed = self._failed or f"sender {sender} failed: {line[7:]}"
        await process.wait()
        if sender not in self._stats:
            self._stats[sender] = {"sender": sender, "failed": True}
            assert process.stderr is not None
            err = (await process.stderr.read()).decode(errors="replace").strip().splitlines()
            self._failed = self._failed or (f"sender {sender} (a worker process) ended with exit code "
                                            f"{process.returncode}" + (f": {err[-1]}" if err else ""))

    async def start(self) -> None:
        for job in self.jobs:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "specwise.load.senders", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=MAX_LINE_BYTES * 4)
            assert process.stdin is not None
            # The job holds the API key: it goes through the pipe, never argv or the environment.
            process.stdin.write(base64.b64encode(pickle.dumps((job, self.zero))) + b"\n")
            self._processes.append(process)
            self._readers.append(asyncio.create_task(self._read(job.share.sender, process)))
        await self._until(lambda: len(self._ready | set(self._stats)) == self.senders)

    def _say(self, word: str) -> None:
        for process in self._processes:
            if process.stdin is not None and not process.stdin.is_closing():
                process.stdin.write(word.encode() + b"\n")

    def go(self, start_s: float) -> None:
        self._say(f"go {start_s!r}")

    async def finished(self) -> list[dict[str, Any]]:
        try:
            await self._until(lambda: len(self._stats) == self.senders)
        finally:
            await self._close()
        return [self._stats[i] for i in sorted(self._stats)]

    async def stop(self) -> list[dict[str, Any]]:
        """Stop every sender: each cancels its requests, sends what it has, and ends."""
        self._say("stop")
        with contextlib.suppress(SenderFailed, TimeoutError):
            await asyncio.wait_for(self._until(lambda: len(self._stats) == self.senders), STOP_GRACE_S)
        await self._close()
        return [self._stats[i] for i in sorted(self._stats)]

    async def _close(self) -> None:
        self._say("stop")
        for process in self._processes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), STOP_GRACE_S)
            if process.returncode is None:
                process.kill()
                await process.wait()
        # Every line a worker wrote is taken before the caller closes its files.
        await asyncio.gather(*self._readers, return_exceptions=True)


if __name__ == "__main__":
    _child_main()
