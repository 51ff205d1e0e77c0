"""Supervised steering vector (protocol §3.5): h ← h + w at positions "all", LM loss on positives only.

w starts at 0.01 in every entry; AdamW (wd 0), linear decay, no normalisation, no clipping. Detection: max
ReLU(h_t·w); steering: addition with m = its own max latent (w is not unit norm).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator
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
    requires = frozenset({"lm_objective"})
    trains_on_negatives = False

    def train_concept(self, inputs: ConceptInputs, hp: SSVParams) -> dict[str, Any]:
        rows, tail = inputs.lm_rows, inputs.lm_tail
        assert rows is not None and tail is not None
        rows = rows.subset(range(len(inputs.data.pos_inputs)))  # positives come first
        device = rows.hidden[0].device
        w = nn.Parameter(torch.full((rows.hidden[0].shape[-1],), hp.init, device=device))
        opt = torch.optim.AdamW([w], lr=hp.lr, weight_decay=0.0)
        sched = linear_decay(opt, hp.epochs * math.ceil(len(rows) / hp.batch_size))
        gen = seeded_generator(inputs.seed)
        losses: list[float] = []
        for _ in range(hp.epochs):
            order = torch.randperm(len(rows), generator=gen).tolist()
            for start in range(0, len(rows), hp.batch_size):
                batch = rows.batch(order[start : start + hp.batch_size])
                h = batch.hidden.float()
                loss = tail.response_loss(h + w * batch.intervene[..., None], batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                losses.append(round(float(loss.detach()), 6))
                opt.step()
                sched.step()
        return {"weight": w.detach().float().cpu(), "bias": torch.zeros(()), "train_loss": losses}

    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        weight = artifact.tensors["weight"].float()
        return DetectionEncoder(weight=weight, bias=torch.zeros(weight.shape[0]), activation="relu")
