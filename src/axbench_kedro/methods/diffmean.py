"""DiffMean (protocol §3.1): difference of token-pooled means of positive and negative activations.

w = mean(positive tokens) − mean(negative tokens) over positions ≥ P (every token counts once — not a mean of
per-example means), then w / ‖w‖. Detection: h·w; steering: addition with m from latent_eval.

Example:
    >>> diffmean_direction(pos_tokens, neg_tokens)  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.rank1 import unit_norm
from axbench_kedro.methods.registry import register

__all__ = ["DiffMeanParams", "DiffMean", "diffmean_direction"]


class DiffMeanParams(StrictModel):
    """DiffMean has no hyperparameters (the forward batch size is ``training.activation_batch_size``)."""


def diffmean_direction(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Unit vector along ``mean(pos) − mean(neg)`` (rows are token activations)."""
    if pos.shape[0] == 0 or neg.shape[0] == 0:
        raise AxbenchDataError("DiffMean: a concept has no positive or no negative tokens at positions >= P")
    return unit_norm(pos.double().mean(0) - neg.double().mean(0)).float()


@register("DiffMean")
class DiffMean(Method):
    """Mean-difference direction; no gradients."""

    Params = DiffMeanParams
    order = 10
    requires = frozenset({"activations"})

    def train_concept(self, inputs: ConceptInputs, hp: DiffMeanParams) -> dict[str, torch.Tensor]:
        acts = inputs.activations
        assert acts is not None
        w = diffmean_direction(acts.tokens_where(1), acts.tokens_where(0))
        return {"weight": w.cpu(), "bias": torch.zeros(())}
