"""Speed of the LM-objective loss over the 262k-token head (not a test; prints ratios).

Forward + backward (gradient w.r.t. the final hidden states, the head frozen) of the cross-entropy of N response
tokens, on the embedded gemma-3-270m's head (262,144 × 640; ``--synthetic``: a random head of that shape) and its
final hidden states of a few sentences:

1. fused chunked loss (``lm_tail.linear_cross_entropy``: loss and gradient from one pass over vocabulary chunks)
   ÷ plain full logits (``F.linear`` + ``F.cross_entropy`` on the ``[N, vocab]`` logits). Target ≤ 0.5.
2. the previous chunked implementation (a loss pass, then a backward that recomputes every chunk; kept below)
   ÷ the same plain full logits, and fused ÷ previous.

Each implementation runs ``--repeats`` times, interleaved (the machine's load drifts); min and median are printed.

Usage:
    python benchmarks/bench_lm_objective.py [--tokens 768] [--dtype float32] [--repeats 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.types import ModelSpec
from axbench_kedro.methods.lm_tail import linear_cross_entropy, vocab_chunk

TEXTS = [
    "Renting a car for the weekend was easy: the rental desk at the airport had a compact model ready, and the "
    "agent explained the insurance, the mileage limit and the fuel policy before handing over the keys.",
    "The waves rolled in from the open sea, crashing on the rocks and pulling the foam back across the sand while "
    "gulls circled above the grey water and the tide crept higher along the shore.",
    "for item in items:\n    if item > 0:\n        total += item\nprint(total)  # the loop walks the list once",
    "Divide 3/4 by 1/2: multiply 3/4 by the reciprocal 2/1 to get 6/4, which simplifies to 3/2, so one and a half "
    "halves fit into three quarters of the whole quantity.",
]


class _TwoPassLinearCrossEntropy(torch.autograd.Function):
    """The previous implementation: forward = running log-sum-exp over chunks, backward = recompute every chunk."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap, chunk):  # type: ignore[no-untyped-def]
        n = hidden.shape[0]
        lse = torch.full((n,), float("-inf"), device=hidden.device)
        picked = torch.zeros(n, device=hidden.device)
        for start in range(0, weight.shape[0], chunk):
            logits = (hidden @ weight[start : start + chunk].T).float()
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
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


def plain_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """Per-token CE through the full ``[N, vocab]`` float32 logits (what a plain LM loss does)."""
    logits = F.linear(hidden, weight).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, labels, reduction="none")


def two_pass_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """Per-token CE with the previous two-pass chunked implementation."""
    chunk = vocab_chunk(hidden.shape[0], weight.shape[0], hidden.device)
    return _TwoPassLinearCrossEntropy.apply(hidden, weight, labels, softcap, chunk)


def head_and_states(
    n_tokens: int, dtype: torch.dtype, synthetic: bool
) -> tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float | None]:
    """``(description, head [V, d], final states [N, d], next-token labels [N], softcap)`` in ``dtype``."""
    if synthetic:
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(262_144, 640, generator=gen) * 0.03
        hidden = torch.randn(n_tokens, 640, generator=gen) * 3.0
        labels = torch.randint(0, weight.shape[0], (n_tokens,), generator=gen)
        return "synthetic head", weight.to(dtype), hidden.to(dtype), labels, None
    tm = load_target_model(ModelSpec())
    states, ids = [], []
    with torch.no_grad():
        for text in TEXTS:
            enc = tm.tokenizer(text, return_tensors="pt")
            out = tm.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            states.append(out.last_hidden_state[0, :-1])  # after the final norm: the head's input
            ids.append(enc["input_ids"][0, 1:])
    pool_h, pool_ids = torch.cat(states), torch.cat(ids)
    pick = torch.arange(n_tokens) % pool_h.shape[0]
    weight = tm.model.get_output_embeddings().weight.detach()
    softcap = getattr(tm.model.config, "final_logit_softcapping", None)
    return tm.name, weight.to(dtype), pool_h[pick].to(dtype), pool_ids[pick], softcap


def fwd_bwd(
    loss_fn: Callable[..., torch.Tensor],
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    softcap: float | None,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Wall time of the mean loss's forward + backward; the per-token losses and the hidden-state gradient."""
    h = hidden.detach().clone().requires_grad_(True)
    start = time.perf_counter()
    per_token = loss_fn(h, weight, labels, softcap)
    per_token.mean().backward()
    return time.perf_counter() - start, per_token.detach(), h.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tokens", type=int, default=768, help="response tokens per step (4 concepts × 6 × ~32)"
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random 262,144 × 640 head (no model load)")
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    name, weight, hidden, labels, softcap = head_and_states(args.tokens, dtype, args.synthetic)
    chunk = vocab_chunk(hidden.shape[0], weight.shape[0], hidden.device)
    print(
        f"head {weight.shape[0]:,} × {weight.shape[1]} ({name}, {args.dtype}, softcap {softcap}), "
        f"{hidden.shape[0]} tokens, {chunk} vocabulary columns per chunk, torch threads {torch.get_num_threads()}"
    )
    impls: dict[str, Callable[..., torch.Tensor]] = {
        "plain": plain_loss,
        "fused": linear_cross_entropy,
        "previous": two_pass_loss,
    }
    small = slice(0, 16)
    for fn in impls.values():  # warm-up (lazy initialisation, allocator)
        fwd_bwd(fn, hidden[small], weight, labels[small], softcap)
    times: dict[str, list[float]] = {k: [] for k in impls}
    results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for _ in range(args.repeats):  # interleaved: the machine's load drifts
        for key, fn in impls.items():
            seconds, per_token, grad = fwd_bwd(fn, hidden, weight, labels, softcap)
            times[key].append(seconds)
            results[key] = (per_token, grad)

    lo = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"    plain full logits (F.linear + F.cross_entropy), forward + backward: {lo['plain']:.2f} / {med['plain']:.2f} s (min / median)")  # fmt: skip
    print(f"    fused chunked: {lo['fused']:.2f} / {med['fused']:.2f} s; previous chunked: {lo['previous']:.2f} / {med['previous']:.2f} s")  # fmt: skip
    print(f"[1] fused ÷ plain: {lo['fused'] / lo['plain']:.2f} (min) / {med['fused'] / med['plain']:.2f} (median) (target ≤ 0.5)")  # fmt: skip
    print(f"[2] previous ÷ plain: {lo['previous'] / lo['plain']:.2f} / {med['previous'] / med['plain']:.2f}; "
          f"fused ÷ previous: {lo['fused'] / lo['previous']:.2f} / {med['fused'] / med['previous']:.2f}")  # fmt: skip
    ref_loss, ref_grad = results["plain"]
    for key in ("fused", "previous"):
        loss, grad = results[key]
        rel = float((grad.float() - ref_grad.float()).norm() / ref_grad.float().norm())
        print(f"    check {key} vs plain: max |Δ loss| {float((loss - ref_loss).abs().max()):.1e}, "
              f"relative gradient difference {rel:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
