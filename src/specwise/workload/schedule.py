"""The request schedule of a load: which prompt, temperature and seed each request gets, and when an
open-loop load sends it. Pure and reproducible: the same seed gives the same sequence."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from specwise.errors import SpecwiseError
from specwise.workload.datasets import Prompt


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
        if self.concurrency is not None and self.concurrency < 1:
            raise SpecwiseError("--concurrency", f"must be ≥ 1, got {self.concurrency}", "e.g. --concurrency 4")
        if self.rate is not None and not self.rate > 0:
            raise SpecwiseError("--rate", f"must be > 0 requests/s, got {self.rate}", "e.g. --rate 2")
        if not self.burstiness > 0:
            raise SpecwiseError("--burstiness", f"must be > 0, got {self.burstiness}", "1 is Poisson")
        if self.requests is None and self.duration_s is None:
            raise SpecwiseError("--requests/--duration", "give a bound", "e.g. --requests 100 or --duration 60")
        if self.requests is not None and self.requests < 1:
            raise SpecwiseError("--requests", f"must be ≥ 1, got {self.requests}", "e.g. --requests 100")
        if self.duration_s is not None and not self.duration_s > 0:
            raise SpecwiseError("--duration", f"must be > 0 s, got {self.duration_s}", "e.g. --duration 60")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise SpecwiseError("--max-in-flight", f"must be ≥ 1, got {self.max_in_flight}", "or leave it out")
        return self


def request_plan(prompts: Sequence[Prompt], mix: Sequence[tuple[float, float]], seed: int,
                 warmup: int = 0) -> Iterator[Planned]:
    """The run's request sequence: the same seed gives the same prompts, temperatures and sampling seeds."""
    rng = random.Random(seed)
    temps, weights = [t for t, _ in mix], [w for _, w in mix]
    order = list(range(len(prompts)))
    i = 0
    while True:
        rng.shuffle(order)
        for j in order:
            yield Planned(i, prompts[j], rng.choices(temps, weights)[0], i < warmup, rng.randrange(2**31))
            i += 1


def arrival_offsets(rate: float, arrivals: str, burstiness: float, seed: int) -> Iterator[float]:
    """Send times (s from the start) of an open-loop load: constant gaps, or gamma gaps of mean 1/rate."""
    rng = random.Random(seed ^ 0x5EED)
    t = 0.0
    while True:
        yield t
        t += 1.0 / rate if arrivals == "constant" else rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
