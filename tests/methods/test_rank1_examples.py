"""Protocol §10 worked examples for the rank-1 methods (DiffMean, detection score, PCA, LAT, ReFT-r1, projection)."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.methods.activations import ConceptActivations, RowActivations
from axbench_kedro.methods.base import ConceptData, ConceptInputs, MethodArtifact
from axbench_kedro.methods.diffmean import diffmean_direction
from axbench_kedro.methods.lat import lat_differences, lat_direction
from axbench_kedro.methods.probe import normalise_and_project_
from axbench_kedro.methods.rank1 import first_principal_component, project_out_parallel
from axbench_kedro.methods.reft_r1 import l1_weight, topk_gate
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.scoring import EncoderBank, _activate

P = 2  # chat prefix of the toy rows: positions 0..P-1 carry (100, 100) and must be ignored


def _rows(rows: list[list[tuple[float, float]]]) -> RowActivations:
    """Rows of post-prefix tokens; each row gets prefix positions 0..P-1 holding (100, 100)."""
    tokens, row, pos = [], [], []
    for r, toks in enumerate(rows):
        full = [(100.0, 100.0)] * P + list(toks)
        for j, t in enumerate(full):
            tokens.append(t)
            row.append(r)
            pos.append(j)
    return RowActivations(torch.tensor(tokens), torch.tensor(row), torch.tensor(pos), len(rows))


def _toy_concept() -> ConceptActivations:
    positives = _rows([[(1, 0), (3, 0)], [(2, 2)]])
    negatives = _rows([[(0, 1), (0, 3)]])
    return ConceptActivations.from_parts(positives, negatives, prefix_length=P)


def _data() -> ConceptData:
    return ConceptData(0, "c", "text", -1, ("a", "b"), ("x", "y"), ("n",), ("z",))


def test_diffmean_pools_tokens_not_examples_and_ignores_prefix() -> None:
    acts = _toy_concept()
    out = get_method("DiffMean").train_concept(ConceptInputs(data=_data(), seed=0, activations=acts), None)
    w = out["weight"]
    assert torch.allclose(w, torch.tensor([0.8321, -0.5547]), atol=1e-4)
    per_example = torch.tensor([2.0, 1.0]) - torch.tensor([0.0, 2.0])
    assert not torch.allclose(
        w, per_example / per_example.norm(), atol=1e-3
    )  # (0.8944, -0.4472) must not match
    assert torch.allclose(diffmean_direction(acts.tokens_where(1), acts.tokens_where(0)), w)


def test_detection_score_and_relu_variant() -> None:
    w = torch.tensor([[0.8321, -0.5547]])
    art = MethodArtifact("DiffMean", {"weight": w, "bias": torch.zeros(1)}, {"concept_ids": [0]})
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    for name, expected in [("DiffMean", [0.832, -0.555, 1.109]), ("ReFT-r1", [0.832, 0.0, 1.109])]:
        enc = get_method(name).detection_encoder(MethodArtifact(name, art.tensors, art.meta))
        scores = enc.apply(h @ enc.weight.T + enc.bias)[:, 0]
        assert torch.allclose(scores, torch.tensor(expected), atol=1e-3)
        assert int(torch.argmax(scores)) == 2 and round(float(scores.max()), 3) == 1.109
    bank = EncoderBank.from_artifacts({"SSV": MethodArtifact("SSV", art.tensors, art.meta)})
    relu = _activate(h @ bank.weight.T + bank.bias, bank.gated, bank.threshold)[:, 0]
    assert torch.allclose(relu, torch.tensor([0.832, 0.0, 1.109]), atol=1e-3)


def test_pca_example_is_the_diagonal() -> None:
    w = first_principal_component(torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), seed=0)
    assert torch.allclose(w.abs(), torch.tensor([0.7071, 0.7071]), atol=1e-4)
    assert float(w.norm()) == pytest.approx(1.0, abs=1e-6)


def test_lat_example_with_identity_shuffle() -> None:
    tokens = torch.tensor([[1.0, 1.0], [4.0, 4.0], [3.0, 3.0], [2.0, 2.0]])
    deltas = lat_differences(tokens, torch.arange(4))
    assert torch.allclose(deltas, torch.tensor([[-0.7071, -0.7071], [0.7071, 0.7071]]), atol=1e-4)
    w = lat_direction(tokens, seed=0, permutation=torch.arange(4))
    assert torch.allclose(w.abs(), torch.tensor([0.7071, 0.7071]), atol=1e-4)


def test_lat_drops_the_last_token_when_odd() -> None:
    deltas = lat_differences(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    assert deltas.shape == (2, 2)


def test_reft_topk_gate_and_l1_schedule() -> None:
    z = torch.tensor([[0.0, 3.0, 1.0, 5.0, 2.0]])
    a, l1 = topk_gate(z, torch.ones_like(z, dtype=torch.bool), k=2)
    assert float(a[0]) == pytest.approx(4.0)
    assert float(l1[0]) == pytest.approx(0.6)
    assert l1_weight(30, 100, 0.005) * float(l1[0]) == pytest.approx(0.0009)
    h, w = torch.zeros(5, 3), torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose((h + a[0] * w)[:, 0], torch.full((5,), 4.0))


def test_reft_topk_never_selects_padding() -> None:
    z = torch.tensor([[1.0, 2.0, 9.0, 9.0]])
    mask = torch.tensor([[True, True, False, False]])
    a, l1 = topk_gate(z, mask, k=3)
    assert float(a[0]) == pytest.approx(1.5)  # only the two real positions, averaged
    assert float(l1[0]) == pytest.approx(0.0)


def test_gradient_projection_example() -> None:
    assert torch.allclose(
        project_out_parallel(torch.tensor([0.3, 0.4]), torch.tensor([1.0, 0.0])), torch.tensor([0.0, 0.4])
    )
    w = torch.nn.Parameter(torch.tensor([3.0, 0.0]))
    w.grad = torch.tensor([0.3, 0.4])
    normalise_and_project_(w)
    assert torch.allclose(w.data, torch.tensor([1.0, 0.0]))
    assert torch.allclose(w.grad, torch.tensor([0.0, 0.4]))
