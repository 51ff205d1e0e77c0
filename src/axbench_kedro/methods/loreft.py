"""LoReFT (protocol §3.12): Φ(h) = h + Rᵀ(Wh + b − Rh) on block outputs, LM loss on the positives only.

R ``[r, d]`` has orthonormal rows, kept so by ``torch.nn.utils.parametrizations.orthogonal`` (Householder
products, so every optimizer step stays on the manifold); W, b are a plain linear map to ``r`` dimensions. One
intervention per listed block, applied to the first ``first_n`` and last ``last_n`` positions of the **prompt**
(the union, so a short prompt is edited once per position; the weights are shared between the two groups), in
float32 whatever the model's dtype. AdamW (wd 0), linear decay, clip 1.0, gradient accumulation.
Plain forward hooks, no pyvene/pyreft: the same hooks serve training (positions from the prompt lengths) and
steering (positions from the prompt's attention mask at the prefill forward; generated tokens are not edited).

The artifact stacks ``R``, ``W`` ``[C, n_layers, r, d]``, ``b`` ``[C, n_layers, r]`` and ``layers``. Detection:
none; steering: sampling with the concept's interventions attached (factor-free). ``layers: null`` = the training
layer L only; the paper lists [5, 10, 15, 20] (2B) and [12, 20, 31, 39] (9B).

Example:
    >>> loreft_edit(h, R, W, b)  # h + (h @ W.T + b - h @ R.T) @ R
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrizations

from axbench_kedro.config.common import StrictModel
from axbench_kedro.lm.activations import decoder_layers
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.adapters import (
    AdapterMethod,
    fit_adapter,
    full_response_loss,
    positive_rows,
    resolve_layers,
)
from axbench_kedro.methods.base import ConceptInputs, MethodArtifact
from axbench_kedro.methods.rank1 import seeded_generator
from axbench_kedro.methods.registry import register

__all__ = [
    "LoReFTParams",
    "LoReFT",
    "LoReFTIntervention",
    "loreft_edit",
    "prompt_position_mask",
    "attached_edits",
]


class LoReFTParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (2B 9e-4, 9B 4e-4).
    epochs: passes over the positives.
    batch_size: rows per micro-batch.
    gradient_accumulation: micro-batches per optimizer step.
    rank: r (rows of R and W).
    first_n: first prompt positions edited.
    last_n: last prompt positions edited.
    layers: edited blocks (their outputs); null = the training layer L.
    max_grad_norm: gradient clipping norm.
    """

    lr: float = Field(9e-4, gt=0)
    epochs: int = Field(24, ge=1)
    batch_size: int = Field(18, ge=1)
    gradient_accumulation: int = Field(2, ge=1)
    rank: int = Field(4, ge=1)
    first_n: int = Field(5, ge=0)
    last_n: int = Field(5, ge=0)
    layers: list[int] | None = None
    max_grad_norm: float | None = Field(1.0, gt=0)


def loreft_edit(h: torch.Tensor, R: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Φ(h) = h + Rᵀ(Wh + b − Rh) for states ``h [..., d]`` (R, W ``[r, d]``, b ``[r]``)."""
    return h + (h @ W.T + b - h @ R.T) @ R


class LoReFTIntervention(nn.Module):
    """One block's trainable Φ: R (orthonormal rows, parametrised) and the linear map W, b.

    Args:
        d: hidden size.
        rank: r.
        generator: RNG of the init (R: orthogonal init; W, b: ``nn.Linear``'s default init).
    """

    def __init__(self, d: int, rank: int, generator: torch.Generator) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
            self.rotate = nn.Linear(d, rank, bias=False)
            self.learned = nn.Linear(d, rank)
        with torch.no_grad():
            nn.init.orthogonal_(self.rotate.weight, generator=generator)
            nn.init.kaiming_uniform_(self.learned.weight, a=math.sqrt(5), generator=generator)
            bound = 1.0 / math.sqrt(d)
            nn.init.uniform_(self.learned.bias, -bound, bound, generator=generator)
        parametrizations.orthogonal(self.rotate)

    @property
    def R(self) -> torch.Tensor:
        """``[r, d]`` with orthonormal rows."""
        return self.rotate.weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return loreft_edit(h, self.R, self.learned.weight, self.learned.bias)


def prompt_position_mask(
    attention_mask: torch.Tensor, prompt_lengths: torch.Tensor, first_n: int, last_n: int
) -> torch.Tensor:
    """``[B, T]`` bool: the first ``first_n`` and last ``last_n`` prompt tokens of each row (any padding side).

    Args:
        attention_mask: ``[B, T]`` 1 on real tokens.
        prompt_lengths: ``[B]`` prompt tokens per row (the prompt starts at the first real token).
        first_n, last_n: how many positions from each end of the prompt.
    """
    real = attention_mask.bool()
    pos = real.long().cumsum(dim=1) - 1  # position among the row's real tokens
    p = prompt_lengths.to(pos.device)[:, None]
    return real & (pos < p) & ((pos < first_n) | (pos >= p - last_n))


@contextmanager
def attached_edits(
    model: torch.nn.Module,
    edits: dict[int, Callable[[torch.Tensor], torch.Tensor]],
    mask: dict[str, torch.Tensor | None],
) -> Iterator[None]:
    """Forward hooks applying ``edits[layer]`` (float32) to block ``layer``'s output where ``mask["mask"]`` is set.

    ``mask["mask"]`` (``[B, T]`` bool, or ``None`` for no edit) is read at every forward, so the caller can change
    it between batches; a forward whose length differs from the mask's (a cached decoding step) is left alone.
    """
    blocks = decoder_layers(model)

    def hook_for(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
        def hook(_module: Any, _args: Any, output: Any) -> Any:
            sel = mask.get("mask")
            hidden = output[0] if isinstance(output, tuple) else output
            if sel is None or sel.shape != hidden.shape[:2]:
                return None
            new = torch.where(sel[..., None], edit(hidden.float()).to(hidden.dtype), hidden)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        return hook

    handles = [blocks[layer].register_forward_hook(hook_for(edit)) for layer, edit in edits.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@register("LoReFT")
class LoReFT(AdapterMethod):
    """Per-concept low-rank representation finetuning at the first/last prompt positions of the listed blocks."""

    Params = LoReFTParams
    order = 67

    def train_concept(self, inputs: ConceptInputs, hp: LoReFTParams) -> dict[str, Any]:
        rows = positive_rows(inputs)
        tm: TargetModel = inputs.lm_tail.tm
        layers = resolve_layers(hp.layers, tm, inputs.lm_tail.layer, "training.hyperparameters.LoReFT.layers")
        gen = seeded_generator(inputs.seed)
        modules = {layer: LoReFTIntervention(tm.d_model, hp.rank, gen).to(tm.device) for layer in layers}
        params = [p for m in modules.values() for p in m.parameters()]
        state: dict[str, torch.Tensor | None] = {"mask": None}

        def loss_fn(batch: Any) -> torch.Tensor:
            lengths = torch.tensor(
                [
                    int(batch.target[b].nonzero()[0, 0]) + 1 if batch.target[b].any() else 0
                    for b in range(batch.target.shape[0])
                ]
            )
            state["mask"] = prompt_position_mask(batch.attention_mask, lengths, hp.first_n, hp.last_n)
            return full_response_loss(tm, batch)

        with attached_edits(tm.model, dict(modules), state):
            losses = fit_adapter(
                rows,
                params,
                loss_fn,
                hp,
                seed=inputs.seed,
                device=tm.device,
            )
        with torch.no_grad():
            ms = [modules[layer] for layer in layers]
            return {
                "R": torch.stack([m.R.detach().float().cpu() for m in ms]),
                "W": torch.stack([m.learned.weight.detach().float().cpu() for m in ms]),
                "b": torch.stack([m.learned.bias.detach().float().cpu() for m in ms]),
                "layers": torch.tensor(layers, dtype=torch.long),
                "train_loss": losses,
            }

    @contextmanager
    def adapter(self, artifact: MethodArtifact, tm: TargetModel, concept_id: int) -> Iterator[None]:
        row = int(artifact.rows_of([concept_id])[0])
        hp = self.params(artifact.meta.get("hyperparameters"))
        t = {k: artifact.tensors[k][row].to(tm.device) for k in ("R", "W", "b")}
        edits = {
            int(layer): _fixed_edit(t["R"][i], t["W"][i], t["b"][i])
            for i, layer in enumerate(artifact.tensors["layers"][row].tolist())
        }
        state: dict[str, torch.Tensor | None] = {"mask": None}

        def prefill_mask(_module: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None or not _is_prefill(kwargs):
                state["mask"] = None  # a cached decoding step: generated tokens are not edited
                return
            attn = kwargs.get("attention_mask")
            if attn is None or attn.shape[1] != ids.shape[1]:
                attn = torch.ones_like(ids)  # generate() drops the mask of a batch without padding
            real = attn.sum(dim=1)
            state["mask"] = prompt_position_mask(attn, real, hp.first_n, hp.last_n)

        handle = tm.model.register_forward_pre_hook(prefill_mask, with_kwargs=True)
        try:
            with attached_edits(tm.model, edits, state):
                yield
        finally:
            handle.remove()


def _is_prefill(kwargs: dict[str, Any]) -> bool:
    """True on the forward that reads the prompt (empty cache), False on a cached decoding step."""
    positions = kwargs.get("cache_position")
    if positions is not None and positions.numel():
        return int(positions[0]) == 0
    cache = kwargs.get("past_key_values")
    return cache is None or cache.get_seq_length() == 0


def _fixed_edit(R: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(h: torch.Tensor) -> torch.Tensor:
        return loreft_edit(h, R, W, b)

    return edit
