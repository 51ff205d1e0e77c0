"""ReFT-r1 (protocol §3.6, upstream "LsReFT"): a rank-1 latent with a top-k gated intervention, LM objective.

Over the intervened positions T (positions [P, len), padding masked out [D 15]): z_t = ReLU(h_t·w);
a = mean of the top-k z; ĥ_t = h_t + a·w for t ∈ T. Loss = CE(responses | ĥ) + (step/total)·λ·L1 with
L1 = batch mean of Σ_{t∈T∖topk} z_t / |T|. Data: positives and the genre's pool negatives. w = 0.01·1;
AdamW (wd 0), linear decay; per step: clip grad-norm 1 → w ← w/‖w‖ → drop the gradient along w → step [D 9].
Concepts with equal row counts train together (:mod:`axbench_kedro.methods.lm_objective`), each on its own.
Detection: max ReLU(h_t·w); steering: addition, m = its max latent.

Example:
    >>> a, l1 = topk_gate(torch.tensor([[0., 3, 1, 5, 2]]), torch.ones(1, 5, dtype=torch.bool), k=2)
    >>> a, l1  # protocol §10.15
    (tensor([4.]), tensor([0.6000]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.lm_objective import (
    clip_rows_,
    group_batches,
    normalise_rows_and_project_,
    per_group_mean,
    split_by_size,
    steps_per_run,
)
from axbench_kedro.methods.rank1 import linear_decay
from axbench_kedro.methods.registry import register

__all__ = ["ReFTr1Params", "ReFTr1", "topk_gate", "l1_weight"]


class ReFTr1Params(StrictModel):
    """Attributes:
    lr: AdamW learning rate (2B 1e-2, 9B 5e-3).
    k: top-k latents averaged into the intervention strength.
    l1_coef: λ of the linearly warmed-up L1 penalty on the non-top-k latents.
    epochs: passes over positives + negatives.
    batch_size: rows per optimizer step.
    max_grad_norm: gradient clipping norm.
    init: initial value of every entry of w.
    """

    lr: float = Field(1e-2, gt=0)
    k: int = Field(8, ge=1)
    l1_coef: float = Field(0.005, ge=0)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(6, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    init: float = 0.01


def topk_gate(z: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: ``a`` = mean of the top-k latents in ``mask``; ``l1`` = Σ of the other masked latents / |mask|.

    Args:
        z: ``[B, T]`` non-negative latents.
        mask: ``[B, T]`` intervened positions (padded positions are never selected).
        k: number of top latents (rows with fewer positions use all of them).
    """
    neg_inf = torch.finfo(z.dtype).min
    masked = z.masked_fill(~mask, neg_inf)
    kk = min(k, z.shape[1])
    top_vals, top_idx = masked.topk(kk, dim=1)
    valid = torch.gather(mask, 1, top_idx)
    top_vals = top_vals.masked_fill(~valid, 0.0)
    n_top = valid.sum(1).clamp_min(1)
    a = top_vals.sum(1) / n_top
    in_top = torch.zeros_like(mask).scatter(1, top_idx, valid)
    rest = (z * (mask & ~in_top)).sum(1)
    l1 = rest / mask.sum(1).clamp_min(1)
    return a, l1


def l1_weight(step: int, total_steps: int, l1_coef: float) -> float:
    """Linearly warmed-up penalty weight ``(step/total)·λ`` (step counted from 0)."""
    return step / max(total_steps, 1) * l1_coef


@register("ReFT-r1")
class ReFTr1(Method):
    """Rank-1 ReFT with a top-k latent and an L1 schedule."""

    Params = ReFTr1Params
    order = 50
    requires = frozenset({"lm_objective"})
    token_activation = "relu"  # detection: max ReLU(h·w)

    def train_concept(self, inputs: ConceptInputs, hp: ReFTr1Params) -> dict[str, Any]:
        return self.train_group([inputs], hp)[0]

    def train_group(self, items: Sequence[ConceptInputs], hp: ReFTr1Params) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in items]
        for idx in split_by_size([len(it.lm_rows) for it in items]):  # type: ignore[arg-type]
            for i, res in zip(idx, self._train([items[i] for i in idx], hp), strict=True):
                out[i] = res
        return out

    def _train(self, items: Sequence[ConceptInputs], hp: ReFTr1Params) -> list[dict[str, Any]]:
        rows = [it.lm_rows for it in items]
        tail = items[0].lm_tail
        assert tail is not None and all(r is not None for r in rows)
        n_c, device = len(items), rows[0].hidden[0].device
        w = nn.Parameter(torch.full((n_c, rows[0].hidden[0].shape[-1]), hp.init, device=device))
        opt = torch.optim.AdamW([w], lr=hp.lr, weight_decay=0.0)
        total = steps_per_run(len(rows[0]), hp.batch_size, hp.epochs)
        sched = linear_decay(opt, total)
        losses: list[list[float]] = [[] for _ in items]
        batches = group_batches(rows, [it.seed for it in items], hp.epochs, hp.batch_size)  # type: ignore[arg-type]
        for step, (batch, owner) in enumerate(batches):
            h = batch.hidden.float()
            w_row = w[owner]  # [B, d]
            z = torch.relu(torch.einsum("btd,bd->bt", h, w_row))
            a, l1 = topk_gate(z, batch.intervene, hp.k)
            delta = (a[:, None, None] * w_row[:, None, :]) * batch.intervene[..., None]
            ce, tok_row = tail.token_losses(h + delta, batch)
            loss = per_group_mean(ce, owner[tok_row], n_c) + l1_weight(
                step, total, hp.l1_coef
            ) * per_group_mean(l1, owner, n_c)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            for c, value in enumerate(loss.detach().tolist()):
                losses[c].append(round(value, 6))
            clip_rows_(w.grad, hp.max_grad_norm)
            normalise_rows_and_project_(w)
            opt.step()
            sched.step()
        return [
            {"weight": w[c].detach().float().cpu(), "bias": torch.zeros(()), "train_loss": losses[c]}
            for c in range(n_c)
        ]
