"""A replayable workload, emitted by `specwise analyze` from a log and read by `bench`, `run` (and `tune`):
the log's temperature mix, its arrival profile, and a sample of its requests — each with the log's output
length, so that the replay asks for the lengths production got, and either the log's prompt (only when the
user asked for the text: `--include-samples`) or a stand-in of the same length cut from the built-in corpus."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from specwise.errors import SpecwiseError, read_text, validation_error
from specwise.workload.datasets import Prompt, load_prompt_set
from specwise.workload.mix import MAX_MIX_ENTRIES, parse_temperature_mix
from specwise.workload.schedule import MIN_RATE
from specwise.workload.traffic import CHARS_PER_TOKEN, TrafficProfile

KIND = "specwise-workload"
MAX_WORKLOAD_BYTES = 256 << 20
MAX_OUTPUT_TOKENS = 1 << 20
# A stand-in prompt's length when the log tells none (a specwise run directory keeps no prompt text).
DEFAULT_PROMPT_CHARS = 400


class Source(BaseModel):
    path: str
    format: str
    requests: int
    bad_lines: int


class ArrivalProfile(BaseModel):
    rate: float = Field(gt=0, description="mean requests per second")
    peak_rate: float = Field(gt=0)
    burstiness: float | None = Field(None, gt=0, description="gamma shape of the gaps: 1 Poisson, < 1 burstier")


class WorkloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    prompt: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(None, ge=0, le=100, description="the temperature it was sent at: a replay "
                                      "draws this request only for that temperature")
    synthetic: bool = Field(description="a stand-in of the logged prompt's length, not its text")


class WorkloadFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["specwise-workload"] = KIND
    version: int = 1
    name: str
    source: Source
    temperatures: str
    arrivals: ArrivalProfile | None = None
    length_unit: str
    output_tokens_p50: float | None = None
    requests: list[WorkloadRequest] = Field(min_length=1)

    def prompts(self) -> tuple[Prompt, ...]:
        return tuple(Prompt(r.id, r.prompt, r.max_tokens, r.temperature) for r in self.requests)


def _filler(chars: int, corpus: itertools.cycle) -> str:
    """Built-in paragraphs, joined and cut to `chars` characters (at least one)."""
    parts, size = [], 0
    while size < max(chars, 1):
        part = next(corpus)
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:max(chars, 1)]


def build_workload(profile: TrafficProfile, name: str) -> WorkloadFile:
    samples = profile.samples
    if samples is None or profile.temperature is None:
        raise SpecwiseError("LOG", "holds no request to sample", "give a log with at least one readable request")
    corpus = itertools.cycle(load_prompt_set("open"))
    mix, nearest = _replayable_mix(profile.temperature.mix, profile.temperature.counts)
    requests = []
    for i, (chars, tokens, out, temperature) in enumerate(zip(samples.prompt_chars, samples.prompt_tokens,
                                                              samples.output_tokens, samples.temperatures)):
        text = samples.prompts[i] if samples.prompts is not None else None
        synthetic = text is None
        if text is None:
            length = chars or (round(tokens * CHARS_PER_TOKEN) if tokens is not None else DEFAULT_PROMPT_CHARS)
            text = _filler(length, corpus)
        requests.append(WorkloadRequest(id=f"log-{i}", prompt=text, max_tokens=min(out, MAX_OUTPUT_TOKENS) if out
                                        else None, temperature=nearest(temperature), synthetic=synthetic))
    a = profile.arrivals
    outs = sorted(o for o in samples.output_tokens if o)
    return WorkloadFile(
        name=name, source=Source(path=profile.source, format=profile.format, requests=profile.requests,
                                 bad_lines=profile.bad_lines),
        temperatures=mix,
        # A log this sparse (under one request in 1000 s) gives no load to replay: the user picks one.
        arrivals=ArrivalProfile(rate=a.mean_rate, peak_rate=a.peak_rate, burstiness=a.burstiness)
        if a and a.mean_rate >= MIN_RATE else None,
        length_unit=profile.length_unit, output_tokens_p50=profile.output_tokens.p50 if profile.output_tokens else
        (outs[len(outs) // 2] if outs else None), requests=requests)


def _replayable_mix(mix: list[tuple[float, float]], counts: list[int]):  # noqa: ANN202
    """The mix as `--temperatures` text, at most MAX_MIX_ENTRIES temperatures: past that, the rarest fold into
    their nearest kept neighbour (with their requests). Returns the text and the temperature → kept map."""
    kept = sorted(sorted(range(len(mix)), key=lambda i: -counts[i])[:MAX_MIX_ENTRIES])
    temps = [mix[i][0] for i in kept]

    def nearest(t: float) -> float:
        return min(temps, key=lambda u: (abs(u - t), u))

    merged: dict[float, int] = {}
    for (t, _), c in zip(mix, counts):
        merged[nearest(t)] = merged.get(nearest(t), 0) + c
    return ",".join(f"{t:g}:{c}" for t, c in sorted(merged.items())), nearest


def is_workload_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and f'"kind": "{KIND}"'.encode() in head


def load_workload(path: Path, field: str = "--workload") -> WorkloadFile:
    text = read_text(path, field, "give a file written by `specwise analyze --emit-workload`", MAX_WORKLOAD_BYTES)
    try:
        workload = WorkloadFile.model_validate(json.loads(text))
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise validation_error(exc, field, f"rewrite {path} with `specwise analyze --emit-workload`") from None
        raise SpecwiseError(field, f"{path} is not JSON", "give a file written by `specwise analyze`") from None
    parse_temperature_mix(workload.temperatures, f"{field} temperatures")
    return workload


def write_workload(workload: WorkloadFile, path: Path) -> None:
    # `kind` first and on the first line: `is_workload_file` tells the file by its head.
    text = json.dumps(workload.model_dump(mode="json"), indent=1, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")
