"""Per-row strengths of suppression steering (protocol §6): the factor is negated and the method's
:attr:`~axbench_kedro.methods.base.Method.suppression_intervention` says how it becomes a strength.

* ``addition`` (rank-1 methods): strength = m·f with f = −f_grid < 0, i.e. ``h + m·(−f)·w``;
* ``addition_suppression`` (RePS-SV, Lang.): strength = s(m·f, b) = ``f − b`` if f < 0, ``f + b`` if f > 0, 0 if
  f = 0 (m = 1 for the family), i.e. ``h + s·v``.

The strengths go to :func:`axbench_kedro.lm.steering.steered_generate` unchanged.

Example:
    >>> from axbench_kedro.methods import get_method
    >>> suppression_strengths(get_method("RePS"), [-2.0, 0.0], [1.0, 1.0], [0.5, 0.5])
    tensor([-2.5000,  0.0000])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from axbench_kedro.lm.steering import addition_suppression_strengths
from axbench_kedro.methods.base import Method, SuppressionIntervention

__all__ = ["STRENGTH_RULES", "suppression_strengths"]


def _addition(scaled: torch.Tensor, biases: torch.Tensor) -> torch.Tensor:
    del biases
    return scaled


STRENGTH_RULES: dict[SuppressionIntervention, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "addition": _addition,
    "addition_suppression": addition_suppression_strengths,
}
"""Strength from (m·f, b) per intervention kind."""


def suppression_strengths(
    method: Method,
    factors: Sequence[float] | torch.Tensor,
    magnitudes: Sequence[float] | torch.Tensor,
    biases: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """``[N]`` strengths of ``N`` rows of ``method``.

    Args:
        method: the registry method (its ``suppression_intervention`` decides the rule).
        factors: the rows' factors, already negated (suppression grid).
        magnitudes: the rows' magnitude bases m.
        biases: the rows' vector biases b (see :meth:`Method.suppression_biases`; ignored by ``addition``).
    """
    f = torch.as_tensor(factors, dtype=torch.float32).reshape(-1)
    m = torch.as_tensor(magnitudes, dtype=torch.float32).reshape(-1)
    b = torch.as_tensor(biases, dtype=torch.float32).reshape(-1)
    if not (len(f) == len(m) == len(b)):
        raise ValueError(f"factors, magnitudes and biases differ in length: {len(f)}, {len(m)}, {len(b)}")
    return STRENGTH_RULES[method.suppression_intervention](f * m, b)
