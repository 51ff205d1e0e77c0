"""ToyMean: a test plugin method, the mean of the positive-token activations (unit norm).

It subclasses the project's :class:`~axbench_kedro.methods.base.Method` exactly as DiffMean does, and is installed
through the ``axbench_kedro.methods`` entry point group (see ``../pyproject.toml``), never listed in the project.
"""

from __future__ import annotations

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods import Method, register
from axbench_kedro.methods.base import ConceptInputs

__all__ = ["ToyMeanParams", "ToyMean"]


class ToyMeanParams(StrictModel):
    """Attributes:
    scale: multiplies the unit direction (1 = unit norm).
    """

    scale: float = 1.0


@register("ToyMean")
class ToyMean(Method):
    """Mean of the positive tokens (positions ≥ P), unit norm; detection h·w, steering by addition."""

    Params = ToyMeanParams
    requires = frozenset({"activations"})

    def train_concept(self, inputs: ConceptInputs, hp: ToyMeanParams) -> dict[str, torch.Tensor]:
        acts = inputs.activations
        assert acts is not None
        w = acts.tokens_where(1).double().mean(0)
        return {"weight": (hp.scale * w / w.norm().clamp_min(1e-12)).float().cpu(), "bias": torch.zeros(())}
