"""HyperSteer (protocol §3.14) on a tiny model: the held-out split, joint training across concepts (the LM loss
falls, no held-out concept is seen), streamed training (each step computes its own rows; same result as the cached
mode), one vector per (concept, prompt), per-prompt steering units and their cache keys, and a run through training
→ latent_eval → steering_eval → reporting."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.steering import steered_generate
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.hypersteer import HyperSteer, held_out_split
from axbench_kedro.methods.hypersteer_net import HyperNetConfig, HyperSteerNet
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods
from axbench_kedro.pipelines.reporting.nodes import make_leaderboard
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from axbench_kedro.steering.plans import plan_units, steering_plans
from axbench_kedro.steering.schedule import generate_plans
from axbench_kedro.suppression.generation import suppression_plans
from fixtures.tiny_models import make_tiny_target_model

from .pipeline_inputs import LAYER, run_latent, run_steering, training_catalog
from .synthetic_data import make_concepts_meta, make_train_data

# a tiny hypernetwork with a high learning rate, so that a few steps move the loss
FAST: dict[str, Any] = {
    "n_layers": 2,
    "hidden": 32,
    "n_heads": 2,
    "intermediate": 64,
    "lr": 3e-2,
    "epochs": 6,
    "batch_size": 6,
    "held_out": 1,
    "cache_states": False,  # the paper configuration: streamed
}
PROMPTS = ["tell me about the sea", "what is a good game", "write a short story about a dog"]


@pytest.fixture(scope="module")
def three_concepts():
    return build_concepts(make_train_data(n_concepts=3, n_pos=6, n_pool=6), make_concepts_meta(3))


@pytest.fixture(scope="module")
def trained(tm, three_concepts) -> tuple[MethodArtifact, list[list[int]]]:
    """The trained artifact and, per ``train_all`` call, the concept ids it was given."""
    seen: list[list[int]] = []
    original = HyperSteer.train_all

    def spy(self, items, evaluated, hp, seed):
        seen.append([it.data.concept_id for it in items])
        assert all(
            it.lm_rows is None and it.lm_row_builder is not None for it in items
        )  # nothing precomputed
        return original(self, items, evaluated, hp, seed)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HyperSteer, "train_all", spy)
        arts, summary = train_methods(
            tm, three_concepts, [(get_method("HyperSteer"), dict(FAST))], TrainOptions("t", LAYER, 42)
        )
    assert summary.set_index("method").loc["HyperSteer", "n_concepts"] == 1
    return arts["HyperSteer"], seen


def test_held_out_split_is_disjoint_deterministic_and_configurable() -> None:
    ids = list(range(10))
    train, held = held_out_split(ids, 3, seed=7)
    assert len(held) == 3 and not set(train) & set(held) and sorted(train + held) == ids
    assert held_out_split(ids, 3, seed=7) == (train, held)  # same seed, same split
    assert {tuple(held_out_split(ids, 3, seed=s)[1]) for s in range(8)} != {tuple(held)}  # the seed matters
    assert len(held_out_split(ids, 0.25, seed=1)[1]) == 2  # a fraction, rounded (2.5 → 2)
    assert len(held_out_split(ids, 0.01, seed=1)[1]) == 1  # at least one
    assert held_out_split(ids, 1, seed=1, explicit=[8, 2]) == ([0, 1, 3, 4, 5, 6, 7, 9], [2, 8])
    with pytest.raises(AxbenchConfigError, match=r"HyperSteer\.held_out_ids.*\[42\]"):
        held_out_split(ids, 1, seed=1, explicit=[42])
    with pytest.raises(AxbenchConfigError, match=r"HyperSteer\.held_out: holding out 10 of 10"):
        held_out_split(ids, 10, seed=1)
    with pytest.raises(ValueError, match="fraction"):
        HyperSteer().params({"held_out": 1.5})
    with pytest.raises(ValueError, match="count"):
        HyperSteer().params({"held_out": 0})


def test_no_held_out_concept_reaches_training(trained, three_concepts) -> None:
    art, seen = trained
    expected_train, expected_held = held_out_split([0, 1, 2], 1, seed=42)
    assert seen == [expected_train]  # one call, for every training concept at once
    assert art.ok and art.concept_ids == expected_held == art.meta["held_out_concept_ids"]
    assert art.meta["train_concept_ids"] == expected_train
    assert not set(art.meta["train_concept_ids"]) & set(art.concept_ids)
    held = next(c for c in three_concepts if c.concept_id == expected_held[0])
    assert art.meta["concepts"] == [held.concept]  # the artifact describes its evaluated concepts only


def test_training_lowers_the_lm_loss(trained) -> None:
    art, _ = trained
    losses = art.meta["train_loss"]
    per_epoch = len(losses) // FAST["epochs"]
    assert per_epoch == 2  # 12 positives of two training concepts, batch 6
    first, last = losses[:per_epoch], losses[-per_epoch:]
    assert sum(last) / per_epoch < sum(first) / per_epoch - 0.05, losses
    assert art.tensors["net.out_proj.weight"].shape == (64, 32)  # Linear(hidden, d)
    assert art.tensors["net.out_proj.weight"].abs().sum() > 0  # left its zero init


class _Store:
    """A training cache in a dict (``get`` / ``put``, as the trainer uses it)."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.rows.get(key)

    def put(self, key: str, row: Any) -> None:
        self.rows[key] = row


@pytest.mark.parametrize("cache_states", [False, True])
def test_streamed_training_computes_each_steps_rows_only(tm, three_concepts, cache_states) -> None:
    """Streamed: every ``compute_lm_rows`` call is one optimizer step's rows (≤ batch_size, training positives
    only), none for every concept up front; cached: one call per training concept, before the first step."""
    import axbench_kedro.methods.trainer as trainer

    calls: list[list[str]] = []
    original = trainer.compute_lm_rows

    def counting(tm_, prompts, outputs, *args, **kwargs):
        calls.append(list(outputs))
        return original(tm_, prompts, outputs, *args, **kwargs)

    hp = {**FAST, "epochs": 2, "batch_size": 4, "cache_states": cache_states}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "compute_lm_rows", counting)
        arts, _ = train_methods(
            tm, three_concepts, [(get_method("HyperSteer"), hp)], TrainOptions("t", LAYER, 42)
        )
    train_ids, held_ids = held_out_split([0, 1, 2], 1, seed=42)
    by_id = {c.concept_id: c for c in three_concepts}
    positives = [o for c in train_ids for o in by_id[c].pos_outputs]
    assert len(arts["HyperSteer"].meta["train_loss"]) == 2 * 3  # 12 positives, batch 4, 2 epochs
    if cache_states:
        assert calls == [list(by_id[c].pos_outputs) for c in train_ids]  # all rows, concept by concept
    else:
        assert len(calls) == 2 * 3 and max(len(c) for c in calls) <= 4  # one call per step, its rows only
        for epoch in (calls[:3], calls[3:]):
            assert sorted(o for call in epoch for o in call) == sorted(positives)  # each row once an epoch
    held = set(by_id[held_ids[0]].pos_outputs) - set(positives)
    assert held and not held & {o for call in calls for o in call}  # no held-out row is ever computed


def test_streamed_and_cached_training_agree(tm, three_concepts) -> None:
    """Same seed, same rows, same steps: the hypernetwork and its losses agree between the two modes.

    The tolerance is float32 rounding: streamed rows are padded per step, cached ones per concept, so a truncated
    forward pass may sum in another order (bitwise equal on this CPU, not promised elsewhere); a wrong row or
    state moves the loss by ~1e-2 and the weights far more.
    """
    store = _Store()
    arts = {}
    for cache_states in (True, False):
        hp = {**FAST, "epochs": 2, "batch_size": 4, "cache_states": cache_states}
        out, summary = train_methods(
            tm, three_concepts, [(get_method("HyperSteer"), hp)], TrainOptions("t", LAYER, 42), store=store
        )
        assert summary.set_index("method").loc["HyperSteer", "cached_concepts"] == 0  # the mode is in the key
        arts[cache_states] = out["HyperSteer"]
    cached, streamed = arts[True], arts[False]
    assert len(store.rows) == 2
    assert torch.allclose(
        torch.tensor(streamed.meta["train_loss"]), torch.tensor(cached.meta["train_loss"]), rtol=0, atol=1e-5
    )
    assert streamed.tensors.keys() == cached.tensors.keys()
    for name, value in cached.tensors.items():
        assert torch.allclose(streamed.tensors[name], value, rtol=1e-4, atol=1e-6), name
    assert (
        cached.tensors["net.out_proj.weight"].abs().sum() > 0
    )  # trained: the comparison is not of zero inits
    assert streamed.concept_ids == cached.concept_ids


def test_one_vector_per_concept_and_prompt(tm, trained) -> None:
    art, _ = trained
    method = get_method("HyperSteer")
    prompts = [format_prompt(tm.tokenizer, p) for p in PROMPTS]
    (cid,) = art.concept_ids
    vecs = method.prompt_steering_vectors(art, tm, LAYER, [cid] * 3, prompts)
    assert vecs.shape == (3, 64) and vecs.dtype == torch.float32 and torch.isfinite(vecs).all()
    assert vecs.norm(dim=1).min() > 0
    for i in range(3):
        for j in range(i + 1, 3):
            assert (vecs[i] - vecs[j]).norm() > 1e-4 * vecs[i].norm()  # the prompt changes v(c, x)
    again = method.prompt_steering_vectors(art, tm, LAYER, [cid, cid], [prompts[1], prompts[0]])
    assert torch.allclose(again, vecs[[1, 0]], atol=1e-5)  # batched = one by one, any order
    with pytest.raises(AxbenchDataError, match="no row for concept_id"):
        method.prompt_steering_vectors(art, tm, LAYER, [art.meta["train_concept_ids"][0]], prompts[:1])


def test_hypernetwork_reads_the_concept_and_the_prompt() -> None:
    cfg = HyperNetConfig(d_model=16, hidden=8, n_layers=2, n_heads=2, head_dim=4, intermediate=16)
    net = HyperSteerNet(cfg)
    torch.nn.init.normal_(net.out_proj.weight)  # zero at init: give it an output
    g = torch.Generator().manual_seed(0)
    c_emb, p_states = torch.randn(2, 5, 16, generator=g), torch.randn(2, 7, 16, generator=g)
    c_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padded
    p_mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7])  # right padded
    v = net(c_emb, c_mask, p_states, p_mask)
    assert v.shape == (2, 16)
    # padding is ignored: changing padded positions leaves v as it was
    c_emb2, p_states2 = c_emb.clone(), p_states.clone()
    c_emb2[0, :2] += 5.0
    p_states2[0, 4:] += 5.0
    assert torch.allclose(net(c_emb2, c_mask, p_states2, p_mask), v, atol=1e-5)
    # the concept and the prompt both change v
    assert not torch.allclose(net(c_emb[[1, 1]], c_mask[[1, 1]], p_states, p_mask)[0], v[0])
    assert not torch.allclose(net(c_emb, c_mask, p_states[[1, 1]], p_mask[[1, 1]])[0], v[0])


def _steer_params(**over: Any) -> SteeringEvalParams:
    base = {
        "factors": [0.5, 1.0, 2.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 4, "batch_size": 8},
        "judge": {"kind": "llm", "model": "gpt-4o-mini"},
        "n_resamples": 20,
    }
    base.update(over)
    return SteeringEvalParams.model_validate(base)


def _prompts_frame(tm) -> pd.DataFrame:
    rows = []
    for cid in (0, 1, 2):
        for i, text in enumerate(PROMPTS):
            inp = format_prompt(tm.tokenizer, text)
            rows.append(
                {
                    "dataset_name": "AlpacaEval",
                    "concept_id": cid,
                    "input_id": i,
                    "input": inp,
                    "steered_input": inp,
                }
            )
    return pd.DataFrame(rows)


def test_steering_units_carry_one_vector_per_prompt_and_are_cached_by_it(tm, trained, tmp_path) -> None:
    art, _ = trained
    arts = {"HyperSteer": art}
    (cid,) = art.concept_ids
    params = _steer_params()
    (plan,) = steering_plans(
        ["HyperSteer"], arts, pd.DataFrame(), params, layer=LAYER, tm=tm, concept_ids=[0, 1, 2]
    )
    assert plan.covered == frozenset({cid}) and not plan.factor_free and plan.magnitudes == {cid: 1.0}
    prompts = _prompts_frame(tm)
    units, rows = plan_units(plan, prompts, replicates=1)
    assert (
        set(units["concept_id"]) == {cid} and len(units) == 3 * 3
    )  # held-out concept only: prompts × factors
    assert sorted(rows["strength"].unique()) == [0.5, 1.0, 2.0]  # m = 1
    assert units.groupby("prompt")["vector_sha"].nunique().eq(1).all()
    assert units["vector_sha"].nunique() == 3  # one vector per (concept, prompt)
    expected = get_method("HyperSteer").prompt_steering_vectors(
        art, tm, LAYER, [cid] * 3, list(prompts["input"][:3])
    )

    calls: list[torch.Tensor] = []

    def spy(tm_, batch_prompts, vectors, strengths, layer, **kw):
        for p, v in zip(batch_prompts, vectors, strict=True):
            k = list(prompts["input"][:3]).index(p)
            assert torch.allclose(v, expected[k], atol=1e-5)  # the unit's own v(c, x)
        calls.append(strengths)
        return steered_generate(tm_, batch_prompts, vectors, strengths, layer, **kw)

    def counting(tm_, batch_prompts, vectors, strengths, layer, **kw):
        calls.append(strengths)
        return steered_generate(tm_, batch_prompts, vectors, strengths, layer, **kw)

    cache = SQLiteCache(tmp_path / "g.sqlite", "g")
    frame = generate_plans([plan], prompts, tm, cache, params, layer=LAYER, seed=42, generate_fn=spy)
    assert len(frame) == 9 and set(frame["concept_id"]) == {cid} and calls
    calls.clear()
    again = generate_plans([plan], prompts, tm, cache, params, layer=LAYER, seed=42, generate_fn=spy)
    assert calls == [] and again.equals(frame)  # cached under the per-prompt vector hashes
    # another vector for the same prompt is another cache key: nothing is reused wrongly
    other = MethodArtifact(art.method, {k: v * 2 for k, v in art.tensors.items()}, dict(art.meta))
    (plan2,) = steering_plans(
        ["HyperSteer"],
        {"HyperSteer": other},
        pd.DataFrame(),
        params,
        layer=LAYER,
        tm=tm,
        concept_ids=[0, 1, 2],
    )
    generate_plans([plan2], prompts, tm, cache, params, layer=LAYER, seed=42, generate_fn=counting)
    assert sum(len(s) for s in calls) == 9


def test_suppression_negates_the_factors_with_unit_magnitude(tm, trained) -> None:
    art, _ = trained
    (plan,) = suppression_plans(
        ["HyperSteer"],
        {"HyperSteer": art},
        pd.DataFrame(),
        _steer_params(),
        layer=LAYER,
        tm=tm,
        concept_ids=[0, 1, 2],
    )
    units, rows = plan_units(plan, _prompts_frame(tm), replicates=1)
    assert sorted(rows["strength"].unique()) == [-2.0, -1.0, -0.5]
    assert set(units["concept_id"]) == set(art.concept_ids)


@pytest.mark.slow
def test_hypersteer_runs_through_training_latent_eval_steering_eval_and_reporting(tmp_path) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)
    hp = {"HyperSteer": {**FAST, "epochs": 2}}
    params = TrainingParams(methods=["DiffMean", "HyperSteer"], hyperparameters=hp)
    catalog = training_catalog(tm, str(tmp_path / "no_sae.npz"), tmp_path / "cache", params)
    SequentialRunner().run(training_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    summary = catalog.load("training_summary").set_index("method")
    _, held = held_out_split([0, 1, 2], 1, seed=42)
    assert arts["HyperSteer"].ok and arts["HyperSteer"].concept_ids == held
    assert summary.loc["HyperSteer", "n_concepts"] == 1 and summary.loc["DiffMean", "n_concepts"] == 3
    SequentialRunner().run(
        training_pipeline(), catalog
    )  # unchanged rerun: the one joint result comes from the cache
    again = catalog.load("training_summary").set_index("method")
    assert again.loc["HyperSteer", "cached_concepts"] == 1
    assert catalog.load("method_artifacts")["HyperSteer"].fingerprint() == arts["HyperSteer"].fingerprint()
    run = RunSettings(setting="tiny", layer=LAYER, seed=42)
    # HyperSteer has no detection: latent_eval scores DiffMean and gives HyperSteer m = 1
    latent = run_latent(tmp_path, tm=tm, concepts_meta=catalog.load("concepts_meta"), artifacts=arts, run=run)
    assert set(latent["latent_scores"]["method"]) == {"DiffMean"}
    mags = latent["max_activations"]
    hs_mags = mags[mags["method"] == "HyperSteer"]
    assert hs_mags["concept_id"].tolist() == held and (hs_mags["magnitude_base"] == 1.0).all()
    out = run_steering(
        tmp_path,
        tm=tm,
        concepts_meta=catalog.load("concepts_meta"),
        artifacts=arts,
        max_activations=mags,
        params=_steer_params(methods=None, factors=[0.5, 1.0]),
        instructions=[*PROMPTS, "hello there"],
        run=run,
    )
    gens = out["steering_generations"]
    hs = gens[gens["method"] == "HyperSteer"]
    assert (
        set(hs["concept_id"]) == set(held) and len(hs) == 1 * 2 * 2
    )  # held-out concept × instructions × factors
    assert sorted(hs["strength"].unique()) == [0.5, 1.0]
    selection = out["steering_selection"]
    assert set(selection[selection["method"] == "HyperSteer"]["concept_id"]) == set(held)
    steer_summary = out["steering_summary"]
    board = make_leaderboard(
        selection.assign(setting=run.setting) if "setting" not in selection else selection,
        steer_summary.assign(setting=run.setting) if "setting" not in steer_summary else steer_summary,
        ReportingParams(n_resamples=20),
        run,
    )
    rows = board[board["setting"] == run.setting].set_index("method")
    assert {"DiffMean", "HyperSteer"} <= set(rows.index)
    assert rows.loc["HyperSteer", "overall"] == pytest.approx(2.0)  # every judge rating is 2 → HM = 2
