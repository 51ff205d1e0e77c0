"""The ``training`` pipeline on a tiny model: every method of the base env, SAE present and absent, rerun cache."""

from __future__ import annotations

import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.config.training import TrainingParams
from axbench_kedro.pipelines.training import create_pipeline
from fixtures.tiny_models import make_tiny_target_model
from methods.pipeline_inputs import LAYER, SAE_IDS, training_catalog, write_sae


@pytest.fixture(scope="module")
def tm():
    return make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)


def test_training_writes_every_method_with_concept_rows(tm, tmp_path) -> None:
    catalog = training_catalog(tm, write_sae(tmp_path / "params.npz"), tmp_path / "cache")
    SequentialRunner().run(create_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    summary = catalog.load("training_summary")
    known = ["DiffMean", "PCA", "LAT", "Probe", "ReFT-r1", "SSV", "SAE", "SAE-A", "BoW", "Prompt", "Random"]
    assert list(arts) == TrainingParams().method_names()  # `methods: null` = every registered one
    assert [
        name for name in arts if name in known
    ] == known  # the Random control comes after the paper's methods
    for name in ("DiffMean", "PCA", "LAT", "Probe", "ReFT-r1", "SSV", "Random"):
        art = arts[name]
        assert art.ok and art.tensors["weight"].shape == (3, 64) and art.tensors["bias"].shape == (3,)
        assert art.concept_ids == [0, 1, 2]
        assert art.meta["setting"] == "tiny" and art.meta["layer"] == LAYER and art.meta["seed"] == 42
        assert art.meta["hyperparameters"] == TrainingParams().method_params(name).model_dump(mode="json")
    assert arts["SAE"].meta["sae_ids"] == SAE_IDS and arts["SAE"].tensors["W_dec"].shape == (3, 64)
    assert arts["SAE-A"].ok and len(arts["SAE-A"].meta["sae_ids"]) == 3
    assert arts["BoW"].tensors["weight"].shape[0] == 3 and len(arts["BoW"].meta["vocabulary"]) > 10
    assert arts["Prompt"].ok and arts["Prompt"].tensors == {}
    assert set(summary["status"]) == {"ok", "shared"}
    # rerun: everything from the cache, identical weights
    again = training_catalog(tm, str(tmp_path / "params.npz"), tmp_path / "cache")
    SequentialRunner().run(create_pipeline(), again)
    summary2 = again.load("training_summary").set_index("method")
    # everything from the cache (HyperSteer: its held-out concepts; SFT: the concepts within its limit)
    assert (summary2.loc[list(arts), "cached_concepts"] == summary2.loc[list(arts), "n_concepts"]).all()
    assert (summary2.loc[["DiffMean", "ReFT-r1", "SAE"], "cached_concepts"] == 3).all()
    for name, art in again.load("method_artifacts").items():
        for key, value in art.tensors.items():
            assert torch.equal(value, arts[name].tensors[key])


def test_missing_sae_is_reported_not_faked(tm, tmp_path) -> None:
    params = TrainingParams(methods=["DiffMean", "SAE", "SAE-A"])
    catalog = training_catalog(tm, str(tmp_path / "absent.npz"), tmp_path / "cache", params)
    SequentialRunner().run(create_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    summary = catalog.load("training_summary").set_index("method")
    for name in ("SAE", "SAE-A"):
        assert arts[name].status == "skipped" and arts[name].tensors == {}
        assert "absent.npz does not exist" in arts[name].skip_reason
        assert summary.loc[name, "status"] == "skipped" and "absent.npz" in summary.loc[name, "skip_reason"]
    assert arts["DiffMean"].ok
