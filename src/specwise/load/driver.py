"""The driver: keeps a load's shape — N requests in flight (closed loop) or sends on an arrival schedule
(open loop) — until its bound, handing each record on as it ends, and watches its own limits.

A sender that falls behind says so: each record is marked `client_bound` with why — sent later than
`SEND_LAG_BOUND_S` after its scheduled time, held back by the in-flight cap, or in flight while the sender's
event loop was busy (running, or waiting for a core) for a whole window — and carries the largest event-loop
stall seen while it was in flight.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from specwise.load.client import Connections, Endpoint, Request
from specwise.results import RequestRecord
from specwise.thresholds import CLIENT_BUSY_SATURATED, CLIENT_BUSY_WINDOW_S, SEND_LAG_BOUND_S
from specwise.workload import LoadShape, Planned

# Where no timerfd is to be had, asyncio.sleep (whose timers have a grain of 1 ms) sleeps to just before the
# send time, and the loop is yielded to until it comes, so other requests' chunks are still read meanwhile.
SPIN_S = 0.002
# The gauge's tick: how often it looks at the loop's lateness and the process's CPU time.
TICK_S = 0.005
# Stalls shorter than this are the timer's own grain (uvloop's is 1 ms), not kept for marking.
STALL_KEPT_S = 0.001


class BusyClock:
    """Seconds the calling thread (the event loop's) has been running or runnable — waiting for a core counts:
    a loop with work queued is saturated whether or not the scheduler gave it the core. Linux's schedstat has
    both; elsewhere the process's CPU time stands in (and misses the waiting)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        if self._fd is not None:
            try:
                running, waiting, _ = os.pread(self._fd, 128, 0).split()
                return (int(running) + int(waiting)) / 1e9
            except (OSError, ValueError):
                pass
        return time.process_time()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Alarm:
    """Wakes the event loop at a time on `time.perf_counter`'s clock to within tens of µs, without spinning.

    Event loops time their sleeps in whole milliseconds (epoll's timeout; libuv's clock), so a send scheduled
    between two ticks goes out up to 1 ms late; spinning closes that gap but burns the core that the server and
    the other senders need. A timerfd (Linux) set to the absolute time is watched like any socket: the loop
    wakes when it fires, and goes on reading streams until then. Elsewhere: sleep, then a short spin."""

    _TFD_NONBLOCK, _TFD_CLOEXEC, _TFD_TIMER_ABSTIME, _CLOCK_MONOTONIC = 0o4000, 0o2000000, 1, 1

    def __init__(self) -> None:
        self._fd: int | None = None
        self._libc: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._then: Callable[[], object] | None = None
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd >= 0:
            self._fd, self._libc = fd, libc

    def _run_then(self) -> None:
        then, self._then = self._then, None
        if then is not None:
            then()

    def _fired(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._fd, 8)  # type: ignore[arg-type]
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                self._run_then()
            except BaseException as exc:   # noqa: BLE001 — the waiter must hear of it, not wait forever
                waiter.set_exception(exc)
                return
            waiter.set_result(None)

    async def until(self, when: float, then: Callable[[], object] | None = None) -> None:
        """Return at `when`; `then()` runs the moment it comes, in the loop's own callback (one loop step before
        the awaiting task resumes: what must happen on time goes there)."""
        self._then = then
        if time.perf_counter() >= when:
            self._run_then()
            return
        if self._fd is None:
            delay = when - time.perf_counter()
            if delay > SPIN_S:
                await asyncio.sleep(delay - SPIN_S)
            while time.perf_counter() < when:
                await asyncio.sleep(0)
            self._run_then()
            return
        loop = asyncio.get_running_loop()
        # `when` is on time.perf_counter's clock (which a Ray actor may see shifted); the timer runs on
        # CLOCK_MONOTONIC: the time left is carried over.
        at = time.clock_gettime(time.CLOCK_MONOTONIC) + (when - time.perf_counter())
        seconds = int(at)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, min(999_999_999, int((at - seconds) * 1e9))))
        if self._libc.timerfd_settime(self._fd, self._TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")
        self._waiter = loop.create_future()
        loop.add_reader(self._fd, self._fired)
        try:
            await self._waiter
        finally:
            loop.remove_reader(self._fd)
            self._waiter = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Gauge:
    """A sender's view of itself while it runs (times in s on the run's clock): the event loop's lateness
    at each tick (a stall delays every chunk read meanwhile) and its loop's busy share (`BusyClock`) per window
    and per stall."""

    def __init__(self, zero: float, busy: Callable[[], float] | None = None) -> None:
        self.zero = zero
        self.stalls: list[float] = []                    # lateness of every tick
        self._stall_end: list[float] = []                # kept stalls: when each ended, and how long it was
        self._stall_len: list[float] = []
        self.windows: list[tuple[float, float, float]] = []   # (start, end, CPU share)
        self._saturated_end: list[float] = []
        self._saturated_start: list[float] = []
        self._longest_saturated = 0.0
        self._busy = busy or BusyClock()
        self._wall, self._cpu = time.perf_counter(), self._busy()

    def _saturated(self, start: float, end: float) -> None:
        self._saturated_start.append(start - self.zero)
        self._saturated_end.append(end - self.zero)
        self._longest_saturated = max(self._longest_saturated, end - start)

    async def run(self) -> None:
        try:
            await self._watch()
        finally:
            if isinstance(self._busy, BusyClock):
                self._busy.close()

    async def _watch(self) -> None:
        tick_wall, tick_cpu = self._wall, self._cpu
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            now, cpu = time.perf_counter(), self._busy()
            late = max(0.0, now - due)
            self.stalls.append(late)
            if late > STALL_KEPT_S:
                self._stall_end.append(now - self.zero)
                self._stall_len.append(late)
                # A busy stall as long as a window is saturation whatever the window around it averages (any stall
                # that long marks the requests it touched: `mark`).
                if late >= CLIENT_BUSY_WINDOW_S and (cpu - tick_cpu) / (now - tick_wall) >= CLIENT_BUSY_SATURATED:
                    self._saturated(tick_wall, now)
            tick_wall, tick_cpu = now, cpu
            if now - self._wall >= CLIENT_BUSY_WINDOW_S:
                share = (cpu - self._cpu) / (now - self._wall)
                self.windows.append((self._wall - self.zero, now - self.zero, share))
                if share >= CLIENT_BUSY_SATURATED:
                    self._saturated(self._wall, now)
                self._wall, self._cpu = now, cpu

    def stall_during(self, start: float, end: float) -> float:
        """The longest stall that overlapped [start, end]."""
        longest = 0.0
        for i in range(bisect.bisect_left(self._stall_end, start), len(self._stall_end)):
            if self._stall_end[i] - self._stall_len[i] > end:
                break
            longest = max(longest, self._stall_len[i])
        return longest

    def saturated_during(self, start: float, end: float) -> bool:
        # Intervals are appended by their end; none is longer than the longest, which bounds the scan.
        for i in range(bisect.bisect_left(self._saturated_end, start), len(self._saturated_end)):
            if self._saturated_start[i] <= end:
                return True
            if self._saturated_end[i] > end + self._longest_saturated:
                break
        return False

    def mark(self, record: RequestRecord, capped: bool) -> RequestRecord:
        reasons = []
        if record.send_lag_s > SEND_LAG_BOUND_S:
            reasons.append("send_lag")
        if capped:
            reasons.append("in_flight_cap")
        if self.saturated_during(record.sent_s, record.end_s):
            reasons.append("cpu_saturated")
        # A stall as long as a window held every chunk read meanwhile, whatever kept the loop: its own work, a
        # blocking call, or time the machine was not given (a VM's stolen time counts in schedstat neither as
        # running nor as waiting). Shorter ones (a burst of connections, a long parse) are only kept, as
        # `client_stall_ms`: saturation is the loop busy for a window.
        stall = self.stall_during(record.sent_s, record.end_s)
        if stall >= CLIENT_BUSY_WINDOW_S:
            reasons.append("loop_stalled")
        record.client_bound = reasons
        record.client_stall_ms = 1e3 * stall
        return record

    def stats(self) -> dict[str, Any]:
        """What the run's manifest keeps of this sender: stalls (ms) and CPU shares over its windows."""
        stalls = sorted(self.stalls)

        def q(p: float) -> float:
            return 1e3 * stalls[min(len(stalls) - 1, int(p / 100 * len(stalls)))] if stalls else 0.0

        shares = [w[2] for w in self.windows]
        return {"stall_ms": {"p50": q(50), "p99": q(99), "max": 1e3 * stalls[-1] if stalls else 0.0},
                "busy_share": {"mean": sum(shares) / len(shares) if shares else None,
                              "max": max(shares) if shares else None},
                "windows": len(shares), "saturated_intervals": len(self._saturated_end),
                "stalled_intervals": sum(stall >= CLIENT_BUSY_WINDOW_S for stall in self._stall_len)}


async def drive(pool: Connections, endpoint: Endpoint, plan: Iterator[Planned], shape: LoadShape, *,
                max_tokens: int, on_record: Callable[[RequestRecord], None], zero: float, start_s: float,
                offsets: Iterator[float] | None = None, ignore_eos: bool = True, gauge: Gauge | None = None,
                sender: int = 0) -> None:
    """Send the next requests of `plan` in `shape` until its bound; `on_record` gets each record as it ends.

    Times are on the run's clock (`zero`, a `time.perf_counter` value); sending begins at `start_s` on it,
    which the duration and the open-loop `offsets` (s from the start) run from. Requests in flight when
    the bound is reached are awaited; cancelling the task cancels them.
    """
    with contextlib.closing(Alarm()) as alarm:
        start = zero + start_s
        await alarm.until(start)
        deadline = start + shape.duration_s if shape.duration_s is not None else None
        sent = 0

        def more() -> bool:
            nonlocal sent
            if shape.requests is not None and sent >= shape.requests:
                return False
            if deadline is not None and time.perf_counter() >= deadline:
                return False
            sent += 1
            return True

        def prepare(planned: Planned) -> Request:
            return Request(pool, endpoint, planned, zero=zero, max_tokens=max_tokens, ignore_eos=ignore_eos)

        async def one(request: Request, scheduled_s: float, capped: bool = False) -> None:
            record = await request.run(scheduled_s)
            record.sender = sender
            on_record(gauge.mark(record, capped) if gauge else record)

        if shape.concurrency is not None:
            async def worker() -> None:
                while more():
                    await one(prepare(next(plan)), time.perf_counter() - zero)

            await asyncio.gather(*(worker() for _ in range(shape.concurrency)))
            return

        assert offsets is not None, "an open-loop load needs its send times"
        cap = asyncio.Semaphore(shape.max_in_flight) if shape.max_in_flight else None
        tasks: set[asyncio.Task[None]] = set()

        def on_time(request: Request) -> None:
            if not (cap and cap.locked()):
                request.start()

        async def capped_one(request: Request, scheduled_s: float, waited: bool) -> None:
            try:
                await one(request, scheduled_s, waited)
            finally:
                if cap:
                    cap.release()

        try:
            while more():
                # Prepared before its time, sent by the alarm's own callback when it comes (on an idle connection,
                # unless the in-flight cap holds it back): no loop step between the time and the write.
                request, scheduled_s = prepare(next(plan)), start_s + next(offsets)
                await alarm.until(zero + scheduled_s, then=functools.partial(on_time, request))
                waited = bool(cap and cap.locked())
                if cap:
                    await cap.acquire()
                task = asyncio.create_task(capped_one(request, scheduled_s, waited))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
