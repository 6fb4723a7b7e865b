"""A workload's temperature mix: parsed once, and the figures the verdict reads off it (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from specwise.errors import SpecwiseError, shown
from specwise.thresholds import TEMP_SPREAD

Mix = tuple[tuple[float, float], ...]   # (temperature, weight); weights sum to 1
MAX_TEMPERATURE = 100.0   # far above any sampler's useful range (OpenAI stops at 2): past it, a typo
MAX_MIX_ENTRIES = 64      # each temperature is a class the verdict reports on: more is a pasted list, not a mix


def parse_temperature_mix(text: str, field: str = "--temperatures") -> Mix:
    """'0.1:60,1.0:40' → ((0.1, 0.6), (1.0, 0.4)); a bare '0.7' is that temperature alone."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) > MAX_MIX_ENTRIES:
        raise SpecwiseError(field, f"{len(parts)} temperatures", f"give at most {MAX_MIX_ENTRIES}")
    mix: list[tuple[float, float]] = []
    for part in parts:
        temp, _, weight = part.partition(":")
        try:
            t, w = float(temp), float(weight) if weight else 1.0
        except ValueError:
            raise SpecwiseError(field, f"cannot read {shown(part)}",
                                "write TEMP:WEIGHT pairs, e.g. 0.1:60,1.0:40") from None
        # Written so that NaN fails: every comparison with NaN is false.
        if not (0 <= t <= MAX_TEMPERATURE and 0 < w < math.inf):
            raise SpecwiseError(field, f"{shown(part)}: temperature must be in [0, {MAX_TEMPERATURE:g}] and weight a "
                                "finite number > 0", "e.g. 0.1:60,1.0:40")
        mix.append((t, w))
    if not mix:
        raise SpecwiseError(field, "empty mix", "e.g. 0.1:60,1.0:40")
    total = sum(w for _, w in mix)
    if not total < math.inf:
        raise SpecwiseError(field, "the weights add up past the largest float", "use percentages, e.g. 0.1:60,1.0:40")
    return tuple((t, w / total) for t, w in mix)


def median_temperature(mix: Sequence[tuple[float, float]]) -> float | None:
    if not mix:
        return None
    total, acc = sum(w for _, w in mix), 0.0
    for t, w in sorted(mix):
        acc += w
        if acc >= total / 2:
            return t
    return sorted(mix)[-1][0]


def spread(mix: Sequence[tuple[float, float]]) -> float:
    """Highest minus lowest temperature drawn (weight > 0)."""
    temps = [t for t, w in mix if w > 0]
    return max(temps) - min(temps) if temps else 0.0


def is_homogeneous(mix: Sequence[tuple[float, float]]) -> bool:
    """SPEC §1.5: one temperature band, no wider than TEMP_SPREAD."""
    return spread(mix) <= TEMP_SPREAD
