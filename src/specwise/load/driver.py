"""The driver: keeps a load's shape — N requests in flight (closed loop) or sends on an arrival schedule
(open loop) — until its bound, handing each record on as it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx

from specwise.load.client import Endpoint, send
from specwise.results import RequestRecord
from specwise.workload import LoadShape, Planned, arrival_offsets

# asyncio.sleep wakes up to a few ms late on a busy loop: sleep to just before the send time,
# then yield to the loop until it comes, so other requests' chunks are still read meanwhile.
SPIN_S = 0.002


async def sleep_until(when: float) -> None:
    delay = when - time.perf_counter()
    if delay > SPIN_S:
        await asyncio.sleep(delay - SPIN_S)
    while time.perf_counter() < when:
        await asyncio.sleep(0)


async def drive(client: httpx.AsyncClient, endpoint: Endpoint, plan: Iterator[Planned], shape: LoadShape, *,
                max_tokens: int, on_record: Callable[[RequestRecord], None], ignore_eos: bool = True,
                seed: int = 0, zero: float | None = None) -> None:
    """Send the next requests of `plan` in `shape` until its bound; `on_record` gets each record as it ends.

    The duration and the open-loop schedule run from this call. Requests in flight when
    the bound is reached are awaited; cancelling the task cancels them.
    """
    zero = time.perf_counter() if zero is None else zero
    deadline = time.perf_counter() + shape.duration_s if shape.duration_s is not None else None
    sent = 0

    def more() -> bool:
        nonlocal sent
        if shape.requests is not None and sent >= shape.requests:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        sent += 1
        return True

    async def one(planned: Planned, scheduled_s: float) -> None:
        on_record(await send(client, endpoint, planned, zero=zero, scheduled_s=scheduled_s, max_tokens=max_tokens,
                             ignore_eos=ignore_eos))

    if shape.concurrency is not None:
        async def worker() -> None:
            while more():
                await one(next(plan), time.perf_counter() - zero)

        await asyncio.gather(*(worker() for _ in range(shape.concurrency)))
        return

    assert shape.rate is not None
    cap = asyncio.Semaphore(shape.max_in_flight) if shape.max_in_flight else None
    tasks: set[asyncio.Task[None]] = set()
    offsets = arrival_offsets(shape.rate, shape.arrivals, shape.burstiness, seed)

    async def capped(planned: Planned, scheduled_s: float) -> None:
        try:
            await one(planned, scheduled_s)
        finally:
            if cap:
                cap.release()

    start = time.perf_counter() - zero
    try:
        while more():
            planned, scheduled_s = next(plan), start + next(offsets)
            await sleep_until(zero + scheduled_s)
            if cap:
                await cap.acquire()
            task = asyncio.create_task(capped(planned, scheduled_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
