"""Linear probe (protocol §3.4) trained on frozen layer-L activations (cached once, no model forward per epoch).

Per-token logit z_t = h_t·w (no bias); loss = mean BCE(σ(z_t), y_row) over positions ≥ 1 (+ L1, coefficient 0),
computed as ``binary_cross_entropy_with_logits`` (numerically stable; upstream's sigmoid + ``BCELoss`` saturates at
Gemma residual scales and barely trains, so Probe rows are not expected to equal upstream's [D 33]);
AdamW with linear decay; each step: backward → w ← w/‖w‖ → drop the gradient component along w → step.
Detection: max h_t·w over positions ≥ P; steering: addition with m from latent_eval.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.rank1 import linear_decay, project_out_parallel, seeded_generator, unit_norm
from axbench_kedro.methods.registry import register

__all__ = ["ProbeParams", "Probe", "normalise_and_project_"]


class ProbeParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (2B 5e-3, 9B 1e-3).
    weight_decay: AdamW weight decay (2B 1e-3, 9B 1e-4).
    batch_size: rows per optimizer step.
    epochs: passes over the concept's rows.
    l1_coef: L1 penalty on w (0 in the paper).
    """

    lr: float = Field(5e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    batch_size: int = Field(12, ge=1)
    epochs: int = Field(24, ge=1)
    l1_coef: float = Field(0.0, ge=0)


def normalise_and_project_(w: nn.Parameter) -> None:
    """In place: w ← w/‖w‖, then remove the gradient component along the new w (protocol §10.16)."""
    with torch.no_grad():
        w.copy_(unit_norm(w))
        if w.grad is not None:
            w.grad.copy_(project_out_parallel(w.grad, w))


def _default_linear_init(d: int, seed: int) -> torch.Tensor:
    """Weight of ``nn.Linear(d, 1)`` as PyTorch initialises it, drawn from a seeded RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(d, 1).weight.detach()[0].clone()


@register("Probe")
class Probe(Method):
    """Per-token logistic probe on layer-L activations."""

    Params = ProbeParams
    order = 40
    requires = frozenset({"activations"})
    report_note = (
        "loss = binary_cross_entropy_with_logits (numerically stable); upstream applies torch.sigmoid then "
        "BCELoss, which saturates at Gemma residual scales, so Probe rows are not expected to equal upstream's "
        "(protocol D33)."
    )

    def train_concept(self, inputs: ConceptInputs, hp: ProbeParams) -> dict[str, Any]:
        acts = inputs.activations
        assert acts is not None
        keep = acts.acts.pos >= 1  # the probe trains on every position but BOS
        tokens, row = acts.acts.tokens[keep], acts.acts.row[keep]
        device = tokens.device
        y_tok = acts.token_labels[keep].float().to(device)
        n_rows = acts.acts.n_rows
        counts = torch.bincount(row.cpu(), minlength=n_rows)
        starts = torch.cumsum(counts, 0) - counts  # rows are packed contiguously
        w = nn.Parameter(_default_linear_init(tokens.shape[1], inputs.seed).to(device))
        opt = torch.optim.AdamW([w], lr=hp.lr, weight_decay=hp.weight_decay)
        steps_per_epoch = math.ceil(n_rows / hp.batch_size)
        sched = linear_decay(opt, hp.epochs * steps_per_epoch)
        gen = seeded_generator(inputs.seed)
        losses: list[float] = []
        for _ in range(hp.epochs):
            order = torch.randperm(n_rows, generator=gen)
            for start in range(0, n_rows, hp.batch_size):
                batch = order[start : start + hp.batch_size]
                idx = torch.cat([torch.arange(starts[r], starts[r] + counts[r]) for r in batch.tolist()])
                idx = idx.to(device)
                z = tokens[idx].float() @ w
                loss = F.binary_cross_entropy_with_logits(z, y_tok[idx])
                if hp.l1_coef:
                    loss = loss + hp.l1_coef * w.abs().sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                losses.append(round(float(loss.detach()), 6))
                normalise_and_project_(w)
                opt.step()
                sched.step()
        return {"weight": w.detach().float().cpu(), "bias": torch.zeros(()), "train_loss": losses}
