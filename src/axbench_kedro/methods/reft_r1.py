"""ReFT-r1 (protocol §3.6, upstream "LsReFT"): a rank-1 latent with a top-k gated intervention, LM objective.

Over the intervened positions T (positions [P, len), padding masked out [D 15]): z_t = ReLU(h_t·w);
a = mean of the top-k z; ĥ_t = h_t + a·w for t ∈ T. Loss = CE(responses | ĥ) + (step/total)·λ·L1 with
L1 = batch mean of Σ_{t∈T∖topk} z_t / |T|. Data: positives and the genre's pool negatives. w = 0.01·1;
AdamW (wd 0), linear decay; per step: clip grad-norm 1 → w ← w/‖w‖ → drop the gradient along w → step [D 9].
Detection: max ReLU(h_t·w); steering: addition, m = its max latent.

Example:
    >>> a, l1 = topk_gate(torch.tensor([[0., 3, 1, 5, 2]]), torch.ones(1, 5, dtype=torch.bool), k=2)
    >>> a, l1  # protocol §10.15
    (tensor([4.]), tensor([0.6000]))
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.probe import normalise_and_project_
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator
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
    requires = frozenset({"lm_objective"})

    def train_concept(self, inputs: ConceptInputs, hp: ReFTr1Params) -> dict[str, Any]:
        rows, tail = inputs.lm_rows, inputs.lm_tail
        assert rows is not None and tail is not None
        device = rows.hidden[0].device
        w = nn.Parameter(torch.full((rows.hidden[0].shape[-1],), hp.init, device=device))
        opt = torch.optim.AdamW([w], lr=hp.lr, weight_decay=0.0)
        total = hp.epochs * math.ceil(len(rows) / hp.batch_size)
        sched = linear_decay(opt, total)
        gen = seeded_generator(inputs.seed)
        step = 0
        losses: list[float] = []
        for _ in range(hp.epochs):
            order = torch.randperm(len(rows), generator=gen).tolist()
            for start in range(0, len(rows), hp.batch_size):
                batch = rows.batch(order[start : start + hp.batch_size])
                h = batch.hidden.float()
                z = torch.relu(h @ w)
                a, l1 = topk_gate(z, batch.intervene, hp.k)
                delta = (a[:, None, None] * w) * batch.intervene[..., None]
                loss = tail.response_loss(h + delta, batch)
                loss = loss + l1_weight(step, total, hp.l1_coef) * l1.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                losses.append(round(float(loss.detach()), 6))
                torch.nn.utils.clip_grad_norm_([w], hp.max_grad_norm)
                normalise_and_project_(w)
                opt.step()
                sched.step()
                step += 1
        return {"weight": w.detach().float().cpu(), "bias": torch.zeros(()), "train_loss": losses}

    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        weight = artifact.tensors["weight"].float()
        return DetectionEncoder(weight=weight, bias=torch.zeros(weight.shape[0]), activation="relu")
