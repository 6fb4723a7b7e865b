"""Statistics over measured samples: percentiles and ratios of percentiles with bootstrap confidence
intervals (percentile method). One resampling core serves both (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95
MIN_SAMPLES = 5   # fewer cannot be resampled meaningfully: the estimate has no interval


class Estimate(BaseModel):
    """A statistic and its bootstrap confidence interval; `low`/`high` are None when there are fewer
    than MIN_SAMPLES samples."""

    value: float
    low: float | None = None
    high: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def _resampled(data: np.ndarray, qs: Sequence[float], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Percentiles `qs` of `resamples` bootstrap resamples of `data`: shape (len(qs), resamples)."""
    return np.percentile(data[rng.integers(0, data.size, size=(resamples, data.size))], qs, axis=1)


def _interval(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - CONFIDENCE) / 2
    return np.percentile(dist, tail, axis=-1), np.percentile(dist, 100 - tail, axis=-1)


def bootstrap_percentiles(values: Sequence[float], qs: Sequence[float], seed: int = 0,
                          resamples: int = BOOTSTRAP_RESAMPLES) -> dict[float, Estimate]:
    """Each percentile in `qs` of `values`, with a CONFIDENCE interval from `resamples` bootstrap resamples."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {}
    point = np.percentile(data, qs)
    if data.size < MIN_SAMPLES:
        return {q: Estimate(value=float(v)) for q, v in zip(qs, point)}
    lows, highs = _interval(_resampled(data, qs, np.random.default_rng(seed), resamples))
    return {q: Estimate(value=float(v), low=float(lo), high=float(hi))
            for q, v, lo, hi in zip(qs, point, lows, highs)}


def ratio(numerator: Sequence[float], denominator: Sequence[float], q: float, seed: int = 0,
          resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate | None:
    """percentile_q(numerator) / percentile_q(denominator); its interval resamples both arms independently."""
    if not len(numerator) or not len(denominator) or percentile(denominator, q) <= 0:
        return None
    value = percentile(numerator, q) / percentile(denominator, q)
    if len(numerator) < MIN_SAMPLES or len(denominator) < MIN_SAMPLES:
        return Estimate(value=value)
    rng = np.random.default_rng(seed)
    num, den = (np.asarray(arm, dtype=float) for arm in (numerator, denominator))
    low, high = _interval(_resampled(num, [q], rng, resamples)[0] / _resampled(den, [q], rng, resamples)[0])
    return Estimate(value=value, low=float(low), high=float(high))


def _clustered(clusters: Sequence[np.ndarray], q: float, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Percentile q of `resamples` two-stage bootstrap resamples: the clusters (repetitions) with replacement,
    then the samples (requests) within each cluster drawn."""
    out = np.empty(resamples)
    for i in range(resamples):
        picked = rng.integers(0, len(clusters), size=len(clusters))
        pooled = np.concatenate([clusters[j][rng.integers(0, clusters[j].size, size=clusters[j].size)]
                                 for j in picked])
        out[i] = np.percentile(pooled, q)
    return out


def clustered_ratio(numerator: Sequence[Sequence[float]], denominator: Sequence[Sequence[float]], q: float,
                    seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> Estimate | None:
    """Like `ratio`, over arms measured in several repetitions: the interval resamples repetitions as well
    as requests, so restart-to-restart variance widens it. One repetition per arm is `ratio` itself."""
    num = [np.asarray(c, dtype=float) for c in numerator if len(c)]
    den = [np.asarray(c, dtype=float) for c in denominator if len(c)]
    if len(num) <= 1 and len(den) <= 1:
        return ratio(num[0] if num else [], den[0] if den else [], q, seed, resamples)
    value = percentile(np.concatenate(num), q) / percentile(np.concatenate(den), q)
    if sum(c.size for c in num) < MIN_SAMPLES or sum(c.size for c in den) < MIN_SAMPLES:
        return Estimate(value=value)
    rng = np.random.default_rng(seed)
    low, high = _interval(_clustered(num, q, rng, resamples) / _clustered(den, q, rng, resamples))
    return Estimate(value=value, low=float(low), high=float(high))


def spread_between(clusters: Sequence[Sequence[float]], q: float = 50) -> float | None:
    """How far the repetitions' own percentiles stray from the pooled one (largest relative gap): the
    restart-to-restart noise of a server measured against itself. None with fewer than two repetitions."""
    used = [np.asarray(c, dtype=float) for c in clusters if len(c)]
    if len(used) < 2:
        return None
    pooled = percentile(np.concatenate(used), q)
    return max(abs(percentile(c, q) / pooled - 1) for c in used)


def widened(estimate: Estimate | None, spread: float | None) -> Estimate | None:
    """The interval stretched by a relative run-to-run spread the resampling cannot see (with two or three
    repetitions a cluster bootstrap barely knows how far runs stray): [low·(1 − s), high·(1 + s)]."""
    if estimate is None or not spread or estimate.low is None or estimate.high is None:
        return estimate
    return Estimate(value=estimate.value, low=estimate.low * (1 - spread), high=estimate.high * (1 + spread))
