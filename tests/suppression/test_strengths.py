"""Suppression interventions (protocol §6, §10.18): addition_suppression's sign rule and the method kinds."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.lm.steering import addition_suppression, addition_suppression_strengths
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.reps import add_intervention, null_it_out
from axbench_kedro.suppression.strengths import suppression_strengths


def test_addition_suppression_sign_rule_10_18() -> None:
    s = addition_suppression_strengths(torch.tensor([-2.0, 2.0, 0.0]), torch.tensor([0.5, 0.5, 0.5]))
    assert s.tolist() == [-2.5, 2.5, 0.0]
    h = torch.zeros(3, 2, 2)
    v = torch.tensor([[1.0, 0.0]] * 3)
    out = addition_suppression(h, v, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([-2.0, 2.0, 0.0]))
    assert out[:, :, 0].tolist() == [[-2.5, -2.5], [2.5, 2.5], [0.0, 0.0]] and (out[:, :, 1] == 0).all()


def test_null_it_out_and_add_10_18() -> None:
    v, b = torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.zeros(2)
    h = torch.tensor([[[3.0, 1.0]], [[-3.0, 1.0]]])
    out = null_it_out(h, v, b, torch.ones(2, 1))
    assert out.tolist() == [[[0.0, 1.0]], [[-3.0, 1.0]]]
    added = add_intervention(
        torch.zeros(1, 1, 2), v[:1], torch.tensor([0.5]), torch.tensor([4.0]), torch.ones(1, 1)
    )
    assert added.tolist() == [[[9.0, 0.0]]]  # h + 4.5·v


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("RePS", "addition_suppression", [-2.5, 0.0, -4.5]),
        ("Lang.", "addition_suppression", [-2.5, 0.0, -4.5]),
        ("BiPO", "addition", [-2.0, 0.0, -4.0]),
        ("DiffMean", "addition", [-2.0 * 3, 0.0, -4.0 * 3]),
        ("ReFT-r1", "addition", [-2.0 * 3, 0.0, -4.0 * 3]),
    ],
)
def test_negated_factor_becomes_a_strength_by_method_kind(
    name: str, kind: str, expected: list[float]
) -> None:
    method = get_method(name)
    assert method.suppression_intervention == kind
    m = 1.0 if method.magnitude_source == "unit" else 3.0
    out = suppression_strengths(method, [-2.0, 0.0, -4.0], [m] * 3, [0.5] * 3)
    assert out.tolist() == pytest.approx(expected)


def test_suppression_biases_come_from_the_artifact() -> None:
    art = MethodArtifact("RePS", {"weight": torch.ones(2, 4), "bias": torch.tensor([0.5, -1.0])}, {})
    assert get_method("RePS").suppression_biases(art).tolist() == [0.5, -1.0]
    plain = MethodArtifact("DiffMean", {"weight": torch.ones(2, 4)}, {})
    assert get_method("DiffMean").suppression_biases(plain).tolist() == [0.0, 0.0]
