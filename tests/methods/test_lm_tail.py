"""The fused chunked LM loss of the tail against plain full-logits ``F.cross_entropy`` (loss and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axbench_kedro.lm.chat import chat_prefix_length, format_prompt
from axbench_kedro.methods.activations import LMBatch, compute_lm_rows
from axbench_kedro.methods.lm_tail import IGNORE_INDEX, LMTail, linear_cross_entropy
from fixtures.tiny_models import make_tiny_target_model

LAYER = 1
# (loss, hidden-state gradient, steering-parameter gradient) relative tolerances
TOL = {torch.float32: (1e-6, 1e-5, 1e-5), torch.bfloat16: (1e-3, 1e-2, 2e-2)}


@pytest.fixture(scope="module", params=["gemma3", "gemma2"])
def tiny(request):
    tm = make_tiny_target_model(request.param, n_layers=3, hidden=64, seed=4)
    p = chat_prefix_length(tm.tokenizer)
    prompts = [
        format_prompt(tm.tokenizer, q) for q in ("tell me about the car", "hi", "what is a python loop ?")
    ]
    outputs = ["the rental car is good and the hotel is small .", "yo", "a loop runs over a list of values ."]
    rows = compute_lm_rows(tm, prompts, outputs, LAYER, p, batch_size=3)
    return tm, rows.batch([0, 1, 2])


def _labels(batch: LMBatch) -> torch.Tensor:
    """Next-token ids at the response-predicting positions, ``IGNORE_INDEX`` everywhere else (upstream's layout)."""
    labels = torch.full_like(batch.input_ids, IGNORE_INDEX)
    labels[:, :-1] = batch.input_ids[:, 1:]
    return labels.masked_fill(~batch.target, IGNORE_INDEX)


def _run(tail: LMTail, batch: LMBatch, how: str, chunk: int | None) -> tuple[torch.Tensor, ...]:
    """Mean response-token loss and its gradients w.r.t. the final states and a steering vector."""
    d = batch.hidden.shape[-1]
    delta = nn.Parameter(torch.linspace(-0.5, 0.5, d))
    hidden = batch.hidden.float() + delta * batch.intervene[..., None]
    final = tail.final_hidden(hidden, batch.attention_mask)
    final.retain_grad()
    labels = _labels(batch).reshape(-1)
    flat = final.reshape(-1, d)
    if how == "reference":  # the full [B·T, vocab] logits
        per_row = F.cross_entropy(tail.logits(flat), labels, reduction="none")
        loss = F.cross_entropy(tail.logits(flat), labels)
    elif how == "fused":
        per_row = linear_cross_entropy(flat, tail.head_weight, labels, tail.softcap, chunk)
        loss = per_row.sum() / (labels != IGNORE_INDEX).sum()
    else:  # what SSV / ReFT-r1 call
        per_row = tail.token_losses(hidden, batch)[0]
        loss = per_row.mean()
    loss.backward()
    final_grad = final.grad.float() if final.grad is not None else None  # token_losses runs its own tail
    return loss.detach(), per_row.detach(), final_grad, delta.grad


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "chunk", [None, 37]
)  # 37 does not divide the vocabulary (several chunks, a ragged one)
def test_fused_loss_and_gradients_equal_full_logits_cross_entropy(tiny, dtype, chunk) -> None:
    tm, batch = tiny
    tail = LMTail(tm, LAYER, dtype)
    assert tail.softcap == (30.0 if "gemma2" in tm.name else None)
    vocab = tail.head_weight.shape[0]
    assert chunk is None or vocab % chunk
    labels = _labels(batch)
    assert (labels == IGNORE_INDEX).any() and (labels != IGNORE_INDEX).any()
    ref_loss, ref_rows, ref_final, ref_delta = _run(tail, batch, "reference", chunk)
    loss, rows, final_grad, delta_grad = _run(tail, batch, "fused", chunk)
    tol_loss, tol_hidden, tol_param = TOL[dtype]
    assert float(loss) == pytest.approx(float(ref_loss), rel=tol_loss)
    assert torch.allclose(rows, ref_rows, rtol=tol_loss * 10, atol=tol_loss * 10)
    assert torch.all(rows[labels.reshape(-1) == IGNORE_INDEX] == 0)
    masked = (labels == IGNORE_INDEX).reshape(-1)
    assert torch.all(
        final_grad.reshape(-1, final_grad.shape[-1])[masked] == 0
    )  # no gradient from ignored rows
    assert _rel(final_grad, ref_final) < tol_hidden
    assert _rel(delta_grad, ref_delta) < tol_param
    # the training path (response positions selected first, default chunk) gives the same loss and gradient
    tl_loss, _, _, tl_delta = _run(tail, batch, "token_losses", chunk)
    assert float(tl_loss) == pytest.approx(float(ref_loss), rel=tol_loss)
    assert _rel(tl_delta, ref_delta) < tol_param


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_online_softmax_handles_a_growing_maximum(softcap) -> None:
    """Rows whose largest logits sit in the last chunks (every chunk rescales the sums) match float64 CE."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(1000, 16, generator=gen)
    weight = weight[weight.norm(dim=1).argsort()]  # growing norms: the running maximum grows chunk by chunk
    hidden = (torch.randn(7, 16, generator=gen) * 5).requires_grad_(True)
    labels = torch.tensor([0, 999, 500, 3, IGNORE_INDEX, 640, 64])
    ce = linear_cross_entropy(hidden, weight, labels, softcap, chunk=64)
    ce.backward(torch.arange(1.0, 8.0))  # per-row weights reach the gradient
    h64 = hidden.detach().double().requires_grad_(True)
    logits = h64 @ weight.double().T
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    ref = F.cross_entropy(logits, labels, reduction="none")
    ref.backward(torch.arange(1.0, 8.0, dtype=torch.float64))
    assert torch.isfinite(ce).all()
    assert torch.allclose(ce.double(), ref, rtol=1e-5, atol=1e-4)
    assert torch.allclose(hidden.grad.double(), h64.grad, rtol=1e-4, atol=1e-5)


def test_loss_without_gradient_and_argument_checks() -> None:
    gen = torch.Generator().manual_seed(1)
    weight, hidden = torch.randn(300, 8, generator=gen), torch.randn(4, 8, generator=gen)
    labels = torch.tensor([1, 299, IGNORE_INDEX, 7])
    ref = F.cross_entropy(hidden @ weight.T, labels, reduction="none")
    with torch.no_grad():
        assert torch.allclose(linear_cross_entropy(hidden, weight, labels, chunk=100), ref, atol=1e-5)
    assert torch.equal(linear_cross_entropy(hidden, weight, torch.full((4,), IGNORE_INDEX)), torch.zeros(4))
    with pytest.raises(ValueError, match="frozen"):
        linear_cross_entropy(hidden, weight.requires_grad_(True), labels)
    with pytest.raises(IndexError, match="labels"):
        linear_cross_entropy(hidden, weight.detach(), torch.tensor([0, 1, 2, 300]))


@pytest.mark.parametrize("softcap", [None, 30.0])
def test_chunk_maxima_below_and_above_the_rescale_margin_match_float64(softcap) -> None:
    """Logits climbing chunk by chunk slower and much faster than the rescale margin: float64 CE and gradient.

    Column j's logit is ``scale_row · v_j`` with ``v`` rising ~2.5 per 64-column chunk: the first row's maxima stay
    within the margin of its first chunk (never rescaled, sums of terms above 1), the last row's jump far past it
    every chunk (logits up to ~1,600), the others cross it now and then. Losses are as close to float64 as plain
    float32 logits get (the last row's CE of ~1,600-sized logits has float32 rounding of ~1e-4).
    """
    gen = torch.Generator().manual_seed(2)
    vocab, d = 1000, 4
    v = torch.arange(vocab) / 25.0 + torch.rand(vocab, generator=gen)
    weight = torch.cat([v[:, None], torch.randn(vocab, d - 1, generator=gen) * 0.1], dim=1)
    scales = torch.tensor([0.3, 1.0, 3.0, 12.0, 40.0])
    hidden = torch.cat([scales[:, None], torch.randn(5, d - 1, generator=gen)], dim=1).requires_grad_(True)
    labels = torch.tensor([3, 999, 640, 128, 998])
    rows_weight = torch.arange(1.0, 6.0)
    ce = linear_cross_entropy(hidden, weight, labels, softcap, chunk=64)
    ce.backward(rows_weight)

    def capped(logits: torch.Tensor) -> torch.Tensor:
        return logits if softcap is None else torch.tanh(logits / softcap) * softcap

    h64 = hidden.detach().double().requires_grad_(True)
    logits = capped(h64 @ weight.double().T)
    ref = F.cross_entropy(logits, labels, reduction="none")
    ref.backward(rows_weight.double())
    plain32 = F.cross_entropy(capped(hidden.detach() @ weight.T), labels, reduction="none")
    if softcap is None:
        growth = (logits.amax(dim=1) - logits[:, :64].amax(dim=1)).detach()
        assert float(growth[0]) < 20 < float(growth[-1]) / 10  # below / far above the margin
    assert torch.isfinite(ce).all() and torch.isfinite(hidden.grad).all()
    tol = torch.clamp(2 * (plain32.double() - ref.detach()).abs(), min=1e-5)
    assert torch.all((ce.double() - ref.detach()).abs() <= tol)
    rel = (hidden.grad.double() - h64.grad).norm(dim=1) / h64.grad.norm(dim=1)
    assert torch.all(rel < 1e-4)
