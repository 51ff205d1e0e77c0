"""The blocks after layer L plus the LM head, run on cached layer-L states (LM-objective training).

A shell of the model's decoder whose blocks 0…L are pass-throughs runs on ``inputs_embeds`` = the (intervened)
layer-L states, so the model's own masks (full and sliding window) and rotary embeddings are reused unchanged and
the shared model object is never modified. The LM head (with Gemma-2's final logit soft-capping) runs only at the
positions that predict response tokens.

``dtype`` lets the tail run in another precision than the model (e.g. bfloat16 on a CPU with AMX, several times
faster than float32 there): the later blocks, the final norm and the head are then copied once in that dtype.

Example:
    >>> tail = LMTail(tm, layer=9)
    >>> loss = tail.response_loss(batch.hidden + delta, batch)  # mean CE over the response tokens
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from axbench_kedro.lm.activations import decoder_layers
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMBatch

__all__ = ["LMTail"]


class _PassThrough(nn.Module):
    """Stands in for a block that already ran: returns its input hidden states."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        del args, kwargs
        return hidden_states


def _shell(module: nn.Module) -> nn.Module:
    """Shallow copy of ``module`` with its own child/parameter/buffer tables (children can be swapped safely)."""
    out = copy.copy(module)
    out._modules = dict(module._modules)
    out._parameters = dict(module._parameters)
    out._buffers = dict(module._buffers)
    return out


class LMTail:
    """Runs blocks ``layer+1 …`` and the LM head of ``tm`` on given layer-``layer`` states.

    Args:
        tm: the target model (frozen weights; gradients flow to the inputs only).
        layer: the block whose output the states are.
        dtype: compute dtype of the tail (``None`` = the model's).
    """

    def __init__(self, tm: TargetModel, layer: int, dtype: torch.dtype | None = None) -> None:
        self.tm = tm
        self.layer = layer
        model = tm.model
        inner = getattr(model, "model", model)
        decoder = getattr(inner, "language_model", inner)
        layers = decoder_layers(model)
        self.dtype = dtype or tm.dtype
        convert = self.dtype != tm.dtype
        head = model.get_output_embeddings()
        if any(p.requires_grad for p in layers[layer + 1 :].parameters()) or head.weight.requires_grad:
            raise ValueError("LMTail needs a frozen model (the loader calls requires_grad_(False))")

        def later(block: nn.Module) -> nn.Module:
            return copy.deepcopy(block).to(self.dtype) if convert else block

        self.decoder = _shell(decoder)
        self.decoder.layers = nn.ModuleList(
            [_PassThrough() for _ in range(layer + 1)] + [later(b) for b in layers[layer + 1 :]]
        )
        if hasattr(decoder, "norm"):
            self.decoder.norm = later(decoder.norm)
        if convert:
            self.decoder.embed_tokens = None  # never used: the tail starts from inputs_embeds
            self.head_weight = head.weight.detach().to(self.dtype)
            for p in self.decoder.parameters():
                p.requires_grad_(False)
        else:
            self.head_weight = head.weight
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def final_hidden(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Final-norm output ``[B, T, d]`` of the model whose block-``layer`` output is ``hidden``."""
        out = self.decoder(
            inputs_embeds=hidden.to(self.dtype), attention_mask=attention_mask, use_cache=False
        )
        return out.last_hidden_state

    def logits(self, final: torch.Tensor) -> torch.Tensor:
        """LM head (+ soft-capping) on final states ``[N, d]`` → ``[N, vocab]`` float32."""
        logits = F.linear(final.to(self.dtype), self.head_weight).float()
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def response_loss(self, hidden: torch.Tensor, batch: LMBatch) -> torch.Tensor:
        """Mean cross-entropy over the response tokens of ``batch`` with block-L output ``hidden``."""
        final = self.final_hidden(hidden, batch.attention_mask)
        b_idx, t_idx = batch.target.nonzero(as_tuple=True)
        labels = batch.input_ids[b_idx, t_idx + 1]
        return F.cross_entropy(self.logits(final[b_idx, t_idx]), labels)
