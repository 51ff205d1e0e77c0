"""SAE (filtered) (protocol §3.15): the worked example of §3.15 / §10.23 and training on a tiny SAE file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sae import SAESource, load_sae_params
from axbench_kedro.methods.sae_file import SAEParams
from axbench_kedro.methods.sae_filtered import input_score, lens_top_k, output_scores
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods

from .pipeline_inputs import write_sae
from .synthetic_data import make_concepts_meta, make_train_data

U = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-2.0, 0.0], [0.0, -2.0]])
M = torch.diag(torch.tensor([1.0, 0.5]))
TOY_SAE = SAEParams(
    W_enc=0.1 * torch.eye(2),
    b_enc=torch.zeros(2),
    threshold=torch.zeros(2),
    W_dec=torch.eye(2),
    b_dec=torch.zeros(2),
)


def test_worked_example_of_section_3_15() -> None:
    rows = TOY_SAE.W_dec  # A = (1, 0), B = (0, 1)
    lens = lens_top_k(rows, U, norm=lambda x: x, k=2)  # g = 0: N only rescales
    assert [sorted(t.tolist()) for t in lens] == [[0, 2], [1, 2]]
    h_n = torch.tensor([1.5, -0.5])
    out = output_scores(h_n, TOY_SAE, rows, lens, lambda s: s @ M.T @ U.T, amplification=10.0)
    assert float(out["added"]) == pytest.approx(1.5)  # 10 · max_j a_j = 10 · 0.15
    assert out["best_lens_id"].tolist() == [0, 2] and out["rank"].tolist() == [0, 1]
    assert out["prob"][1].item() == pytest.approx(0.241389, abs=1e-6)
    np.testing.assert_allclose(out["output_score"].numpy(), [0.957515, 0.193111], atol=1e-6)
    # B's full distribution, as in the protocol
    p_b = torch.softmax(torch.tensor([1.5, 1.0]) @ M.T @ U.T, -1)
    np.testing.assert_allclose(p_b.numpy(), [0.656164, 0.088802, 0.241389, 0.001626, 0.012018], atol=1e-6)
    # input scores from 10 records each (diagnostic)
    assert input_score([0, 0, 2, 4, 1, 3, 0, 4, 1, 3], lens[0].tolist()) == pytest.approx(0.4)
    assert input_score([1, 2, 1, 1, 2, 1, 0, 1, 4, 1], lens[1].tolist()) == pytest.approx(0.8)
    assert input_score([0] * 9, [0]) is None
    # the filter: τ = 0.01 keeps A and B, τ = 0.5 keeps A only
    scores = out["output_score"].tolist()
    assert [s >= 0.01 for s in scores] == [True, True] and [s >= 0.5 for s in scores] == [True, False]


def test_registry_flags() -> None:
    m = get_method("SAE-filtered")
    assert m.steers and not m.factor_free and m.magnitude_source == "sae_table"
    assert m.detection_kind == "activation" and {"sae", "lm_tail"} <= m.requires
    hp = m.params(None)
    assert (hp.threshold, hp.lens_top_k, hp.amplification, hp.neutral_prompt) == (
        0.01, 20, 10.0, "From my experience,",
    )  # fmt: skip
    assert m.unavailable_reason(sae=SAESource(None), concepts=[]) == SAESource(None).missing_reason
    assert (
        not m.detection_reported and m.subset_baseline == "SAE"
    )  # detection = SAE's; SAE beside it on the subset


def _whole_model_score(tm, sae, feature: int, layer: int, hp) -> float:
    """S_out by a full forward pass of the model with a hook on block ``layer`` (independent of LMTail)."""
    tok = tm.tokenizer
    ids = torch.tensor([[tok.bos_token_id, *tok(hp.neutral_prompt, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        h = tm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1][0, -1]
        add = hp.amplification * sae.encode(h[None]).max() * sae.W_dec[feature]

        def hook(_mod, _inp, out):
            hs = out[0] if isinstance(out, tuple) else out
            hs = hs.clone()
            hs[0, -1] += add
            return (hs, *out[1:]) if isinstance(out, tuple) else hs

        handle = tm.model.model.layers[layer].register_forward_hook(hook)
        try:
            logits = tm.model(input_ids=ids).logits[0, -1].float()
        finally:
            handle.remove()
        norm = tm.model.model.norm
        lens = (
            (tm.model.get_output_embeddings().weight @ norm(sae.W_dec[feature])).topk(hp.lens_top_k).indices
        )
    p = torch.softmax(logits, -1)
    best = p[lens].argmax()
    prob = p[lens][best]
    rank = int((p > prob).sum())
    return float((1 - rank / p.shape[0]) * prob)


def test_training_on_a_tiny_sae_file(tm, tmp_path) -> None:
    path = write_sae(tmp_path / "params.npz", d=tm.d_model, width=32)
    meta = make_concepts_meta(2)
    meta["sae_id"] = [3, 7]
    concepts = build_concepts(make_train_data(n_concepts=2, n_pos=4, n_pool=4), meta)
    m = get_method("SAE-filtered")
    hp = m.params({"threshold": 0.0})
    arts, _ = train_methods(
        tm, concepts, [(m, hp), (get_method("SAE"), None)], TrainOptions(setting="t", layer=1, seed=42),
        sae=SAESource(path),
    )  # fmt: skip
    art, sae_art = arts["SAE-filtered"], arts["SAE"]
    assert art.ok and art.meta["sae_ids"] == [3, 7]
    for key in ("W_enc", "b_enc", "threshold", "W_dec"):
        assert torch.equal(art.tensors[key], sae_art.tensors[key])  # detects and steers exactly like SAE
    sae = load_sae_params(path)
    rows = art.meta["sae_output_scores"]
    for row, feature in zip(rows, (3, 7), strict=True):
        assert (
            row["sae_id"] == feature and len(row["lens_ids"]) == 20 and row["best_lens_id"] in row["lens_ids"]
        )
        assert row["output_score"] == pytest.approx(_whole_model_score(tm, sae, feature, 1, hp), rel=1e-4)
        assert 0 < row["output_score"] <= 1 and row["kept"] and row["input_score"] is None
    assert art.meta["kept_concept_ids"] == [0, 1]
    # a threshold above every score keeps nothing (rows stay: detection and steering need them)
    high = m.params({"threshold": 1.0})
    arts2, _ = train_methods(
        tm, concepts, [(m, high)], TrainOptions(setting="t", layer=1, seed=42), sae=SAESource(path)
    )
    assert arts2["SAE-filtered"].meta["kept_concept_ids"] == [] and arts2["SAE-filtered"].concept_ids == [
        0,
        1,
    ]


def test_skipped_without_a_sae_file(tm) -> None:
    meta = make_concepts_meta(1)
    meta["sae_id"] = [3]
    concepts = build_concepts(make_train_data(n_concepts=1, n_pos=2, n_pool=2), meta)
    arts, _ = train_methods(
        tm, concepts, [(get_method("SAE-filtered"), None)], TrainOptions(setting="t", layer=1, seed=42),
        sae=SAESource(None),
    )  # fmt: skip
    art = arts["SAE-filtered"]
    assert not art.ok and art.skip_reason == SAESource(None).missing_reason


def test_steering_covers_the_kept_concepts_only(tm) -> None:
    import pandas as pd

    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.methods.base import MethodArtifact
    from axbench_kedro.steering.plans import plan_units, steering_plans

    d = tm.d_model
    tensors = {
        "W_enc": torch.ones(d, 3), "b_enc": torch.zeros(3), "threshold": torch.zeros(3),
        "W_dec": torch.eye(3, d), "b_dec": torch.zeros(d), "sae_id": torch.tensor([3, 5, 7]),
    }  # fmt: skip
    meta = {"status": "ok", "concept_ids": [0, 1, 2], "sae_ids": [3, 5, 7], "kept_concept_ids": [1]}
    art = MethodArtifact("SAE-filtered", tensors, meta)
    mags = pd.DataFrame(
        {"concept_id": [0, 1, 2], "method": "SAE-filtered", "magnitude_base": [4.0, 5.0, 6.0]}
    )
    params = SteeringEvalParams.model_validate({"factors": [1.0]})
    (plan,) = steering_plans(
        ["SAE-filtered"], {"SAE-filtered": art}, mags, params, layer=1, tm=tm, concept_ids=[0, 1, 2]
    )
    assert plan.covered == frozenset({1}) and plan.rows == {1: 1} and plan.magnitudes == {1: 5.0}
    prompts = pd.DataFrame(
        {
            "dataset_name": "AlpacaEval", "concept_id": [0, 1, 2], "input_id": 0, "input": "hi",
            "steered_input": "hi", "factor": 1.0,
        }
    )  # fmt: skip
    units, rows = plan_units(plan, prompts, replicates=1)
    assert set(units["concept_id"]) == {1} and set(rows["concept_id"]) == {1}
