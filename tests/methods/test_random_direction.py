"""The Random control: a seeded random unit direction per concept, at chance level for detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods import MethodArtifact, default_methods, get_method
from axbench_kedro.methods.activations import ConceptActivations, RowActivations
from axbench_kedro.methods.base import ConceptData, ConceptInputs
from axbench_kedro.methods.random_direction import random_direction
from axbench_kedro.methods.registry import method_role
from axbench_kedro.methods.scoring import EncoderBank, _activate
from axbench_kedro.methods.trainer import TrainOptions, _Resources, build_concepts, derive_seed, train_methods
from axbench_kedro.metrics.detection import roc_auc
from axbench_kedro.steering.plans import magnitudes_for
from fixtures.tiny_models import make_tiny_target_model

from .synthetic_data import make_concepts_meta, make_train_data


def _data(cid: int = 0, pos: tuple[str, ...] = ("a", "b"), neg: tuple[str, ...] = ("n",)) -> ConceptData:
    return ConceptData(cid, f"concept {cid}", "text", -1, pos, pos, neg, neg)


def test_vector_is_reproducible_unit_norm_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    w = random_direction(seed=123, d=64)
    assert torch.equal(torch.get_rng_state(), state)  # a private generator, never the global one
    assert w.shape == (64,) and w.dtype == torch.float32
    assert float(w.norm()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(w, random_direction(seed=123, d=64))
    assert not torch.allclose(w, random_direction(seed=124, d=64))
    with pytest.raises(AxbenchDataError, match="hidden size"):
        random_direction(seed=1, d=0)


def test_capabilities_and_role() -> None:
    m = get_method("Random")
    assert m.requires == frozenset()  # no forward pass, no rows
    assert m.detects and m.detection_kind == "activation" and m.token_activation == "linear"
    assert m.steers and not m.factor_free and m.magnitude_source == "latent_eval"
    assert m.role == "control" and method_role("Random") == "control"
    assert method_role("DiffMean") == "method" and method_role("NotInstalled") == "method"
    assert default_methods()[-1] == "Random"  # after the paper's built-ins (no plugin installed here)


def test_train_concept_depends_on_seed_and_d_only() -> None:
    m = get_method("Random")
    a = m.train_concept(ConceptInputs(data=_data(), seed=7, d_model=16), m.params())
    b = m.train_concept(
        ConceptInputs(data=_data(pos=("x", "y", "z"), neg=("q", "r")), seed=7, d_model=16), m.params()
    )
    assert torch.equal(a["weight"], b["weight"]) and torch.equal(a["weight"], random_direction(7, 16))
    assert float(a["bias"]) == 0.0
    with pytest.raises(AxbenchDataError, match="d_model"):
        m.train_concept(ConceptInputs(data=_data(), seed=7), m.params())


def test_trainer_rows_come_from_run_seed_and_concept_id_without_forward(monkeypatch) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=2, hidden=32, seed=5)
    concepts = build_concepts(make_train_data(n_concepts=3, n_pos=2, n_pool=2), make_concepts_meta(3))

    def no_forward(*args, **kwargs):
        raise AssertionError("Random must not run the model")

    monkeypatch.setattr(_Resources, "prefetch", no_forward)
    monkeypatch.setattr(_Resources, "_acts", no_forward)

    def train(seed: int, data=concepts) -> MethodArtifact:
        arts, _ = train_methods(tm, data, [(get_method("Random"), None)], TrainOptions("t", 1, seed))
        return arts["Random"]

    art = train(42)
    w = art.tensors["weight"]
    assert w.shape == (3, 32) and art.tensors["bias"].shape == (3,)
    for row, cid in enumerate(art.concept_ids):
        assert torch.equal(w[row], random_direction(derive_seed(42, cid, "Random"), 32))
    assert torch.allclose(w.norm(dim=1), torch.ones(3), atol=1e-6)
    assert float((w[0] @ w[1]).abs()) < 0.99  # different concepts, different directions
    assert torch.equal(train(42).tensors["weight"], w)  # reproducible
    assert not torch.allclose(train(43).tensors["weight"], w)  # follows the run seed
    other = build_concepts(make_train_data(n_concepts=3, n_pos=3, n_pool=4, seed=9), make_concepts_meta(3))
    assert torch.equal(train(42, other).tensors["weight"], w)  # independent of the training rows


def test_detection_score_is_h_dot_v_and_steering_vector_is_v() -> None:
    m = get_method("Random")
    w = torch.stack([random_direction(1, 3), random_direction(2, 3)])
    art = MethodArtifact("Random", {"weight": w, "bias": torch.zeros(2)}, {"concept_ids": [4, 9]})
    enc = m.detection_encoder(art)
    h = torch.tensor([[1.0, 0.0, 0.0], [0.5, -2.0, 1.0]])
    assert torch.allclose(enc.apply(h @ enc.weight.T + enc.bias), h @ w.T)
    assert torch.equal(m.steering_vectors(art), w)
    # steering magnitude m from latent_eval, as for the other rank-1 methods (max_act, or 50 when <= 0)
    table = pd.DataFrame(
        {"concept_id": [4, 9], "method": "Random", "max_act": [1.5, -0.2], "magnitude_base": [1.5, 50.0]}
    )
    assert magnitudes_for(m, table, [4, 9]) == {4: 1.5, 9: 50.0}


# ---- chance level vs a working method ---------------------------------------------------------------------------
D, N_CONCEPTS, N_ROWS, N_TOKENS, SHIFT = 32, 400, 8, 4, 3.0


def _tokens(gen: torch.Generator, means: torch.Tensor) -> torch.Tensor:
    """``[concepts, rows, tokens, d]`` activations ~ N(mean of the concept, I)."""
    return torch.randn(N_CONCEPTS, N_ROWS, N_TOKENS, D, generator=gen) + means[:, None, None, :]


def _packed(rows: torch.Tensor) -> RowActivations:
    """``[rows, tokens, d]`` as packed row activations (no chat prefix: P = 0)."""
    n_rows, n_tokens, _ = rows.shape
    return RowActivations(
        rows.reshape(-1, D),
        torch.arange(n_rows).repeat_interleave(n_tokens),
        torch.arange(n_tokens).repeat(n_rows),
        n_rows,
    )


def test_random_is_at_chance_while_diffmean_separates() -> None:
    """Separable synthetic activations (positives shifted along a concept direction), scored like latent_eval (one
    stacked encoder bank, max over tokens): DiffMean reaches ROC AUC ~1, Random ~0.5 on average over concepts."""
    gen = torch.Generator().manual_seed(0)
    mu = SHIFT * torch.nn.functional.normalize(torch.randn(N_CONCEPTS, D, generator=gen), dim=1)
    zero = torch.zeros_like(mu)
    train_pos, train_neg, eval_pos, eval_neg = (_tokens(gen, m) for m in (mu, zero, mu, zero))
    methods = {name: get_method(name) for name in ("DiffMean", "Random")}
    concepts = [_data(c) for c in range(N_CONCEPTS)]
    arts = {}
    for name, m in methods.items():
        rows = []
        for c, data in enumerate(concepts):
            acts = ConceptActivations.from_parts(_packed(train_pos[c]), _packed(train_neg[c]), 0)
            item = ConceptInputs(data=data, seed=derive_seed(42, c, name), d_model=D, activations=acts)
            rows.append(m.train_concept(item, m.params()))
        tensors, extra = m.stack(rows, concepts)
        arts[name] = MethodArtifact(name, tensors, {"concept_ids": list(range(N_CONCEPTS)), **extra})
    bank = EncoderBank.from_artifacts(arts)
    cols = bank.columns_for(list(range(N_CONCEPTS)))  # [concepts, methods]
    h = torch.cat([eval_pos, eval_neg], dim=1)  # [concepts, 2 * rows, tokens, d]
    pre = torch.einsum("crtd,cmd->crtm", h, bank.weight[cols]) + bank.bias[cols][:, None, None, :]
    max_act = _activate(pre, bank.gated[cols][:, None, None, :], bank.threshold[cols][:, None, None, :])
    max_act = max_act.max(dim=2).values.numpy()  # [concepts, 2 * rows, methods]
    labels = np.r_[np.ones(N_ROWS), np.zeros(N_ROWS)]
    aucs = {
        name: np.array([roc_auc(labels, max_act[c, :, j]) for c in range(N_CONCEPTS)])
        for j, name in enumerate(bank.methods)
    }
    assert aucs["DiffMean"].mean() > 0.97
    assert abs(aucs["Random"].mean() - 0.5) < 0.05  # 400 concepts: the standard error is ~0.012
    assert aucs["Random"].std() > 0.05  # per concept a coin flip, not a constant
