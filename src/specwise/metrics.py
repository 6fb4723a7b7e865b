"""vLLM's server metrics, read from its Prometheus `/metrics` text with prometheus_client's parser.

Counters only ever grow while a server lives, so what a measurement reports is
the increase between scrapes that bracket exactly the measured window. A
counter that goes down means the server restarted: the increase then counts
from zero again, as Prometheus' own `increase()` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

DRAFTS = "vllm:spec_decode_num_drafts_total"
DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens_total"
ACCEPTED = "vllm:spec_decode_num_accepted_tokens_total"
ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"


@dataclass(frozen=True)
class SpecCounters:
    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted: float = 0.0
    accepted_per_pos: dict[int, float] = field(default_factory=dict)

    def __sub__(self, before: SpecCounters) -> SpecCounters:
        return SpecCounters(self.drafts - before.drafts, self.draft_tokens - before.draft_tokens,
                            self.accepted - before.accepted,
                            {pos: n - before.accepted_per_pos.get(pos, 0.0) for pos, n in self.accepted_per_pos.items()})

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted draft tokens over proposed draft tokens."""
        return self.accepted / self.draft_tokens if self.draft_tokens else None

    @property
    def mean_acceptance_length(self) -> float | None:
        """Tokens emitted per speculative step: 1 + accepted per draft."""
        return 1 + self.accepted / self.drafts if self.drafts else None

    @property
    def per_position(self) -> dict[int, float]:
        """Acceptance by draft position: accepted at position i per draft."""
        return {pos: n / self.drafts for pos, n in sorted(self.accepted_per_pos.items())} if self.drafts else {}


# V0 (vLLM < 0.8.x with the old engine): its own counters and acceptance gauges.
V0_EMITTED = "vllm:spec_decode_num_emitted_tokens_total"
V0_GAUGES = ("vllm:spec_decode_draft_acceptance_rate", "vllm:spec_decode_efficiency")
COUNTERS = (DRAFTS, DRAFT_TOKENS, ACCEPTED, V0_EMITTED, "vllm:num_preemptions_total",
            "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total", "vllm:generation_tokens_total",
            "vllm:prompt_tokens_total")
# KV-cache usage (0–1): V1's name first, V0's after.
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
GAUGES = (*KV_USAGE, "vllm:num_requests_running", "vllm:num_requests_waiting", *V0_GAUGES)


def per_pos_key(position: int) -> str:
    return f"{ACCEPTED_PER_POS}{{position={position}}}"


WATCHED = (*COUNTERS, *GAUGES, ACCEPTED_PER_POS)


def _samples(line: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of one exposition line; none when the line does not parse."""
    try:
        return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(line + "\n")
                for s in family.samples]
    except ValueError:
        return []


def snapshot_by_model(text: str) -> dict[str, dict[str, float]]:
    """The watched series of one scrape per `model_name` label ("" for series without one), each summed over
    its other labels (engines).

    Each watched line is parsed on its own: the parser stops at the first bad line, and
    one garbage line must not cost every other counter. A sample that is not finite,
    or a per-position one without an integer position, is skipped.
    """
    models: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith(WATCHED):  # a cheap filter: a vLLM page has thousands of other lines
            continue
        for name, labels, value in _samples(line):
            if not math.isfinite(value):
                continue
            if name == ACCEPTED_PER_POS:
                position = labels.get("position", "")
                if not (position.isascii() and position.isdigit()):
                    continue
                key = per_pos_key(int(position))
            elif name in COUNTERS or name in GAUGES:
                key = name
            else:
                continue
            values = models.setdefault(labels.get("model_name", ""), {})
            values[key] = values.get(key, 0.0) + value
    return models


def all_models(by_model: dict[str, dict[str, float]]) -> dict[str, float]:
    """The series of every model of a scrape summed into one (`snapshot_by_model` → `snapshot`)."""
    values: dict[str, float] = {}
    for per_model in by_model.values():
        for key, value in per_model.items():
            values[key] = values.get(key, 0.0) + value
    return values


def snapshot(text: str) -> dict[str, float]:
    """The watched series of one scrape, each summed over its labels (engines, model names)."""
    return all_models(snapshot_by_model(text))


def is_counter(key: str) -> bool:
    return key in COUNTERS or key.startswith(ACCEPTED_PER_POS)


def increase(series: list[float]) -> float:
    """A counter's increase over consecutive scrapes, surviving resets."""
    total = 0.0
    for before, after in zip(series, series[1:]):
        total += after - before if after >= before else after
    return total


def counter_series(snapshots: list[dict[str, float]], key: str) -> list[float]:
    """A counter's values over the snapshots. Before its first appearance it did not exist yet (it counts
    from 0); a later scrape that misses it is skipped, not read as a restart."""
    first = next((i for i, snap in enumerate(snapshots) if key in snap), len(snapshots))
    return [0.0] * min(first, 1) + [snap[key] for snap in snapshots[first:] if key in snap]


def window(snapshots: list[dict[str, float]]) -> dict[str, float]:
    """Counters: their increase over the snapshots. Gauges: their mean (and `max:` their peak)."""
    out: dict[str, float] = {}
    keys = sorted({key for snap in snapshots for key in snap})
    for key in keys:
        series = [snap[key] for snap in snapshots if key in snap]
        if is_counter(key):
            out[key] = increase(counter_series(snapshots, key))
        elif series:
            out[key] = sum(series) / len(series)
            out[f"max:{key}"] = max(series)
    return out


def counters_of(values: dict[str, float]) -> SpecCounters:
    per_pos = {int(key.split("position=")[1].rstrip("}")): value
               for key, value in values.items() if key.startswith(ACCEPTED_PER_POS)}
    return SpecCounters(values.get(DRAFTS, 0.0), values.get(DRAFT_TOKENS, 0.0), values.get(ACCEPTED, 0.0), per_pos)


def spec_counters(text: str) -> SpecCounters:
    """The V1 speculative-decoding counters of one scrape."""
    return counters_of(snapshot(text))
