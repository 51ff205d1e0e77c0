"""Speed of the LM-objective loss over the 262k-token head (not a test; prints ratios).

Forward + backward (gradient w.r.t. the final hidden states, the head frozen) of the mean cross-entropy over the
response tokens of one training batch, on the embedded gemma-3-270m's head (262,144 × 640; ``--synthetic``: a random
head of that shape). The batch is laid out as in upstream's training: ``--tokens`` response tokens in rows of
``--response`` tokens (default 6 rows × 128 = SSV / ReFT-r1 batch 6 × ``output_length`` 128), each after a templated
prompt of 16…32 tokens (our seed instructions in the chat template: 14–41, median 23) and padded to the longest row
plus the one pad token upstream's collator appends. Implementations:

- fused: ``lm_tail.linear_cross_entropy`` on the response rows (loss and gradient from one pass over vocabulary
  chunks), what SSV and ReFT-r1 train with.
- plain, full batch: what upstream AxBench runs (``IntervenableModel(..., labels=...)`` → the Hugging Face causal-LM
  loss): the head on every position of the padded batch (prompt, response, padding), logits upcast to float32, then
  ``F.cross_entropy`` with ``ignore_index`` on the response positions.
- plain, response rows: the head on the response-predicting positions only, then ``F.cross_entropy`` — the stricter
  baseline (no prompt or padding logits), printed so the speed-up is not judged against the weaker one alone.
- previous (``--previous``): the two-pass chunked implementation the fused one replaced (a loss pass, then a backward
  that recomputes every chunk; kept below).

In float32 the fused loss costs about its two head matrix products (the same two as plain logits: ``[N, d] × [d,
V]`` forward, ``[N, V] × [V, d]`` for the hidden-state gradient, both at the BLAS peak), so its ratio against the
response-row baseline is bounded below by ``2 GEMMs ÷ (2 GEMMs + plain's passes over the [N, V] logits)``; the
full-batch baseline in addition multiplies every prompt and padding position by the head. The issue's target (≤ 0.5
of a plain full-logits loss in float32) is printed against the full batch ([1]). Measured on a 2-core AVX-512 CPU
with the defaults (one thread, CPU time): float32 [1] ≈ 0.55–0.58 and [2] ≈ 0.72, where the two GEMMs alone would
give ≈ 0.5 and ≈ 0.65; bfloat16 [1] ≈ 0.46, [2] ≈ 0.6. On a 2-core AMD EPYC (2026-12-02, 3 repeats) float32 [1] was
0.46 with one thread and with two, [2] 0.68–0.76: where the fp32 floor lies depends on the CPU's GEMM vs its
elementwise throughput.

Each implementation runs ``--repeats`` times, interleaved (the machine's load drifts); min and median of the wall
time and of the process CPU time are printed. On cores shared with other processes the wall times of the fused loss
(many short parallel regions) suffer more than those of plain logits (a few long ones); ``--threads 1``
gives CPU times that other processes barely disturb.

Usage:
    python benchmarks/bench_lm_objective.py [--tokens 768] [--response 128] [--dtype float32] [--repeats 3]
        [--threads N] [--synthetic] [--previous]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.types import ModelSpec
from axbench_kedro.methods.lm_tail import IGNORE_INDEX, linear_cross_entropy, vocab_chunk

TEXTS = [
    "Renting a car for the weekend was easy: the rental desk at the airport had a compact model ready, and the "
    "agent explained the insurance, the mileage limit and the fuel policy before handing over the keys.",
    "The waves rolled in from the open sea, crashing on the rocks and pulling the foam back across the sand while "
    "gulls circled above the grey water and the tide crept higher along the shore.",
    "for item in items:\n    if item > 0:\n        total += item\nprint(total)  # the loop walks the list once",
    "Divide 3/4 by 1/2: multiply 3/4 by the reciprocal 2/1 to get 6/4, which simplifies to 3/2, so one and a half "
    "halves fit into three quarters of the whole quantity.",
]
PROMPT_TOKENS = (
    16,
    32,
)  # shortest / longest templated prompt of a batch (seed instructions: 14–41, median 23)

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float | None], torch.Tensor]


@dataclass(frozen=True)
class Batch:
    """One padded LM-objective batch: final states, head and next-token labels."""

    name: str
    weight: torch.Tensor  # [V, d] head
    hidden: torch.Tensor  # [B, T, d] final hidden states (after the final norm) of every position
    labels: torch.Tensor  # [B, T] next-token id at response-predicting positions, IGNORE_INDEX elsewhere
    softcap: float | None


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


def _capped(logits: torch.Tensor, softcap: float | None) -> torch.Tensor:
    return logits if softcap is None else torch.tanh(logits / softcap) * softcap


def full_batch_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """Upstream's LM loss: float32 logits of every position ``[B·T, V]``, CE on the labelled ones."""
    logits = _capped(F.linear(hidden, weight).float(), softcap)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def response_rows_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """Plain CE through the float32 logits ``[N, V]`` of the N response-predicting positions only."""
    keep = labels != IGNORE_INDEX
    logits = _capped(F.linear(hidden[keep], weight).float(), softcap)
    return F.cross_entropy(logits, labels[keep])


def fused_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """The training path: the response rows through ``linear_cross_entropy`` (as ``LMTail.token_losses``)."""
    keep = labels != IGNORE_INDEX
    return linear_cross_entropy(hidden[keep], weight, labels[keep], softcap).mean()


def two_pass_loss(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """The response rows through the previous two-pass chunked implementation."""
    keep = labels != IGNORE_INDEX
    rows = hidden[keep]
    chunk = vocab_chunk(rows.shape[0], weight.shape[0], rows.device)
    return _TwoPassLinearCrossEntropy.apply(rows, weight, labels[keep], softcap, chunk).mean()


def layout(n_tokens: int, response: int) -> torch.Tensor:
    """``[B, T]`` mask of the response-predicting positions of a padded batch holding ``n_tokens`` response tokens.

    Row i: a prompt of ``p_i`` tokens (spread over ``PROMPT_TOKENS``), ``r_i`` response tokens (``response``, the
    last row the remainder), then padding to the longest row plus one pad token (upstream's collator). Position t
    predicts token t + 1, so row i's response is predicted from positions ``p_i − 1 … p_i + r_i − 2``.
    """
    rows = -(-n_tokens // response)
    lengths = [min(response, n_tokens - i * response) for i in range(rows)]
    lo, hi = PROMPT_TOKENS
    prompts = [round(lo + (hi - lo) * i / max(rows - 1, 1)) for i in range(rows)]
    width = max(p + r for p, r in zip(prompts, lengths, strict=True)) + 1
    mask = torch.zeros(rows, width, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, lengths, strict=True)):
        mask[i, p - 1 : p - 1 + r] = True
    return mask


def make_batch(n_tokens: int, response: int, dtype: torch.dtype, synthetic: bool) -> Batch:
    """The benchmark batch in ``dtype``: a random head and states, or the embedded model's head and real states."""
    mask = layout(n_tokens, response)
    gen = torch.Generator().manual_seed(0)
    if synthetic:
        weight = torch.randn(262_144, 640, generator=gen) * 0.03
        hidden = torch.randn(*mask.shape, 640, generator=gen) * 3.0
        targets = torch.randint(0, weight.shape[0], mask.shape, generator=gen)
        name, softcap = "synthetic head", None
    else:
        tm = load_target_model(ModelSpec())
        states, ids = [], []
        with torch.no_grad():
            for text in TEXTS:
                enc = tm.tokenizer(text, return_tensors="pt")
                out = tm.model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
                states.append(out.last_hidden_state[0, :-1])  # after the final norm: the head's input
                ids.append(enc["input_ids"][0, 1:])
        pool_h, pool_ids = torch.cat(states), torch.cat(ids)
        pick = torch.arange(mask.numel()).reshape(mask.shape) % pool_h.shape[0]
        weight = tm.model.get_output_embeddings().weight.detach()
        hidden, targets = pool_h[pick], pool_ids[pick]
        name, softcap = tm.name, getattr(tm.model.config, "final_logit_softcapping", None)
    labels = targets.masked_fill(~mask, IGNORE_INDEX)
    return Batch(name, weight.to(dtype), hidden.to(dtype), labels, softcap)


def fwd_bwd(
    loss_fn: LossFn, batch: Batch, rows: slice = slice(None)
) -> tuple[tuple[float, float], float, torch.Tensor]:
    """Wall and CPU seconds of the loss's forward + backward, the loss, its gradient w.r.t. the final states."""
    h = batch.hidden[rows].detach().clone().requires_grad_(True)
    wall, cpu = time.perf_counter(), time.process_time()
    loss = loss_fn(h, batch.weight, batch.labels[rows], batch.softcap)
    loss.backward()
    return (time.perf_counter() - wall, time.process_time() - cpu), float(loss.detach()), h.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=768, help="response tokens per batch")
    parser.add_argument("--response", type=int, default=128, help="response tokens per row (output_length)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random 262,144 × 640 head (no model load)")
    parser.add_argument(
        "--previous", action="store_true", help="also time the previous two-pass implementation"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    batch = make_batch(args.tokens, args.response, getattr(torch, args.dtype), args.synthetic)
    b, t = batch.labels.shape
    n = int((batch.labels != IGNORE_INDEX).sum())
    chunk = vocab_chunk(n, batch.weight.shape[0], batch.hidden.device)
    print(
        f"head {batch.weight.shape[0]:,} × {batch.weight.shape[1]} ({batch.name}, {args.dtype}, softcap "
        f"{batch.softcap}); batch {b} × {t} = {b * t} positions, {n} response tokens; {chunk} vocabulary columns "
        f"per chunk; torch threads {torch.get_num_threads()}"
    )
    impls: dict[str, LossFn] = {
        "full": full_batch_loss,
        "rows": response_rows_loss,
        "fused": fused_loss,
    }
    if args.previous:
        impls["previous"] = two_pass_loss
    for fn in impls.values():  # warm-up (lazy initialisation, allocator) on one row
        fwd_bwd(fn, batch, slice(0, 1))
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in impls}
    results: dict[str, tuple[float, torch.Tensor]] = {}
    for _ in range(args.repeats):  # interleaved: the machine's load drifts
        for key, fn in impls.items():
            seconds, loss, grad = fwd_bwd(fn, batch)
            times[key].append(seconds)
            results[key] = (loss, grad)

    lo = {k: [min(x[i] for x in v) for i in (0, 1)] for k, v in times.items()}
    med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in times.items()}

    def ratio(a: str, b: str) -> str:
        return ", ".join(f"{what} {lo[a][i] / lo[b][i]:.2f} / {med[a][i] / med[b][i]:.2f}" for i, what in enumerate(("wall", "CPU")))  # fmt: skip

    labels = {
        "full": "plain, full batch (upstream: head on all positions)",
        "rows": "plain, response rows",
        "fused": "fused chunked",
        "previous": "previous two-pass chunked",
    }
    print(f"    seconds, min / median of {args.repeats}:")
    for key in impls:
        print(f"    {labels[key]}: wall {lo[key][0]:.2f} / {med[key][0]:.2f}, CPU {lo[key][1]:.2f} / {med[key][1]:.2f}")  # fmt: skip
    print("    ratios, min / median:")
    print(f"[1] fused ÷ plain full batch: {ratio('fused', 'full')} (target ≤ 0.5)")
    print(f"[2] fused ÷ plain response rows: {ratio('fused', 'rows')}")
    if args.previous:
        print(f"[3] fused ÷ previous: {ratio('fused', 'previous')}")
    ref_loss, ref_grad = results["full"]
    for key in (k for k in impls if k != "full"):
        loss, grad = results[key]
        rel = float((grad.float() - ref_grad.float()).norm() / ref_grad.float().norm())
        print(f"    check {key} vs full batch: |Δ loss| {abs(loss - ref_loss):.1e}, relative gradient difference {rel:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
