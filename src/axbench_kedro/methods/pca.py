"""PCA (protocol §3.2): first principal component of the positive-token activations.

scikit-learn ``PCA(n_components=2)`` on the positions ≥ P of the positive rows; w = first component (unit norm,
sign as returned unless ``orient_sign``). Detection h·w; steering as DiffMean.
"""

from __future__ import annotations

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.rank1 import first_principal_component, orient_towards_positives
from axbench_kedro.methods.registry import register

__all__ = ["PCAParams", "PCAMethod"]


class PCAParams(StrictModel):
    """Attributes:
    orient_sign: flip w so positives project higher than negatives on average (off in paper settings).
    """

    orient_sign: bool = False


@register("PCA")
class PCAMethod(Method):
    """First principal component of positive activations; no gradients."""

    Params = PCAParams
    order = 20
    requires = frozenset({"activations"})

    def train_concept(self, inputs: ConceptInputs, hp: PCAParams) -> dict[str, torch.Tensor]:
        acts = inputs.activations
        assert acts is not None
        pos = acts.tokens_where(1)
        w = first_principal_component(pos, inputs.seed, what=f"PCA (concept {inputs.data.concept_id})")
        if hp.orient_sign:
            w = orient_towards_positives(w, pos.cpu(), acts.tokens_where(0).cpu())
        return {"weight": w, "bias": torch.zeros(())}
