"""GemmaScope SAE loading, JumpReLU, SAE and SAE-A (AUROC feature selection) on a synthetic params.npz."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from axbench_kedro.detection.sae_max_act import read_sae_max_act
from axbench_kedro.detection.summary import magnitude_table
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.methods.activations import ConceptActivations, RowActivations
from axbench_kedro.methods.base import ConceptData, ConceptInputs, MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sae import (
    SAESource,
    feature_aurocs,
    jumprelu,
    load_sae_params,
    row_max_activations,
)

D, WIDTH, PLANTED = 8, 16, 11


def _write_sae(path, d: int = D, width: int = WIDTH, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w_enc = rng.normal(0, 0.05, (d, width)).astype(np.float32)
    w_enc[:, PLANTED] = 0.0
    w_enc[0, PLANTED] = 1.0  # feature PLANTED reads coordinate 0, the concept's coordinate below
    np.savez(
        path,
        W_enc=w_enc,
        b_enc=np.zeros(width, np.float32),
        threshold=np.full(width, 0.5, np.float32),
        W_dec=rng.normal(0, 1, (width, d)).astype(np.float32),
        b_dec=rng.normal(0, 1, d).astype(np.float32),
    )


def _concept_acts(seed: int = 0) -> ConceptActivations:
    """4 positive rows whose tokens light up coordinate 0 at one position; 4 negatives that never do."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for label in (1, 0):
        tokens, row, pos = [], [], []
        for r in range(4):
            x = torch.randn(6, D, generator=gen) * 0.1
            x[0] += 5.0  # BOS-like outlier at position 0: below P, must not count
            if label:
                x[3, 0] = 2.0 + r
            tokens.append(x)
            row += [r] * 6
            pos += list(range(6))
        parts.append(
            RowActivations(torch.cat(tokens), torch.tensor(row), torch.tensor(pos), 4, [[0] * 6] * 4)
        )
    return ConceptActivations.from_parts(parts[0], parts[1], prefix_length=2)


def _data(sae_id: int = 3, concept_id: int = 0) -> ConceptData:
    return ConceptData(concept_id, "c", "text", sae_id, ("a",) * 4, ("b",) * 4, ("n",) * 4, ("m",) * 4)


def test_jumprelu_worked_example() -> None:
    out = jumprelu(torch.tensor([0.5, 2.0, -1.0]), torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(out, torch.tensor([0.0, 2.0, 0.0]))


def test_sae_a_picks_the_planted_feature(tmp_path) -> None:
    path = tmp_path / "params.npz"
    _write_sae(path)
    sae = load_sae_params(path, d_model=D)
    method = get_method("SAE-A")
    out = method.train_concept(
        ConceptInputs(data=_data(), seed=0, activations=_concept_acts(), sae=sae), method.params()
    )
    assert int(out["sae_id"]) == PLANTED
    assert float(out["auroc"]) == pytest.approx(1.0)
    assert torch.equal(out["W_dec"], sae.W_dec[PLANTED])
    assert torch.equal(out["W_enc"], sae.W_enc[:, PLANTED])


def test_sae_uses_the_concept_feature_and_stacks_a_pruned_sae(tmp_path) -> None:
    path = tmp_path / "params.npz"
    _write_sae(path)
    sae = load_sae_params(path, d_model=D)
    method = get_method("SAE")
    rows = [method.train_concept(ConceptInputs(data=_data(i), seed=0, sae=sae), None) for i in (3, 5)]
    tensors, meta = method.stack(rows, [_data(3), _data(5)])
    assert (
        tensors["W_enc"].shape == (D, 2)
        and tensors["W_dec"].shape == (2, D)
        and tensors["b_dec"].shape == (D,)
    )
    assert meta["sae_ids"] == [3, 5]
    art = MethodArtifact("SAE", tensors, {"concept_ids": [0, 1]})
    enc = method.detection_encoder(art)
    x = torch.randn(4, D)
    expected = jumprelu(x @ sae.W_enc[:, [3, 5]] + sae.b_enc[[3, 5]], sae.threshold[[3, 5]])
    assert torch.allclose(enc.apply(x @ enc.weight.T + enc.bias), expected)
    assert torch.equal(method.steering_vectors(art), sae.W_dec[[3, 5]])
    with pytest.raises(AxbenchDataError, match="outside"):
        method.train_concept(ConceptInputs(data=_data(WIDTH + 3), seed=0, sae=sae), None)


def test_shape_and_width_mismatch_are_clear_errors(tmp_path) -> None:
    path = tmp_path / "params.npz"
    _write_sae(path)
    with pytest.raises(AxbenchConfigError, match="hidden size d=8 .* 64"):
        load_sae_params(path, d_model=64)
    with pytest.raises(AxbenchConfigError, match="width 16 but training.sae_width is 32"):
        load_sae_params(path, d_model=D, expected_width=32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, W_enc=np.zeros((D, WIDTH)), b_enc=np.zeros(WIDTH), threshold=np.zeros(WIDTH),
             W_dec=np.zeros((WIDTH + 1, D)), b_dec=np.zeros(D))  # fmt: skip
    with pytest.raises(AxbenchConfigError, match="W_dec of shape"):
        load_sae_params(bad)
    with pytest.raises(AxbenchConfigError, match="does not exist"):
        load_sae_params(tmp_path / "nope.npz")


def test_missing_sae_file_skips_with_a_reason(tmp_path) -> None:
    for name in ("SAE", "SAE-A"):
        reason = get_method(name).unavailable_reason(
            sae=SAESource(str(tmp_path / "x.npz")), concepts=[_data()]
        )
        assert reason and "x.npz does not exist" in reason
    assert "no path configured" in get_method("SAE").unavailable_reason(sae=None, concepts=[_data()])
    path = tmp_path / "params.npz"
    _write_sae(path)
    assert (
        get_method("SAE")
        .unavailable_reason(sae=SAESource(str(path)), concepts=[_data(-1)])
        .startswith("concept(s) [0]")
    )


def test_feature_aurocs_equal_sklearn_with_ties() -> None:
    gen = torch.Generator().manual_seed(3)
    pos = torch.randint(0, 3, (7, 5), generator=gen).float()
    neg = torch.randint(0, 3, (9, 5), generator=gen).float()
    ours = feature_aurocs(pos, neg, max_elements=70)
    y = np.r_[np.ones(7), np.zeros(9)]
    for f in range(5):
        assert float(ours[f]) == pytest.approx(roc_auc_score(y, torch.cat([pos[:, f], neg[:, f]]).numpy()))


def test_row_max_activations_chunks_agree(tmp_path) -> None:
    path = tmp_path / "params.npz"
    _write_sae(path)
    sae = load_sae_params(path)
    acts = _concept_acts()
    a = row_max_activations(sae, acts.acts.tokens, acts.acts.row, 8, chunk=5)
    b = row_max_activations(sae, acts.acts.tokens, acts.acts.row, 8, chunk=1000)
    assert torch.allclose(a, b)


def _artifact(name: str, rows: list[dict[str, torch.Tensor]], concepts: list[ConceptData]) -> MethodArtifact:
    """What training stores for ``name`` (stack → tensors + meta, incl. ``sae_ids``)."""
    tensors, meta = get_method(name).stack(rows, concepts)
    return MethodArtifact(
        name, tensors, {**meta, "status": "ok", "concept_ids": [c.concept_id for c in concepts]}
    )


def test_steering_magnitude_is_the_table_value_of_each_methods_feature(tmp_path) -> None:
    """SAE: the concept's own feature; SAE-A: the feature it chose (protocol §3.7, §3.8, §1.9)."""
    path = tmp_path / "params.npz"
    _write_sae(path)
    sae = load_sae_params(path, d_model=D)
    concepts = [_data(3, concept_id=0), _data(5, concept_id=1)]
    sae_rows = [
        get_method("SAE").train_concept(ConceptInputs(data=c, seed=0, sae=sae), None) for c in concepts
    ]
    method_a = get_method("SAE-A")
    a_rows = [
        method_a.train_concept(
            ConceptInputs(data=c, seed=0, activations=_concept_acts(), sae=sae), method_a.params()
        )
        for c in concepts
    ]
    arts = {"SAE": _artifact("SAE", sae_rows, concepts), "SAE-A": _artifact("SAE-A", a_rows, concepts)}
    assert arts["SAE-A"].meta["sae_ids"] == [PLANTED, PLANTED]
    scores = pd.DataFrame(
        {
            "concept_id": [0, 0, 1, 1] * 2,
            "method": ["SAE"] * 4 + ["SAE-A"] * 4,
            "max_act": [2.0, 1.0, 0.0, -1.0, 4.0, 3.5, -3.0, -2.0],
        }  # fmt: skip
    )
    table_path = tmp_path / "sae_max_act.csv"
    pd.DataFrame({"sae_id": [3, 5, PLANTED], "max_act": [12.5, -1.0, 80.0]}).to_csv(table_path, index=False)
    table = read_sae_max_act(table_path)

    got = magnitude_table(scores, arts, table).set_index(["method", "concept_id"])
    assert got.loc[("SAE", 0), ["max_act", "magnitude_base", "source"]].tolist() == [12.5, 12.5, "sae_table"]
    assert got.loc[("SAE", 1), ["max_act", "magnitude_base"]].tolist() == [-1.0, 50.0]  # <= 0 -> 50, as §3.0
    assert got.loc["SAE-A", "max_act"].tolist() == [80.0, 80.0]
    assert set(got["source"]) == {"sae_table"} and set(got["source_ref"]) == {table.describe()}

    # No table: the latent-eval rule of §3.0 (max over the concept's rows, <= 0 -> 50), source latent_eval [D 13]
    fallback = magnitude_table(scores, arts, None).set_index(["method", "concept_id"])
    assert fallback["magnitude_base"].tolist() == [2.0, 50.0, 4.0, 50.0]
    assert set(fallback["source"]) == {"latent_eval"}
    assert all("no sae_max_act table" in ref for ref in fallback["source_ref"])

    # A present table without SAE-A's feature: an error naming method, concept and feature, never a fallback [D 12]
    pd.DataFrame({"sae_id": [3, 5], "max_act": [12.5, 7.0]}).to_csv(table_path, index=False)
    with pytest.raises(
        AxbenchDataError, match=rf"'SAE-A': concept_id 0 -> feature {PLANTED}, concept_id 1 -> feature"
    ):
        magnitude_table(scores, arts, read_sae_max_act(table_path))
    arts["SAE"].meta.pop("sae_ids")
    with pytest.raises(AxbenchDataError, match=r"method_artifacts\[SAE\]: meta 'sae_ids'"):
        magnitude_table(scores, arts, read_sae_max_act(table_path))
