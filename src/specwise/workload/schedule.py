"""The request schedule of a load: which prompt, temperature and seed each request gets, and when an
open-loop load sends it. Pure and reproducible: the same seed gives the same sequence."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from specwise.errors import SpecwiseError, check_number
from specwise.workload.datasets import Prompt

# Loads a run can keep. A rate under one request in 1000 s would wait about that long for its first send; more
# requests in flight than this is a typo, not a server (vLLM batches a few hundred), and each one is a task here.
MIN_RATE = 1e-3
MAX_CONCURRENCY = 100_000
MAX_REQUESTS = 10_000_000
# Gamma shapes outside this band make gaps of ~0 or of hours: a burst test, but not a load that ends.
BURSTINESS = (0.01, 100.0)


@dataclass(frozen=True)
class Planned:
    index: int
    prompt: Prompt
    temperature: float
    warmup: bool
    seed: int


@dataclass(frozen=True)
class LoadShape:
    concurrency: int | None = None      # closed loop: this many requests in flight
    rate: float | None = None           # open loop: requests per second
    arrivals: Literal["poisson", "constant"] = "poisson"
    burstiness: float = 1.0             # gamma shape of the gaps: 1 = Poisson, < 1 burstier, > 1 smoother
    requests: int | None = None         # stop after this many requests
    duration_s: float | None = None     # or: stop sending after this long
    max_in_flight: int | None = None    # open loop: cap on requests in flight

    def validate(self) -> LoadShape:
        if (self.concurrency is None) == (self.rate is None):
            raise SpecwiseError("--concurrency/--rate", "give exactly one load", "e.g. --concurrency 4 or --rate 2")
        if self.concurrency is not None:
            check_number("--concurrency", self.concurrency, 1, MAX_CONCURRENCY, "e.g. --concurrency 4")
        if self.rate is not None:
            check_number("--rate", self.rate, MIN_RATE, fix="requests per second, e.g. --rate 2")
        check_number("--burstiness", self.burstiness, *BURSTINESS, "1 is Poisson, < 1 burstier, > 1 smoother")
        if self.requests is None and self.duration_s is None:
            raise SpecwiseError("--requests/--duration", "give a bound", "e.g. --requests 100 or --duration 60")
        if self.requests is not None:
            check_number("--requests", self.requests, 1, MAX_REQUESTS, "e.g. --requests 100")
        if self.duration_s is not None:
            check_number("--duration", self.duration_s, 0, fix="seconds, e.g. --duration 60", above=True)
        if self.max_in_flight is not None:
            check_number("--max-in-flight", self.max_in_flight, 1, MAX_CONCURRENCY, "or leave it out")
        return self


def request_plan(prompts: Sequence[Prompt], mix: Sequence[tuple[float, float]], seed: int,
                 warmup: int = 0) -> Iterator[Planned]:
    """The run's request sequence: the same seed gives the same prompts, temperatures and sampling seeds. The
    temperatures follow the mix by quota (largest deficit first, ties drawn), the prompts a shuffle — each
    temperature's own prompts when the prompts carry the temperature they were logged at (a replayed log:
    code sent at 0.2 is not replayed at 1.0)."""
    rng = random.Random(seed)
    temps = [t for t, _ in mix]
    total = sum(w for _, w in mix)
    shares = [w / total for _, w in mix]
    counts = [0] * len(temps)
    everyone = list(range(len(prompts)))
    pools = {n: everyone for n in range(len(temps))}
    if any(p.temperature is not None for p in prompts):
        for n, t in enumerate(temps):
            # A temperature the log never had (--temperatures given over a workload) draws from every prompt.
            pools[n] = [j for j, p in enumerate(prompts) if p.temperature is not None
                        and round(p.temperature, 4) == round(t, 4)] or everyone
    orders: dict[int, list[int]] = {}
    i = 0
    while True:
        # Stratified, not drawn: every prefix of the sequence holds each temperature within one request of its
        # share, so repetitions and short cells do not differ by how many requests each class got (a
        # multinomial draw of 16 requests over three temperatures often gives one of them 2 or 9).
        deficits = [(i + 1) * share - count for share, count in zip(shares, counts)]
        top = max(deficits)
        pick = rng.choice([n for n, d in enumerate(deficits) if d >= top - 1e-9])
        counts[pick] += 1
        pool = id(pools[pick])
        if not orders.get(pool):   # each pool's prompts in a fresh shuffle, round after round
            orders[pool] = rng.sample(pools[pick], len(pools[pick]))[::-1]
        yield Planned(i, prompts[orders[pool].pop()], temps[pick], i < warmup, rng.randrange(2**31))
        i += 1


def arrival_offsets(rate: float, arrivals: str, burstiness: float, seed: int) -> Iterator[float]:
    """Send times (s from the start) of an open-loop load: constant gaps, or gamma gaps of mean 1/rate."""
    rng = random.Random(seed ^ 0x5EED)
    t = 0.0
    while True:
        yield t
        t += 1.0 / rate if arrivals == "constant" else rng.gammavariate(burstiness, 1.0 / (rate * burstiness))


def _part(total: int, sender: int, senders: int) -> int:
    """How many of the indices 0 … total − 1 fall to `sender` when every `senders`-th goes to the same one."""
    return len(range(sender, total, senders))


@dataclass(frozen=True)
class Share:
    """One sender's part of a run: of the run's single schedule, the requests `sender`, `sender + senders`, …
    (warm-up and measured requests dealt out separately), so that the run's sequence of prompts, temperatures,
    seeds and send times is the same whatever the number of senders."""

    sender: int = 0
    senders: int = 1

    def warmup(self, plan: Iterator[Planned], warmup: int) -> list[Planned]:
        """This sender's warm-up requests; `plan` is left at the first measured request."""
        return [p for i, p in enumerate(itertools.islice(plan, warmup)) if i % self.senders == self.sender]

    def measured(self, plan: Iterator[Planned]) -> Iterator[Planned]:
        return itertools.islice(plan, self.sender, None, self.senders)

    def offsets(self, offsets: Iterator[float]) -> Iterator[float]:
        return itertools.islice(offsets, self.sender, None, self.senders)

    def shape(self, shape: LoadShape) -> LoadShape:
        """The load this sender keeps: its part of the concurrency, the request count and the in-flight cap (the
        rate stays the run's: the send times are the run's schedule's)."""
        n, i = self.senders, self.sender
        return replace(shape, concurrency=_part(shape.concurrency, i, n) if shape.concurrency else None,
                       requests=_part(shape.requests, i, n) if shape.requests is not None else None,
                       max_in_flight=max(1, _part(shape.max_in_flight, i, n)) if shape.max_in_flight else None)
