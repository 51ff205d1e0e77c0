"""LAT (protocol §3.3): PCA on unit-normalised differences of randomly paired positive activations.

Positive tokens (positions ≥ P) are shuffled with a seeded RNG; the first half is paired with the second half
(the last one dropped if odd): Δ_i = a_i − a_{i+N/2}, each Δ_i / ‖Δ_i‖; w = first component of PCA(2) on the Δs.

Example:
    >>> lat_direction(tokens, seed=0, permutation=torch.arange(4))  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.rank1 import (
    first_principal_component,
    orient_towards_positives,
    seeded_generator,
    unit_norm,
)
from axbench_kedro.methods.registry import register

__all__ = ["LATParams", "LAT", "lat_differences", "lat_direction"]


class LATParams(StrictModel):
    """Attributes:
    orient_sign: flip w so positives project higher than negatives on average (off in paper settings).
    """

    orient_sign: bool = False


def lat_differences(tokens: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Unit-norm pair differences Δ_i = a_π(i) − a_π(i+N/2) for i < ⌊N/2⌋."""
    x = tokens.float()[permutation]
    half = x.shape[0] // 2
    delta = x[:half] - x[half : 2 * half]
    return delta / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)


def lat_direction(tokens: torch.Tensor, seed: int, permutation: torch.Tensor | None = None) -> torch.Tensor:
    """LAT direction of ``tokens`` (shuffled with ``seed`` unless a ``permutation`` is given)."""
    if permutation is None:
        permutation = torch.randperm(tokens.shape[0], generator=seeded_generator(seed))
    deltas = lat_differences(tokens.cpu(), permutation.cpu())
    return unit_norm(first_principal_component(deltas, seed, what="LAT"))


@register("LAT")
class LAT(Method):
    """Linear artificial tomography; no gradients."""

    Params = LATParams
    order = 30
    requires = frozenset({"activations"})

    def train_concept(self, inputs: ConceptInputs, hp: LATParams) -> dict[str, torch.Tensor]:
        acts = inputs.activations
        assert acts is not None
        pos = acts.tokens_where(1)
        w = lat_direction(pos, inputs.seed)
        if hp.orient_sign:
            w = orient_towards_positives(w, pos.cpu(), acts.tokens_where(0).cpu())
        return {"weight": w, "bias": torch.zeros(())}
