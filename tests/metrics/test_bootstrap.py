"""Bootstrap CI, protocol §10.13."""

from __future__ import annotations

import math

import numpy as np

from axbench_kedro.metrics.bootstrap import bootstrap_ci, bootstrap_means


def test_constant_scores_give_a_point_interval() -> None:
    assert bootstrap_ci([0.7] * 9, seed=1) == (0.7, 0.7)


def test_fixed_seed_is_reproducible_and_seed_matters() -> None:
    scores = np.linspace(0.0, 2.0, 25)
    first, again = bootstrap_ci(scores, seed=42), bootstrap_ci(scores, seed=42)
    assert first == again
    assert bootstrap_ci(scores, seed=43) != first
    low, high = first
    assert low < scores.mean() < high
    assert low >= 0.0 and high <= 2.0


def test_percentiles_of_resampled_means() -> None:
    scores = [0.0, 1.0, 2.0, 0.5]
    means = bootstrap_means(scores, n_resamples=1000, seed=7)
    assert means.shape == (1000,)
    assert bootstrap_ci(scores, seed=7) == tuple(np.percentile(means, [2.5, 97.5]))
    wide = bootstrap_ci(scores, seed=7, confidence=0.99)
    assert wide[0] <= bootstrap_ci(scores, seed=7)[0]


def test_empty_and_nan() -> None:
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)
    assert bootstrap_ci([1.0, float("nan")]) == (1.0, 1.0)
