"""SFT (protocol §3.12) on a tiny model: the LM loss falls, every concept starts from the original weights, which come
back bit for bit after training and after the adapter block, the concept limit, and the pipelines end to end."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.chat import chat_prefix_length, format_prompt
from axbench_kedro.methods.activations import compute_lm_rows
from axbench_kedro.methods.adapters import full_response_loss
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sft import PREFIX, response_loss
from axbench_kedro.methods.trainer import TrainOptions, train_methods
from axbench_kedro.pipelines.reporting.nodes import make_leaderboard
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from axbench_kedro.steering.plans import plan_units, steering_plans
from fixtures.tiny_models import make_tiny_target_model

from .pipeline_inputs import LAYER, run_steering, training_catalog

# a few real steps on the tiny model: a high learning rate, single-row accumulation, every concept trained
FAST = {"lr": 3e-3, "epochs": 6, "batch_size": 6, "gradient_accumulation": 1, "max_concepts": None}
OPTS = TrainOptions(setting="t", layer=LAYER, seed=42)
PROMPTS = ["tell me about the sea", "what is a good game", "write a short story about a dog"]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_bits(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert now.keys() == reference.keys()
    changed = [k for k, v in reference.items() if not torch.equal(now[k], v)]
    assert not changed, changed[:5]


def _train(tm, concepts, **over: Any) -> tuple[MethodArtifact, pd.DataFrame]:
    arts, summary = train_methods(tm, concepts, [(get_method("SFT"), {**FAST, **over})], OPTS)
    return arts["SFT"], summary


@pytest.fixture(scope="module")
def base_state(tm) -> dict[str, torch.Tensor]:
    return _state(tm.model)


@pytest.fixture(scope="module")
def trained(tm, concepts, base_state) -> MethodArtifact:
    art, _ = _train(tm, concepts)
    return art


def _positive_loss(tm, concept) -> float:
    rows = compute_lm_rows(
        tm,
        [format_prompt(tm.tokenizer, i) for i in concept.pos_inputs],
        list(concept.pos_outputs),
        LAYER,
        chat_prefix_length(tm.tokenizer),
        batch_size=6,
    )
    with torch.no_grad():
        return float(full_response_loss(tm, rows.batch(range(len(rows)))))


def test_training_lowers_the_lm_loss_and_leaves_the_model_as_it_was(
    tm, concepts, trained, base_state
) -> None:
    _assert_same_bits(tm.model, base_state)  # training restored every weight
    assert all(not p.requires_grad and p.grad is None for p in tm.model.parameters())
    assert trained.ok and trained.concept_ids == [0, 1]
    names = {n for n, _ in tm.model.named_parameters()}
    assert not trained.tensors and sorted(trained.row_files) == [0, 1]  # rows on disk, one file per concept
    assert {k[len(PREFIX) :] for k in trained.concept_tensors(0)} == names  # trainable: all = every parameter
    method = get_method("SFT")
    for concept in concepts:
        before = _positive_loss(tm, concept)
        with method.adapter(trained, tm, concept.concept_id):
            after = _positive_loss(tm, concept)
        _assert_same_bits(tm.model, base_state)  # the adapter block restores the original bits
        assert after < before - 0.5, (concept.concept_id, before, after)
    losses = trained.meta["train_loss"][0]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_adapter_loads_the_concepts_weights_exactly_and_hashes_per_concept(tm, trained) -> None:
    method = get_method("SFT")
    named = dict(tm.model.named_parameters())
    with method.adapter(trained, tm, 1):
        for key, value in trained.concept_tensors(1).items():
            assert torch.equal(named[key[len(PREFIX) :]].detach(), value)
    shas = {method.adapter_sha(trained, c) for c in (0, 1)}
    assert len(shas) == 2


def test_adapter_restores_the_weights_when_its_block_raises(tm, trained, base_state) -> None:
    with pytest.raises(RuntimeError, match="boom"), get_method("SFT").adapter(trained, tm, 0):
        assert not torch.equal(
            tm.model.model.layers[0].mlp.up_proj.weight, base_state["model.layers.0.mlp.up_proj.weight"]
        )
        raise RuntimeError("boom")
    _assert_same_bits(tm.model, base_state)


def test_every_concept_starts_from_the_base_weights(tm, concepts, trained) -> None:
    alone, _ = _train(tm, concepts[1:])  # concept 1 without concept 0 trained before it
    assert alone.concept_ids == [1]
    for key, value in trained.concept_tensors(1).items():
        assert torch.equal(alone.concept_tensors(1)[key], value), key


def test_trainable_layers_trains_only_the_listed_blocks(tm, concepts, base_state) -> None:
    art, _ = _train(tm, concepts[:1], trainable="layers", layers=[2])
    block = {f"model.layers.2.{n}" for n, _ in tm.model.model.layers[2].named_parameters()}
    tuned = art.concept_tensors(0)
    assert {k[len(PREFIX) :] for k in tuned} == block
    assert any(not torch.equal(tuned[PREFIX + n], base_state[n]) for n in block)
    _assert_same_bits(tm.model, base_state)
    with pytest.raises(AxbenchConfigError, match=r"training\.hyperparameters\.SFT\.layers.*\[9\]"):
        _train(tm, concepts[:1], trainable="layers", layers=[9])


def test_concepts_past_max_concepts_are_skipped_with_one_log_line(tm, concepts, trained, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="axbench_kedro.methods.trainer"):
        art, summary = _train(tm, concepts, max_concepts=1)
    lines = [r.getMessage() for r in caplog.records if "max_concepts" in r.getMessage()]
    assert lines == [
        "training: SFT trains the first 1 of 2 concepts (max_concepts); skipped concept_id(s) [1]"
    ]
    assert art.concept_ids == [0] and art.meta["skipped_concept_ids"] == [1]
    assert sorted(art.row_files) == [0]
    assert summary.set_index("method").loc["SFT", "n_concepts"] == 1
    for key, value in trained.concept_tensors(0).items():  # the trained concept is the one of the full run
        assert torch.equal(art.concept_tensors(0)[key], value)
    params = SteeringEvalParams.model_validate(
        {"factors": [0.5, 1.0], "instructions": {"n_selection": 1, "n_test": 1}, "n_resamples": 20}
    )
    (plan,) = steering_plans(
        ["SFT"], {"SFT": art}, pd.DataFrame(), params, layer=LAYER, tm=tm, concept_ids=[0, 1]
    )
    assert sorted(plan.adapter_shas) == [0]
    prompts = pd.DataFrame(
        [
            {
                "dataset_name": "AlpacaEval",
                "concept_id": cid,
                "input_id": i,
                "input": format_prompt(tm.tokenizer, text),
                "steered_input": format_prompt(tm.tokenizer, text),
            }
            for cid in (0, 1)
            for i, text in enumerate(PROMPTS)
        ]
    )
    units, rows = plan_units(plan, prompts, replicates=1)
    assert len(units) == 3 and set(units["concept_id"]) == {0}  # once per instruction, trained concept only
    assert len(rows) == 3 * 2 and set(rows["concept_id"]) == {0}


def test_response_loss_with_a_trainable_head_equals_the_fused_one(tm, concepts) -> None:
    rows = compute_lm_rows(
        tm,
        [format_prompt(tm.tokenizer, i) for i in concepts[0].pos_inputs],
        list(concepts[0].pos_outputs),
        LAYER,
        chat_prefix_length(tm.tokenizer),
        batch_size=6,
    )
    batch = rows.batch(range(len(rows)))
    head = tm.model.get_output_embeddings().weight
    fused = float(response_loss(tm, batch).detach())  # frozen head: the fused loss
    head.requires_grad_(True)
    try:
        plain = response_loss(tm, batch)
        plain.backward()
        assert head.grad is not None and head.grad.abs().sum() > 0
    finally:
        head.requires_grad_(False)
        tm.model.zero_grad(set_to_none=True)
    assert float(plain.detach()) == pytest.approx(fused, rel=1e-5)


def test_sft_defaults_are_the_papers() -> None:
    hp = get_method("SFT").params(None)
    assert (hp.lr, hp.epochs, hp.batch_size, hp.gradient_accumulation, hp.max_grad_norm) == (
        4e-5,
        8,
        18,
        4,
        1.0,
    )
    assert hp.trainable == "all" and hp.max_concepts == 20
    method = get_method("SFT")
    assert method.factor_free and not method.detects and not method.trains_on_negatives


@pytest.mark.slow
def test_sft_runs_through_training_steering_eval_and_reporting(tmp_path) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)
    base = _state(tm.model)
    hp = {"SFT": {**FAST, "epochs": 1, "max_concepts": 2, "trainable": "layers"}}
    params = TrainingParams(methods=["DiffMean", "SFT"], hyperparameters=hp)
    catalog = training_catalog(tm, str(tmp_path / "no_sae.npz"), tmp_path / "cache", params)
    SequentialRunner().run(training_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    assert arts["SFT"].ok and arts["SFT"].concept_ids == [0, 1]  # 3 concepts, limit 2
    assert arts["DiffMean"].concept_ids == [0, 1, 2]
    _assert_same_bits(tm.model, base)
    mags = pd.DataFrame(
        {"concept_id": [0, 1, 2], "method": "DiffMean", "max_act": 1.0, "magnitude_base": 1.0, "source": "t"}
    )
    run = RunSettings(setting="tiny", layer=LAYER, seed=42)
    steer = SteeringEvalParams.model_validate(
        {
            "methods": None,
            "factors": [0.5, 1.0],
            "instructions": {"n_selection": 1, "n_test": 1},
            "generation": {"max_new_tokens": 6, "batch_size": 8},
            "judge": {"kind": "llm", "model": "gpt-4o-mini"},
            "n_resamples": 20,
        }
    )
    out = run_steering(
        tmp_path,
        tm=tm,
        concepts_meta=catalog.load("concepts_meta"),
        artifacts=arts,
        max_activations=mags,
        params=steer,
        instructions=PROMPTS + ["hello there"],
        run=run,
    )
    _assert_same_bits(tm.model, base)
    gens = out["steering_generations"]
    sft = gens[gens["method"] == "SFT"]
    assert (
        set(sft["concept_id"]) == {0, 1} and len(sft) == 2 * 2 * 2
    )  # trained concepts × instructions × factors
    assert sft["strength"].isna().all()
    assert (sft.groupby(["concept_id", "input_id"])["steered_generation"].nunique() == 1).all()
    selection, summary = out["steering_selection"], out["steering_summary"]
    assert selection[selection["method"] == "SFT"]["best_factor"].isna().all()  # factor-free
    board = make_leaderboard(
        selection.assign(setting=run.setting) if "setting" not in selection else selection,
        summary.assign(setting=run.setting) if "setting" not in summary else summary,
        ReportingParams(n_resamples=20),
        run,
    )
    rows = board[board["setting"] == run.setting].set_index("method")
    assert rows.loc["SFT", "overall"] == pytest.approx(2.0)  # every judge rating is 2 → HM = 2
