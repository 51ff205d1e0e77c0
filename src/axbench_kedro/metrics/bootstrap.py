"""Percentile bootstrap confidence intervals of a mean (protocol §5.6: 1000 resamples over concepts, 95 %).

Example:
    >>> bootstrap_ci([0.9, 0.3, 0.6], n_resamples=1000, seed=42)  # doctest: +SKIP
    (0.3, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "bootstrap_means"]


def bootstrap_means(
    values: Sequence[float] | np.ndarray, *, n_resamples: int = 1000, seed: int = 42
) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement, same size) of ``values``.

    Args:
        values: the per-unit scores (e.g. one Score per concept); NaNs are dropped.
        n_resamples: number of bootstrap resamples.
        seed: seed of the resampling generator (``numpy.random.default_rng``).

    Returns:
        Array ``[n_resamples]`` (empty when ``values`` is empty).
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0 or n_resamples <= 0:
        return np.empty(0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, data.size, size=(n_resamples, data.size))
    return data[idx].mean(axis=1)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean.

    Args:
        values: the per-unit scores; NaNs are dropped.
        n_resamples: number of resamples (paper 1000).
        confidence: central coverage, e.g. 0.95 → 2.5th and 97.5th percentiles.
        seed: resampling seed; the same seed and values give the same interval.

    Returns:
        ``(low, high)``; ``(nan, nan)`` without values; ``(c, c)`` exactly for constant values.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return (float("nan"), float("nan"))
    if np.all(data == data[0]):  # degenerate distribution: every resample mean is c
        return (float(data[0]), float(data[0]))
    means = bootstrap_means(data, n_resamples=n_resamples, seed=seed)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return (float(low), float(high))
