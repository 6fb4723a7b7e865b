"""A workload's temperature mix: parsed once, and the figures the verdict reads off it (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from specwise.errors import SpecwiseError
from specwise.thresholds import TEMP_SPREAD

Mix = tuple[tuple[float, float], ...]   # (temperature, weight); weights sum to 1


def parse_temperature_mix(text: str, field: str = "--temperatures") -> Mix:
    """'0.1:60,1.0:40' → ((0.1, 0.6), (1.0, 0.4)); a bare '0.7' is that temperature alone."""
    mix: list[tuple[float, float]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        temp, _, weight = part.partition(":")
        try:
            t, w = float(temp), float(weight) if weight else 1.0
        except ValueError:
            raise SpecwiseError(field, f"cannot read {part!r}", "write TEMP:WEIGHT pairs, e.g. 0.1:60,1.0:40") from None
        if t < 0 or w <= 0:
            raise SpecwiseError(field, f"{part!r}: temperature must be ≥ 0 and weight > 0", "e.g. 0.1:60,1.0:40")
        mix.append((t, w))
    if not mix:
        raise SpecwiseError(field, "empty mix", "e.g. 0.1:60,1.0:40")
    total = sum(w for _, w in mix)
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
