"""The method registry and the capabilities steering_eval relies on."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.methods import MethodArtifact, get_method, list_methods, steering_methods
from axbench_kedro.methods.registry import detection_methods

RANK1 = ["DiffMean", "PCA", "LAT", "Probe", "ReFT-r1", "SSV", "SAE", "SAE-A"]


def test_every_issue_method_is_registered() -> None:
    assert set(list_methods()) >= {*RANK1, "BoW", "Prompt"}


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(AxbenchConfigError, match="known methods: .*DiffMean"):
        get_method("DifMean")


def test_capabilities() -> None:
    assert [m.name for m in steering_methods(["DiffMean", "BoW", "Prompt", "SAE"])] == [
        "DiffMean",
        "Prompt",
        "SAE",
    ]
    assert [m.name for m in detection_methods(["BoW", "Prompt", "SSV"])] == ["BoW", "Prompt", "SSV"]
    prompt = get_method("Prompt")
    assert prompt.factor_free and prompt.steers and prompt.detection_kind == "llm"
    assert get_method("SAE").magnitude_source == "sae_table"
    assert get_method("BoW").detection_kind == "text" and not get_method("BoW").steers
    for name in RANK1:
        m = get_method(name)
        assert m.steers and not m.factor_free and m.detection_kind == "activation"


def test_steering_vectors_are_the_weight_rows_or_w_dec() -> None:
    w = torch.randn(3, 4)
    art = MethodArtifact("DiffMean", {"weight": w, "bias": torch.zeros(3)}, {"concept_ids": [5, 6, 7]})
    assert torch.equal(get_method("DiffMean").steering_vectors(art), w)
    assert art.rows_of([7, 5]).tolist() == [2, 0]
    sae = MethodArtifact(
        "SAE", {"W_dec": w, "W_enc": w.T, "b_enc": torch.zeros(3), "threshold": torch.zeros(3)}, {}
    )
    assert torch.equal(get_method("SAE").steering_vectors(sae), w)
    with pytest.raises(NotImplementedError):
        get_method("Prompt").steering_vectors(art)


def test_hyperparameters_validate_per_method() -> None:
    from axbench_kedro.config.training import TrainingParams

    p = TrainingParams(methods=["Probe"], hyperparameters={"Probe": {"lr": 1e-3}})
    assert p.method_params("Probe").lr == 1e-3 and p.method_params("Probe").epochs == 24
    with pytest.raises(ValueError, match="hyperparameters.Probe"):
        TrainingParams(hyperparameters={"Probe": {"lrr": 1.0}})
    with pytest.raises((ValueError, AxbenchConfigError), match="known methods"):
        TrainingParams(methods=["Nope"])
