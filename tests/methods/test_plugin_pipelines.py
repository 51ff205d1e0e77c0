"""A plugin method end to end on the tiny model: trained by ``training``, scored by ``latent_eval``, steered and
judged by ``steering_eval`` (loopback LLM), and ranked on the reporting leaderboard — with no project file naming it.

ToyMean comes from a module entry point, ToyRandom from a class entry point (``tests/plugin_pkg``).
"""

from __future__ import annotations

import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.pipelines.reporting.nodes import make_leaderboard
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from fixtures.tiny_models import make_tiny_target_model

from .pipeline_inputs import LAYER, run_latent, run_steering, training_catalog

TOYS = ["ToyMean", "ToyRandom"]
RUN = RunSettings(setting="tiny", layer=LAYER, seed=42)
INSTRUCTIONS = [
    f"tell me about the {w}" for w in ("sea", "city", "train", "music", "school", "river", "game")
]


def _judge(body: dict) -> str:
    return "Fine.\nRating: [[2]]"


def _generator(body: dict) -> str:
    return "Talk about the concept in every answer."


@pytest.mark.slow
def test_plugin_method_trains_scores_steers_and_ranks(toy_plugin, tmp_path) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)

    # training: `methods: null` = built-ins + plugins; here narrowed to DiffMean and the two plugins
    assert TrainingParams().method_names()[-2:] == TOYS
    params = TrainingParams(methods=["DiffMean", *TOYS], hyperparameters={"ToyMean": {"scale": 1.0}})
    catalog = training_catalog(tm, str(tmp_path / "no_sae.npz"), tmp_path / "cache", params)
    SequentialRunner().run(training_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    summary = catalog.load("training_summary").set_index("method")
    assert list(arts) == ["DiffMean", *TOYS]
    for name in TOYS:
        art = arts[name]
        assert art.ok and art.meta["method"] == name and art.concept_ids == [0, 1, 2]
        assert art.tensors["weight"].shape == (3, 64)
        assert torch.allclose(art.tensors["weight"].norm(dim=1), torch.ones(3), atol=1e-5)
        assert summary.loc[name, "status"] == "ok" and summary.loc[name, "n_concepts"] == 3
    assert arts["ToyMean"].meta["hyperparameters"] == {"scale": 1.0}
    assert "distribution axbench-toy-method 0.1" in arts["ToyMean"].meta["plugin"]  # lineage of plugin code
    assert "plugin" not in arts["DiffMean"].meta
    concepts_meta = catalog.load("concepts_meta")

    # latent_eval: the plugin is an `activation` method, scored in the shared forward pass
    latent = run_latent(tmp_path, tm=tm, concepts_meta=concepts_meta, artifacts=arts, run=RUN)
    scores, metrics, mags = latent["latent_scores"], latent["latent_metrics"], latent["max_activations"]
    assert set(scores["method"]) == {"DiffMean", *TOYS}
    assert (scores.groupby("method").size() == scores.groupby("method").size()["DiffMean"]).all()
    assert set(metrics["method"]) == {"DiffMean", *TOYS} and metrics["roc_auc"].between(0, 1).all()
    assert set(mags["method"]) == {"DiffMean", *TOYS} and (mags["magnitude_base"] > 0).all()

    # steering_eval: `methods: null` = every steering method of the artefacts, the plugins included
    steering_params = SteeringEvalParams.model_validate(
        {
            "methods": None,
            "factors": [0.5, 1.0],
            "instructions": {"n_selection": 1, "n_test": 1},
            "generation": {"max_new_tokens": 4, "batch_size": 16},
            "judge": {"kind": "llm", "model": "gpt-4o-mini"},
            "n_resamples": 50,
        }
    )
    steering = run_steering(
        tmp_path,
        tm=tm,
        concepts_meta=concepts_meta,
        artifacts=arts,
        max_activations=mags,
        params=steering_params,
        instructions=INSTRUCTIONS,
        run=RUN,
        generator_reply=_generator,
        judge_reply=_judge,
    )
    gens = steering["steering_generations"]
    assert set(gens["method"]) == {"DiffMean", *TOYS}
    toy = gens[gens["method"] == "ToyMean"].merge(mags[mags["method"] == "ToyMean"], on="concept_id")
    assert len(toy) == 3 * 2 * 2  # concepts × instructions × factors
    assert (toy["strength"] - toy["factor"] * toy["magnitude_base"]).abs().max() < 1e-3  # h + f·m·w
    selection = steering["steering_selection"]
    assert set(selection["method"]) == {"DiffMean", *TOYS}

    # reporting: the leaderboard has a row per plugin method
    summary = steering["steering_summary"]
    board = make_leaderboard(
        selection.assign(setting=RUN.setting) if "setting" not in selection else selection,
        summary.assign(setting=RUN.setting) if "setting" not in summary else summary,
        ReportingParams(n_resamples=50),
        RUN,
    )
    rows = board[(board["setting"] == RUN.setting)].set_index("method")
    assert set(TOYS) <= set(rows.index)
    assert rows.loc["ToyMean", "overall"] == pytest.approx(2.0)  # every judge rating is 2 → HM = 2
