"""Supervised steering vector (protocol §3.5): h ← h + w at positions "all", LM loss on positives only.

w starts at 0.01 in every entry; AdamW (wd 0), linear decay, no normalisation, no clipping. Detection: max
ReLU(h_t·w); steering: addition with m = its own max latent (w is not unit norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.lm_objective import group_batches, per_group_mean, split_by_size, steps_per_run
from axbench_kedro.methods.rank1 import linear_decay
from axbench_kedro.methods.registry import register

__all__ = ["SSVParams", "SSV"]


class SSVParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate.
    epochs: passes over the positives.
    batch_size: rows per optimizer step.
    init: initial value of every entry of w.
    """

    lr: float = Field(1e-2, gt=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(6, ge=1)
    init: float = 0.01


@register("SSV")
class SSV(Method):
    """Additive vector trained through the LM loss on the concept's positives."""

    Params = SSVParams
    order = 60
    requires = frozenset({"lm_objective"})
    trains_on_negatives = False
    token_activation = "relu"  # detection: max ReLU(h·w)

    def train_concept(self, inputs: ConceptInputs, hp: SSVParams) -> dict[str, Any]:
        return self.train_group([inputs], hp)[0]

    def train_group(self, items: Sequence[ConceptInputs], hp: SSVParams) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in items]
        for idx in split_by_size([len(it.data.pos_inputs) for it in items]):
            for i, res in zip(idx, self._train([items[i] for i in idx], hp), strict=True):
                out[i] = res
        return out

    def _train(self, items: Sequence[ConceptInputs], hp: SSVParams) -> list[dict[str, Any]]:
        # positives come first in each concept's rows
        rows = [it.lm_rows.subset(range(len(it.data.pos_inputs))) for it in items]  # type: ignore[union-attr]
        tail = items[0].lm_tail
        assert tail is not None
        n_c, device = len(items), rows[0].hidden[0].device
        w = nn.Parameter(torch.full((n_c, rows[0].hidden[0].shape[-1]), hp.init, device=device))
        opt = torch.optim.AdamW([w], lr=hp.lr, weight_decay=0.0)
        sched = linear_decay(opt, steps_per_run(len(rows[0]), hp.batch_size, hp.epochs))
        losses: list[list[float]] = [[] for _ in items]
        for batch, owner in group_batches(rows, [it.seed for it in items], hp.epochs, hp.batch_size):
            h = batch.hidden.float()
            ce, tok_row = tail.token_losses(h + w[owner][:, None, :] * batch.intervene[..., None], batch)
            loss = per_group_mean(ce, owner[tok_row], n_c)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            for c, value in enumerate(loss.detach().tolist()):
                losses[c].append(round(value, 6))
            opt.step()
            sched.step()
        return [
            {"weight": w[c].detach().float().cpu(), "bias": torch.zeros(()), "train_loss": losses[c]}
            for c in range(n_c)
        ]
