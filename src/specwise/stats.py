"""Statistics over measured samples: percentiles with bootstrap confidence intervals (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


class Estimate(BaseModel):
    """A statistic and its bootstrap confidence interval (percentile method); `low`/`high` are None
    when there are too few samples (< 5) to resample meaningfully."""

    value: float
    low: float | None = None
    high: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def bootstrap_percentiles(values: Sequence[float], qs: Sequence[float], seed: int = 0,
                          resamples: int = BOOTSTRAP_RESAMPLES) -> dict[float, Estimate]:
    """Each percentile in `qs` of `values`, with a CONFIDENCE interval from `resamples` bootstrap resamples."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {}
    point = np.percentile(data, qs)
    if data.size < 5:
        return {q: Estimate(value=float(v)) for q, v in zip(qs, point)}
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    dist = np.percentile(samples, qs, axis=1)  # shape (len(qs), resamples)
    tail = 100 * (1 - CONFIDENCE) / 2
    lows, highs = np.percentile(dist, tail, axis=1), np.percentile(dist, 100 - tail, axis=1)
    return {q: Estimate(value=float(v), low=float(lo), high=float(hi))
            for q, v, lo, hi in zip(qs, point, lows, highs)}
