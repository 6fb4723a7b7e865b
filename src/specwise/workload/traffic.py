"""A traffic profile: what a team's requests look like to speculative decoding — the temperature mix and
how homogeneous it is, prompt and output lengths, how much of each output echoes its prompt (what n-gram
lookup feeds on), how much is structured (JSON, code), the arrival rate and its burstiness, and whether
latency is spent before the first token or between tokens. Built by a `Profiler` that sees one request at
a time and keeps bounded state (reservoirs for the distributions), so a log of any size fits in memory.
Pure: no I/O."""

from __future__ import annotations

import json
import math
import random
import re
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel

from specwise.thresholds import NGRAM_OVERLAP, TEMP_GOOD, TEMP_OFF, TEMP_SPREAD, TTFT_BOUND_SHARE
from specwise.workload.logs import BadLine, Observed

NGRAM = 3                 # words (or tokens) per n-gram: vLLM's prompt lookup matches 1–5, 3 is its middle
RESERVOIR = 10_000        # values kept per distribution: quantiles exact up to this many requests
TEMPERATURE_STEP = 0.05   # temperatures are bucketed to this (logs carry 0.7 and 0.70000001 alike)
MAX_BAD_SHOWN = 20        # bad lines listed by number; the rest only counted
COARSE_ZERO_GAPS = 0.02  # more gaps than this of exactly 0: the timestamps are too coarse for burstiness
SLICE = 1 << 16            # send times worked through at a time
CHARS_PER_TOKEN = 4.0     # English text, when no tokenizer or usage gives tokens (an estimate, and said so)
_WORD = re.compile(r"\w+|[^\w\s]")
# A line ending in ":" alone is prose as often as Python ("Here is how:"): only with an indented line after.
_CODE_LINE = re.compile(r"^\s*(def |class |import |from \S+ import|function |return |#include|public |private |"
                        r"const |let |var |SELECT |for \(|if \(|\}|\{)|[;{}]\s*$")
# Overlap is judged on at most this many words of a prompt's end and an output's start: a pasted book in one
# request must not take the memory its 3-gram set would.
OVERLAP_PROMPT_WORDS, OVERLAP_OUTPUT_WORDS = 50_000, 10_000

Tokenize = Callable[[str], Sequence[int | str]]


class Distribution(BaseModel):
    count: int
    p10: float
    p50: float
    p90: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float], count: int | None = None) -> Distribution | None:
        if not len(values):
            return None
        p10, p50, p90 = np.quantile(np.asarray(values, dtype=float), [0.1, 0.5, 0.9])
        return cls(count=count if count is not None else len(values), p10=float(p10), p50=float(p50),
                   p90=float(p90), mean=float(np.mean(values)))


class TemperatureProfile(BaseModel):
    mix: list[tuple[float, float]]          # (temperature, share), buckets of TEMPERATURE_STEP
    counts: list[int]                       # requests per entry of `mix`
    median: float
    spread: float                           # P95 − P5: a stray request does not make traffic "mixed"
    homogeneity: float                      # the largest share inside any TEMP_SPREAD-wide band
    unset: int                              # requests with no temperature (the API default 1.0 counted)

    @property
    def mix_text(self) -> str:
        """The mix as `--temperatures` reads it: weights are the request counts (exact, never 0)."""
        return ",".join(f"{t:g}:{c}" for (t, _), c in zip(self.mix, self.counts))


class Arrivals(BaseModel):
    requests: int
    span_s: float
    mean_rate: float                        # requests per second over the span
    peak_rate: float                        # the busiest window's
    peak_window_s: float
    burstiness: float | None                # gamma shape of the gaps (1 Poisson, < 1 burstier); None: unknown
    gap_cv: float | None
    coarse_times: bool = False              # the log's clock ticks too coarsely to see gaps: no burstiness


class Latency(BaseModel):
    requests: int
    ttft_share: Distribution                # TTFT / end-to-end, per request
    dominated_by: str                       # "ttft" or "tpot"


class ClassProfile(BaseModel):
    """One traffic class: a temperature band, split by whether outputs echo their prompts."""

    name: str
    requests: int
    share: float
    temperature: TemperatureProfile
    overlap: Distribution | None
    structured_share: float | None
    output_tokens: Distribution | None


class Samples(BaseModel):
    """A reservoir of requests for a replayable workload: lengths always, text only when asked."""

    prompt_chars: list[int]
    prompt_tokens: list[int | None]
    output_tokens: list[int | None]
    temperatures: list[float]
    prompts: list[str | None] | None = None   # None: the log had no text for that request


class TrafficProfile(BaseModel):
    source: str
    format: str
    lines: int
    requests: int
    bad_lines: int
    bad_examples: list[tuple[int, str]]
    length_unit: str                        # "tokens" or "characters"
    temperature: TemperatureProfile | None
    prompt_tokens: Distribution | None
    output_tokens: Distribution | None
    prompt_chars: Distribution | None
    output_chars: Distribution | None
    overlap: Distribution | None            # share of output n-grams found in the prompt
    overlap_requests: int
    structured_share: float | None
    structured_requests: int
    arrivals: Arrivals | None
    latency: Latency | None
    classes: list[ClassProfile]
    samples: Samples | None = None


def overlap(prompt: Sequence, output: Sequence, n: int = NGRAM) -> float | None:
    """The share of the output's n-grams that occur in the prompt (None when the output has none)."""
    if len(output) < n:
        return None
    seen = {tuple(prompt[i:i + n]) for i in range(len(prompt) - n + 1)}
    grams = [tuple(output[i:i + n]) for i in range(len(output) - n + 1)]
    return sum(g in seen for g in grams) / len(grams)


def is_structured(text: str) -> bool:
    """JSON, or code: a fenced block, or a third of the lines shaped like code."""
    body = text.strip()
    if body.startswith("```"):
        return True
    if body[:1] in "{[":
        try:
            json.loads(body)
            return True
        except (ValueError, RecursionError):
            pass
    lines = [line for line in body.splitlines() if line.strip()]
    return len(lines) >= 2 and sum(bool(_CODE_LINE.search(line)) for line in lines) >= len(lines) / 3


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def band(temperature: float) -> str:
    """The guide's temperature bands: ≤ 0.5 good for speculation, > 0.7 leave off, between: break-even
    (given the bucketed temperature, so that a class's band and its median agree)."""
    if temperature <= TEMP_GOOD:
        return f"T ≤ {TEMP_GOOD:g}"
    return f"{TEMP_GOOD:g} < T ≤ {TEMP_OFF:g}" if temperature <= TEMP_OFF else f"T > {TEMP_OFF:g}"


class Reservoir:
    """Algorithm R with its own seeded generator: the same log gives the same sample."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seen, self.items, self.rng = size, 0, [], random.Random(seed)

    def add(self, item: object) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.items[j] = item


@dataclass
class _Class:
    temps: Counter = field(default_factory=Counter)
    overlap: Reservoir = field(default_factory=lambda: Reservoir(RESERVOIR, 1))
    output_tokens: Reservoir = field(default_factory=lambda: Reservoir(RESERVOIR, 2))
    structured: int = 0
    judged: int = 0
    unset: int = 0

    @property
    def requests(self) -> int:
        return sum(self.temps.values())


def bucket(temperature: float) -> float:
    return round(round(temperature / TEMPERATURE_STEP) * TEMPERATURE_STEP, 4)


def temperature_profile(temps: Counter, unset: int) -> TemperatureProfile | None:
    total = sum(temps.values())
    if not total:
        return None
    rows = sorted(temps.items())

    def quantile(num: int, den: int) -> float:
        """The smallest temperature with at least num/den of the requests at or below it (integer arithmetic:
        a share of exactly 5 % must not fall on the wrong side by a rounding error)."""
        cum = 0
        for t, c in rows:
            cum += c
            if cum * den >= num * total:
                return t
        return rows[-1][0]

    mix = [(t, c / total) for t, c in rows]
    homogeneity = max(sum(c for u, c in rows if t <= u <= t + TEMP_SPREAD + 1e-9) for t, _ in rows) / total
    return TemperatureProfile(mix=mix, counts=[c for _, c in rows], median=quantile(1, 2),
                              spread=quantile(19, 20) - quantile(1, 20), homogeneity=homogeneity, unset=unset)


def arrivals(times: Sequence[float]) -> Arrivals | None:
    """Rate, peak and burstiness of the send times (in any order). Worked through in slices so that the only
    memory that grows with the log is the times themselves and one sorted copy."""
    if len(times) < 2:
        return None
    t = np.sort(np.frombuffer(times, dtype=float) if isinstance(times, array) else np.asarray(times, dtype=float))
    n, span = len(t), float(t[-1] - t[0])
    if span <= 0:
        return None
    # The busiest stretch of a tenth of the span, at most a minute: long enough to be a load, not a burst.
    window = min(60.0, max(span / 10, 1.0))
    most, gap_sq, zero = 0, 0.0, 0
    for lo in range(0, n, SLICE):
        part = t[lo:lo + SLICE]
        ends = np.searchsorted(t, part + window, side="left")
        most = max(most, int(np.max(ends - np.arange(lo, lo + len(part)))))
        gaps = np.diff(t[lo:lo + SLICE + 1])
        gap_sq += float(np.dot(gaps, gaps))
        zero += int(np.count_nonzero(gaps == 0))
    mean_gap = span / (n - 1)
    # Times logged to the second (or ms at high rates) make many gaps 0 and the rest whole ticks: their spread
    # is the clock's, not the traffic's (Poisson at 10 req/s logged to 1 s reads as shape 0.1).
    coarse = zero > COARSE_ZERO_GAPS * (n - 1)
    cv = math.sqrt(max(gap_sq / (n - 1) - mean_gap**2, 0.0)) / mean_gap if n > 10 and not coarse else None
    return Arrivals(requests=n, span_s=span, mean_rate=(n - 1) / span, peak_rate=max(most / window, (n - 1) / span),
                    peak_window_s=window, burstiness=1 / cv**2 if cv else None, gap_cv=cv, coarse_times=coarse)


class Profiler:
    """Feed it a log's `Observed` and `BadLine` items one by one; `profile()` at any point."""

    def __init__(self, source: str, fmt: str, tokenize: Tokenize | None = None, samples: int = 0,
                 include_text: bool = False) -> None:
        self.source, self.format, self.tokenize, self.include_text = source, fmt, tokenize, include_text
        self.lines = self.requests = self.bad = 0
        self.bad_examples: list[tuple[int, str]] = []
        self.temps: Counter = Counter()
        self.unset = 0
        self.classes: dict[str, _Class] = {}
        self.dists = {name: Reservoir(RESERVOIR, seed) for seed, name in
                      enumerate(("prompt_tokens", "output_tokens", "prompt_chars", "output_chars", "overlap",
                                 "ttft_share"), 10)}
        self.structured = self.judged = 0
        self.times = array("d")   # 8 bytes a request: the one part that grows with the log (1 GB ≈ 1M requests)
        # A reservoir per temperature: the workload keeps each sampled prompt with the temperature it was sent
        # at (acceptance depends on both), and every temperature of the mix gets prompts of its own.
        self.samples = samples
        self.sample: dict[float, Reservoir] = {}

    def add(self, item: Observed | BadLine) -> None:
        self.lines = max(self.lines, item.line)
        if isinstance(item, BadLine):
            self.bad += 1
            if len(self.bad_examples) < MAX_BAD_SHOWN:
                self.bad_examples.append((item.line, item.why))
            return
        self.requests += 1
        t = bucket(item.temperature)
        self.temps[t] += 1
        self.unset += not item.temperature_set
        prompt_tokens, output_tokens = item.prompt_tokens, item.output_tokens
        prompt_seq = output_seq = None
        if self.tokenize is not None:
            if item.prompt is not None:
                prompt_seq = list(self.tokenize(item.prompt))
                prompt_tokens = prompt_tokens if prompt_tokens is not None else len(prompt_seq)
            if item.output is not None:
                output_seq = list(self.tokenize(item.output))
                output_tokens = output_tokens if output_tokens is not None else len(output_seq)
        for name, value in (("prompt_tokens", prompt_tokens), ("output_tokens", output_tokens),
                            ("prompt_chars", len(item.prompt) if item.prompt is not None else None),
                            ("output_chars", len(item.output) if item.output is not None else None)):
            if value is not None:
                self.dists[name].add(value)
        share = None
        if item.prompt is not None and item.output is not None:
            share = overlap((prompt_seq if prompt_seq is not None else words(item.prompt))[-OVERLAP_PROMPT_WORDS:],
                            (output_seq if output_seq is not None else words(item.output))[:OVERLAP_OUTPUT_WORDS])
            if share is not None:
                self.dists["overlap"].add(share)
        structured = item.structured_request or (item.output is not None and is_structured(item.output))
        judged = item.structured_request or item.output is not None
        self.structured += structured
        self.judged += judged
        if item.arrival_s is not None:
            self.times.append(item.arrival_s)
        if item.ttft_ms is not None and item.e2e_ms and item.e2e_ms > 0:
            self.dists["ttft_share"].add(min(item.ttft_ms / item.e2e_ms, 1.0))
        name = band(t) + (", echoes its prompt" if share is not None and share >= NGRAM_OVERLAP else "")
        cls = self.classes.setdefault(name, _Class())
        cls.temps[t] += 1
        cls.unset += not item.temperature_set
        if share is not None:
            cls.overlap.add(share)
        if output_tokens is not None:
            cls.output_tokens.add(output_tokens)
        cls.structured += structured
        cls.judged += judged
        if self.samples:
            self.sample.setdefault(t, Reservoir(self.samples, 99 + len(self.sample))).add(
                (len(item.prompt or ""), prompt_tokens, output_tokens or _estimated(item.output), t,
                 item.prompt if self.include_text else None))

    def _sampled(self) -> list[tuple]:
        """About `samples` requests, each temperature's share of them by largest remainder, and at least one
        for each (a replay needs a prompt per temperature of the mix), drawn from its reservoir in a seeded
        shuffle (a reservoir's first items are the log's first requests until it fills)."""
        temps = sorted(self.sample)
        quotas = {t: self.samples * self.temps[t] / self.requests for t in temps}
        counts = {t: int(q) for t, q in quotas.items()}
        for t in sorted(temps, key=lambda t: counts[t] - quotas[t])[:self.samples - sum(counts.values())]:
            counts[t] += 1
        rng, rows = random.Random(7), []
        for t in temps:
            items = list(self.sample[t].items)
            rng.shuffle(items)
            rows += items[:max(1, counts[t])]
        return rows

    def _dist(self, name: str) -> Distribution | None:
        r = self.dists[name]
        return Distribution.of(r.items, r.seen)

    def profile(self) -> TrafficProfile:
        tokens = self._dist("output_tokens") or self._dist("prompt_tokens")
        classes = []
        for name, c in sorted(self.classes.items(), key=lambda kv: -kv[1].requests):
            temp = temperature_profile(c.temps, c.unset)
            assert temp is not None
            classes.append(ClassProfile(name=name, requests=c.requests, share=c.requests / self.requests, temperature=temp,
                                        overlap=Distribution.of(c.overlap.items, c.overlap.seen),
                                        structured_share=c.structured / c.judged if c.judged else None,
                                        output_tokens=Distribution.of(c.output_tokens.items, c.output_tokens.seen)))
        ttft = self._dist("ttft_share")
        samples = None
        if self.sample:
            rows = self._sampled()
            samples = Samples(prompt_chars=[r[0] for r in rows], prompt_tokens=[r[1] for r in rows],
                              output_tokens=[r[2] for r in rows], temperatures=[r[3] for r in rows],
                              prompts=[r[4] for r in rows] if self.include_text else None)
        return TrafficProfile(
            source=self.source, format=self.format, lines=self.lines, requests=self.requests, bad_lines=self.bad,
            bad_examples=self.bad_examples, length_unit="tokens" if tokens else "characters",
            temperature=temperature_profile(self.temps, self.unset), prompt_tokens=self._dist("prompt_tokens"),
            output_tokens=self._dist("output_tokens"), prompt_chars=self._dist("prompt_chars"),
            output_chars=self._dist("output_chars"), overlap=self._dist("overlap"),
            overlap_requests=self.dists["overlap"].seen, structured_share=self.structured / self.judged if self.judged
            else None, structured_requests=self.judged, arrivals=arrivals(self.times),
            latency=Latency(requests=ttft.count, ttft_share=ttft, dominated_by="ttft" if ttft.p50 > TTFT_BOUND_SHARE else "tpot")
            if ttft else None, classes=classes, samples=samples)


def _estimated(text: str | None) -> int | None:
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else None
