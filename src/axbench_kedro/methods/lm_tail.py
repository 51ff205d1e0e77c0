"""The blocks after layer L plus the LM head, run on cached layer-L states (LM-objective training).

A shell of the model's decoder whose blocks 0…L are pass-throughs runs on ``inputs_embeds`` = the (intervened)
layer-L states, so the model's own masks (full and sliding window) and rotary embeddings are reused unchanged and
the shared model object is never modified. The LM head (with Gemma-2's final logit soft-capping) runs only at the
positions that predict response tokens.

``dtype`` lets the tail run in another precision than the model (e.g. bfloat16 on a CPU with AMX, several times
faster than float32 there): the later blocks, the final norm and the head are then copied once in that dtype.
The cross-entropy over the (262k-entry) vocabulary and its gradient are computed together in one pass over
vocabulary chunks (:func:`linear_cross_entropy`): no ``[tokens, vocab]`` logits tensor is ever materialised and no
chunk of logits is computed twice (two head matrix products per step, as for plain full logits). In float32 those
two products run at the BLAS peak and are ~95 % of its time; what it saves over plain logits is their passes over
the ``[tokens, vocab]`` tensor (and the head on prompt positions), so ``benchmarks/bench_lm_objective.py`` measures it
at ~0.7 of a plain loss on the same response rows and ~0.55 of upstream's full-batch logits (bfloat16: ~0.6, ~0.45).

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
from torch.autograd.function import once_differentiable

from axbench_kedro.lm.activations import decoder_layers
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMBatch

__all__ = ["IGNORE_INDEX", "LMTail", "linear_cross_entropy", "vocab_chunk"]

IGNORE_INDEX = -100  # label of a position without loss (as in ``F.cross_entropy``)
# how far (in logits) a chunk's maximum may exceed a row's reference before the running sums are rescaled;
# exp(20) · 262,144 entries stays far inside float32
_RESCALE_MARGIN = 20.0


def _fused_rows(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None,
    chunk: int,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """CE of every row and (if ``need_grad``) d CE / d ``hidden``, float32, in one pass over vocabulary chunks.

    Online softmax: per row a reference ``m``, ``s = Σ exp(z − m)`` and ``acc = Σ exp(z − m)·z'·W`` (``z'`` the
    soft-capping derivative ``1 − tanh²``, else 1). ``m`` is a recent row maximum, moved (and ``s``, ``acc``
    rescaled) only when a chunk's maximum exceeds it by more than :data:`_RESCALE_MARGIN`, so the ``[N, d]``
    rescale of ``acc`` is rare while ``exp(z − m) ≤ e^margin`` cannot overflow. At the end ``lse = m + log s`` and
    ``d CE/d h = acc / s − z'_label · W_label``, which is ``(softmax − onehot)·z' @ W``.
    """
    n, d = hidden.shape
    vocab = weight.shape[0]
    chunk = min(chunk, vocab)
    dev = hidden.device
    m = torch.full((n,), float("-inf"), device=dev)
    s = torch.zeros(n, device=dev)
    picked = torch.zeros(n, device=dev)
    acc = torch.zeros(n, d, device=dev) if need_grad else None
    fp32 = weight.dtype == torch.float32
    # one logits buffer for every chunk (a flat buffer keeps the ragged last chunk contiguous)
    logits_buf = torch.empty(n * chunk, device=dev)
    raw_buf = None if fp32 else torch.empty(n * chunk, dtype=weight.dtype, device=dev)
    capped_buf = None if softcap is None else torch.empty(n * chunk, device=dev)
    for start in range(0, vocab, chunk):
        w = weight[start : start + chunk]
        cols = w.shape[0]
        z = logits_buf[: n * cols].view(n, cols)
        if fp32:
            torch.mm(hidden, w.T, out=z)
        else:  # logits rounded to the head's dtype first, as F.linear(hidden, weight).float()
            z.copy_(torch.mm(hidden, w.T, out=raw_buf[: n * cols].view(n, cols)))
        t = None
        if softcap is not None:
            t = z.div_(softcap).tanh_()
            z = torch.mul(t, softcap, out=capped_buf[: n * cols].view(n, cols))
        inside = (labels >= start) & (labels < start + cols)
        at_label = z.gather(1, (labels - start).clamp(0, cols - 1)[:, None])[:, 0]
        picked = torch.where(inside, at_label, picked)
        top = z.amax(dim=1)
        grow = top > m + _RESCALE_MARGIN  # every row on the first chunk (m = -inf)
        if bool(grow.any()):
            m_new = torch.where(grow, top, m)
            alpha = torch.exp(m - m_new)  # 0 on the first chunk, 1 for the rows that keep their m
            s.mul_(alpha)
            if acc is not None:
                acc.mul_(alpha[:, None])
            m = m_new
        p = z.sub_(m[:, None]).exp_()
        s.add_(p.sum(dim=1))
        if acc is not None:
            if t is not None:
                p.mul_(t.square_().neg_().add_(1.0))
            if fp32:
                acc.addmm_(p, w)
            else:
                acc.add_(p.to(w.dtype) @ w)
    loss = m + s.log() - picked
    if acc is None:
        return loss, None
    grad = acc.div_(s[:, None])
    at_label_w = weight[labels].float()
    if softcap is not None:
        at_label_w.mul_((1.0 - (picked / softcap).square())[:, None])
    return loss, grad.sub_(at_label_w)


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Per-row CE of ``softcap(hidden @ weight.T)`` against ``labels`` and its gradient for ``hidden``, fused.

    The forward computes each vocabulary chunk's logits once and takes from them both the loss and the gradient
    w.r.t. ``hidden`` (kept, ``[N, d]`` float32); the backward only scales that gradient by ``grad_output``.
    Rows labelled ``ignore_index`` are left out of the head products (loss 0, gradient 0).
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap, chunk, ignore_index, need_grad):  # type: ignore[no-untyped-def]
        n = hidden.shape[0]
        loss = torch.zeros(n, device=hidden.device)
        grad = torch.zeros(hidden.shape, device=hidden.device) if need_grad else None
        keep = (labels != ignore_index).nonzero()[:, 0]
        if keep.numel():
            if keep.numel() == n:
                h, lab = hidden, labels
            else:
                h, lab = hidden[keep], labels[keep]
            if int(lab.min()) < 0 or int(lab.max()) >= weight.shape[0]:
                raise IndexError(f"labels must be in [0, {weight.shape[0]}) or {ignore_index}")
            rows_loss, rows_grad = _fused_rows(h, weight, lab, softcap, chunk, need_grad)
            if keep.numel() == n:
                loss, grad = rows_loss, rows_grad
            else:
                loss[keep] = rows_loss
                if grad is not None:
                    grad[keep] = rows_grad
        if grad is not None:
            ctx.save_for_backward(grad)
        ctx.hidden_dtype = hidden.dtype
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[no-untyped-def]
        (grad,) = ctx.saved_tensors
        return (grad * grad_out.float()[:, None]).to(ctx.hidden_dtype), None, None, None, None, None, None


def vocab_chunk(n_rows: int, vocab: int, device: torch.device) -> int:
    """Vocabulary columns per chunk: ~8M logits on CPU, ~64M on GPU.

    On CPU each chunk costs a handful of parallel regions besides its two matrix products. With cores shared by
    other processes every region waits for a descheduled thread, so few large chunks run up to twice as fast as
    cache-sized 1M-logit ones; on an idle core both cost the same CPU time within a few per cent.
    """
    target = 2**26 if device.type == "cuda" else 2**23
    return int(min(vocab, max(256, (target // max(n_rows, 1)) // 256 * 256)))


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None = None,
    chunk: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-row ``F.cross_entropy(softcap(hidden @ weight.T).float(), labels, reduction="none")``, chunked and fused.

    Args:
        hidden: ``[N, d]`` final hidden states (gets the exact gradient).
        weight: ``[vocab, d]`` LM head, frozen (must not require a gradient).
        labels: ``[N]`` target token ids; ``ignore_index`` rows get loss 0 and gradient 0.
        softcap: Gemma's ``final_logit_softcapping`` (``None``: none).
        chunk: vocabulary columns per chunk (default :func:`vocab_chunk`).
        ignore_index: label of rows without loss.

    Returns:
        ``[N]`` float32 losses. The gradient w.r.t. ``hidden`` is computed in this forward call, chunk by chunk,
        when ``hidden`` requires one; the backward only scales it.
    """
    if weight.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "linear_cross_entropy treats the head as frozen: pass a weight without requires_grad"
        )
    chunk = chunk or vocab_chunk(int((labels != ignore_index).sum()), weight.shape[0], hidden.device)
    need_grad = torch.is_grad_enabled() and hidden.requires_grad  # else only the loss (one head product)
    return _FusedLinearCrossEntropy.apply(hidden, weight, labels, softcap, chunk, ignore_index, need_grad)


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

    def sequence_logps(self, hidden: torch.Tensor, batch: LMBatch) -> torch.Tensor:
        """Per batch row, the summed log-likelihood of its response tokens ``[B]`` (float32, differentiable)."""
        ce, row = self.token_losses(hidden, batch)
        return -torch.zeros(hidden.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, row, ce)
