"""The blocks after layer L plus the LM head, run on cached layer-L states (LM-objective training).

A shell of the model's decoder whose blocks 0…L are pass-throughs runs on ``inputs_embeds`` = the (intervened)
layer-L states, so the model's own masks (full and sliding window) and rotary embeddings are reused unchanged and
the shared model object is never modified. The LM head (with Gemma-2's final logit soft-capping) runs only at the
positions that predict response tokens.

``dtype`` lets the tail run in another precision than the model (e.g. bfloat16 on a CPU with AMX, several times
faster than float32 there): the later blocks, the final norm and the head are then copied once in that dtype.
The cross-entropy over the (262k-entry) vocabulary is computed in cache-sized vocabulary chunks
(:func:`linear_cross_entropy`), so no ``[tokens, vocab]`` logits tensor is ever materialised.

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

__all__ = ["LMTail", "linear_cross_entropy", "vocab_chunk"]


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row CE of ``softcap(hidden @ weight.T)`` against ``labels``, in vocabulary chunks, gradient for ``hidden``.

    The ``[N, vocab]`` logits are never materialised: the forward keeps a running log-sum-exp over vocabulary
    chunks, the backward recomputes each chunk's logits (the head weight is read once per pass either way, and
    nothing of size N × 262k ever has to leave the cache).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap, chunk):  # type: ignore[no-untyped-def]
        n = hidden.shape[0]
        lse = torch.full((n,), float("-inf"), device=hidden.device)
        picked = torch.zeros(n, device=hidden.device)
        for start in range(0, weight.shape[0], chunk):
            logits = _chunk_logits(hidden, weight[start : start + chunk], softcap)
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
            inside = (labels >= start) & (labels < start + logits.shape[1])
            if inside.any():
                rows = inside.nonzero()[:, 0]
                picked[rows] = logits[rows, labels[rows] - start]
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.softcap, ctx.chunk = softcap, chunk
        return lse - picked

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[no-untyped-def]
        hidden, weight, labels, lse = ctx.saved_tensors
        scale = grad_out.float()[:, None]
        grad = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device)
        for start in range(0, weight.shape[0], ctx.chunk):
            w = weight[start : start + ctx.chunk]
            raw = (hidden @ w.T).float()
            if ctx.softcap is not None:
                t = torch.tanh(raw / ctx.softcap)
                g = torch.exp(t * ctx.softcap - lse[:, None])
            else:
                g = torch.exp(raw - lse[:, None])
            inside = (labels >= start) & (labels < start + w.shape[0])
            if inside.any():
                rows = inside.nonzero()[:, 0]
                g[rows, labels[rows] - start] -= 1.0
            g.mul_(scale)
            if ctx.softcap is not None:
                g.mul_(1.0 - t * t)
            grad += (g.to(weight.dtype) @ w).float()
        return grad.to(hidden.dtype), None, None, None, None


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, softcap: float | None) -> torch.Tensor:
    logits = (h @ weight.T).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def vocab_chunk(n_rows: int, vocab: int, device: torch.device) -> int:
    """Vocabulary columns per chunk: ~1M logits on CPU (stays in cache: ~4x faster than big chunks), ~64M on GPU."""
    target = 2**26 if device.type == "cuda" else 2**20
    return int(min(vocab, max(256, (target // max(n_rows, 1)) // 256 * 256)))


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None = None,
    chunk: int | None = None,
) -> torch.Tensor:
    """Per-row ``F.cross_entropy(softcap(hidden @ weight.T).float(), labels, reduction="none")``, chunked.

    ``weight`` is treated as frozen (no gradient); ``hidden`` gets the exact gradient. ``chunk`` = vocabulary
    columns per chunk (default :func:`vocab_chunk`).
    """
    chunk = chunk or vocab_chunk(hidden.shape[0], weight.shape[0], hidden.device)
    return _LinearCrossEntropy.apply(hidden, weight, labels, softcap, chunk)


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

    def token_losses(self, hidden: torch.Tensor, batch: LMBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of every response token and the batch row it belongs to.

        Args:
            hidden: ``[B, T, d]`` block-L output (cached states plus the intervention).
            batch: the batch ``hidden`` belongs to.

        Returns:
            ``(ce [N], row [N])`` over the N response tokens of the batch.
        """
        final = self.final_hidden(hidden, batch.attention_mask)
        b_idx, t_idx = batch.target.nonzero(as_tuple=True)
        labels = batch.input_ids[b_idx, t_idx + 1]
        ce = linear_cross_entropy(final[b_idx, t_idx].to(self.dtype), self.head_weight, labels, self.softcap)
        return ce, b_idx

    def response_loss(self, hidden: torch.Tensor, batch: LMBatch) -> torch.Tensor:
        """Mean cross-entropy over the response tokens of ``batch`` with block-L output ``hidden``."""
        return self.token_losses(hidden, batch)[0].mean()
