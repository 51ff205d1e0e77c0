"""Random (a control, not a method of the paper): a seeded random unit direction per concept.

w = g / ‖g‖ with g ~ N(0, I_d) drawn from a ``torch.Generator`` seeded with the concept's training seed (the trainer
derives it from the run seed, the concept id and the method name), so the vector is reproducible and independent
of the data; training costs no forward pass. Detection h·w (like DiffMean) gives the chance-level ROC AUC row;
steering adds ``h + m·f·w`` with m from latent_eval like the other rank-1 methods. Its :attr:`~Method.role` is
``control``: reports label its rows ``Random (control)``.

Example:
    >>> w = random_direction(seed=7, d=4)
    >>> round(float(w.norm()), 6), torch.equal(w, random_direction(seed=7, d=4))
    (1.0, True)
"""

from __future__ import annotations

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.rank1 import seeded_generator, unit_norm
from axbench_kedro.methods.registry import register

__all__ = ["RandomParams", "RandomDirection", "random_direction"]


class RandomParams(StrictModel):
    """Random has no hyperparameters (the direction depends only on the seed and d)."""


def random_direction(seed: int, d: int) -> torch.Tensor:
    """A unit vector of size ``d`` drawn from a generator seeded with ``seed`` (global RNG state untouched).

    Args:
        seed: the per-concept seed.
        d: hidden size.

    Returns:
        ``[d]`` float32 unit vector.
    """
    if d < 1:
        raise AxbenchDataError(f"Random: the hidden size must be positive, got {d}")
    g = torch.randn(int(d), generator=seeded_generator(seed), dtype=torch.float64)
    return unit_norm(g).float()


@register("Random")
class RandomDirection(Method):
    """Seeded random direction per concept: a chance-level control for detection and steering."""

    Params = RandomParams
    order = 110
    role = "control"
    requires = frozenset()

    def train_concept(self, inputs: ConceptInputs, hp: RandomParams) -> dict[str, torch.Tensor]:
        if inputs.d_model is None:
            raise AxbenchDataError("Random: ConceptInputs.d_model (the hidden size) is not set")
        return {"weight": random_direction(inputs.seed, inputs.d_model), "bias": torch.zeros(())}
