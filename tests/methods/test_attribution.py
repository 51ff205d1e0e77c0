"""IG and IxG (protocol §3.11): attribution maths on toys, the frozen-LM classifier and gradient scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.chat import chat_prefix_length, format_binary, format_detect
from axbench_kedro.methods.attribution import (
    head_probability,
    input_x_gradient,
    integrated_gradients,
)
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, train_methods

LAYER = 1
FAST = {"epochs": 3, "batch_size": 4, "gradient_accumulation": 2}


def test_registry_flags() -> None:
    for name in ("IG", "IxG"):
        m = get_method(name)
        assert m.detects and m.detection_kind == "gradient" and not m.steers
        assert {"activations", "lm_tail"} <= m.requires
    hp = get_method("IG").params(None)
    assert (hp.lr, hp.weight_decay, hp.batch_size, hp.gradient_accumulation, hp.epochs, hp.steps) == (
        4e-4, 2e-4, 18, 2, 24, 50,
    )  # fmt: skip


def test_ig_completeness_on_a_linear_toy() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, 5, 3, generator=gen)  # two outputs, f_r(X) = Σ w_r ⊙ X + c_r

    def fn(xs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("std,rtd->sr", xs, w) + torch.tensor([0.5, -1.0])

    x, b = torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)
    attr = integrated_gradients(fn, x, b, steps=50, chunk=7)
    expected = fn(x[None])[0] - fn(b.expand(5, 3)[None])[0]
    assert attr.shape == (2, 5, 3)
    torch.testing.assert_close(attr.sum((1, 2)), expected, atol=1e-5, rtol=1e-5)
    # linear fn: the gradient is w everywhere, so each attribution is (x − b) ⊙ w exactly
    torch.testing.assert_close(attr, (x - b)[None] * w, atol=1e-6, rtol=1e-6)


def test_ig_completeness_on_a_quadratic_toy_within_the_riemann_error() -> None:
    # f = Σ X²: the left Riemann sum with α = k/S misses exactly Σ (x − b)² / S of f(x) − f(b)
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    b = torch.tensor([0.2, 0.1])
    attr = integrated_gradients(lambda xs: (xs**2).sum((1, 2))[:, None], x, b, steps=50)
    gap = float((x**2).sum() - (b.expand(2, 2) ** 2).sum())
    miss = float(((x - b) ** 2).sum()) / 50
    assert float(attr.sum()) == pytest.approx(gap - miss, abs=1e-5)


def test_input_x_gradient_is_input_times_gradient() -> None:
    x = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    attr = input_x_gradient(lambda xs: torch.stack([(xs**2).sum((1, 2)), xs[:, 0, 1] * 4], dim=1), x)
    torch.testing.assert_close(attr[0], x * 2 * x)  # ∂Σx²/∂x = 2x
    expected = torch.zeros_like(x)
    expected[0, 1] = -2.0 * 4
    torch.testing.assert_close(attr[1], expected)


def _train(tm, concepts, names, hp):
    return train_methods(
        tm,
        concepts,
        [
            (m, m.params({k: v for k, v in hp.items() if k in m.Params.model_fields}))
            for m in map(get_method, names)
        ],
        TrainOptions(setting="t", layer=LAYER, seed=42),
    )[0]


def test_classifier_trains_on_the_last_token_state_of_the_full_model(tm, concepts) -> None:
    arts = _train(tm, concepts, ["IG", "IxG"], dict(FAST, epochs=40, lr=1e-2))
    ig, ixg = arts["IG"], arts["IxG"]
    d = tm.d_model
    assert ig.ok and ig.tensors["W1"].shape == (2, d // 2, d) and ig.tensors["W2"].shape == (2, 2, d // 2)
    assert ig.tensors["baseline"].shape == (2, d) and torch.equal(
        ig.tensors["baseline"][0], ig.tensors["baseline"][1]
    )
    assert "baseline" not in ixg.tensors
    # the baseline is the mean embedding of 1000 seeded random vocabulary ids
    emb = tm.model.get_input_embeddings()
    ids = torch.randint(emb.weight.shape[0], (1000,), generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(ig.tensors["baseline"][0], emb(ids).float().mean(0))
    # the head fits the 12 training rows: it reads the whole model's final state at each row's last token
    for i, c in enumerate(concepts):
        texts = [format_binary(tm.tokenizer, a, b) for a, b in zip(c.inputs, c.outputs, strict=True)]
        with torch.no_grad():
            final = []
            for t in texts:
                out = tm.model(**encode(tm, [t]), output_hidden_states=True)
                final.append(out.hidden_states[-1][0, -1])
            head = {k: v[i : i + 1] for k, v in ig.tensors.items() if k in ("W1", "b1", "W2", "b2")}
            p = head_probability(head, torch.stack(final))[:, 0]
        assert ((p >= 0.5).long().numpy() == c.labels).mean() == pytest.approx(ig.meta["train_accuracy"][i])
        assert ig.meta["train_accuracy"][i] >= 0.75
        losses = ig.meta["train_loss"][i]
        assert len(losses) == 40 * 2  # 3 micro-batches per epoch, a step every 2 and at the epoch's end
        assert np.mean(losses[-8:]) < np.mean(losses[:8])


def test_gradient_scores_match_a_direct_computation(tm, concepts) -> None:
    arts = _train(tm, concepts, ["IG", "IxG"], dict(FAST, steps=8, step_chunk=3))
    text = format_detect(tm.tokenizer, concepts[0].pos_inputs[0], concepts[0].pos_outputs[0])
    p = chat_prefix_length(tm.tokenizer)
    enc = encode(tm, [text])
    with torch.no_grad():
        h = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], LAYER)[0]
    tail = LMTail(tm, LAYER)

    def prob(name: str, row: int, xs: torch.Tensor) -> torch.Tensor:
        t = arts[name].tensors
        head = {k: t[k][row : row + 1] for k in ("W1", "b1", "W2", "b2")}
        final = tail.final_hidden(xs, torch.ones(xs.shape[:2], dtype=torch.long))[:, -1]
        return head_probability(head, final)[:, 0]

    for row in (0, 1):
        # IxG: Σ_d |h ⊙ ∂p/∂h|, max over positions ≥ P
        x = h.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(prob("IxG", row, x[None]).sum(), x)
        ixg = float((x.detach() * g).abs().sum(-1)[p:].max())
        # IG with 8 steps, α = k/8, by hand
        b = arts["IG"].tensors["baseline"][0]
        gsum = torch.zeros_like(h)
        for k in range(8):
            xk = (b + k / 8 * (h - b)).requires_grad_(True)
            gsum += torch.autograd.grad(prob("IG", row, xk[None]).sum(), xk)[0]
        ig = float(((h - b) * gsum / 8).abs().sum(-1)[p:].max())
        for name, want in (("IxG", ixg), ("IG", ig)):
            m = get_method(name)
            own = m.score_model_texts(
                arts[name], [text], torch.tensor([row]), tm=tm, layer=LAYER, max_length=1024
            )
            full = m.score_model_texts(arts[name], [text, text], tm=tm, layer=LAYER, max_length=1024)
            assert own.shape == (1,) and full.shape == (2, 2)
            assert own[0] == pytest.approx(want, rel=1e-4, abs=1e-9)
            np.testing.assert_allclose(full[:, row], [want, want], rtol=1e-4, atol=1e-9)
            assert want > 0
