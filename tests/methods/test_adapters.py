"""LoRA and LoReFT (protocol §3.12) on a tiny model: the LM loss falls, R stays orthonormal, the adapter is attached
only inside its context, and steering samples once per instruction from the adapted model through the pipelines."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.chat import chat_prefix_length, format_prompt
from axbench_kedro.lm.generation import sample_generate
from axbench_kedro.methods.activations import compute_lm_rows
from axbench_kedro.methods.adapters import full_response_loss
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.loreft import attached_edits, loreft_edit, prompt_position_mask
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, train_methods
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from axbench_kedro.steering.plans import plan_units, steering_plans
from axbench_kedro.steering.schedule import generate_plans
from fixtures.tiny_models import make_tiny_target_model

from .pipeline_inputs import LAYER, run_steering, training_catalog

ADAPTERS = ["LoRA", "LoReFT"]
# small but real runs: every layer of the tiny model, a high learning rate, single-row accumulation
FAST = {"lr": 2e-2, "epochs": 12, "batch_size": 6, "gradient_accumulation": 1, "layers": [0, 1, 2]}
PROMPTS = ["tell me about the sea", "what is a good game", "write a short story about a dog"]


def _steer_params(**over: Any) -> SteeringEvalParams:
    base = {
        "factors": [0.5, 1.0, 2.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "judge": {"kind": "llm", "model": "gpt-4o-mini"},
        "n_resamples": 20,
    }
    base.update(over)
    return SteeringEvalParams.model_validate(base)


@pytest.fixture(scope="module")
def trained(tm, concepts) -> dict[str, MethodArtifact]:
    methods = [(get_method(n), dict(FAST)) for n in ADAPTERS]
    arts, _ = train_methods(tm, concepts, methods, TrainOptions(setting="t", layer=LAYER, seed=42))
    return arts


def _positive_loss(tm, concept, loreft: MethodArtifact | None = None) -> float:
    """Mean CE over the concept's positive responses; with ``loreft``, under its interventions at the first/last
    five prompt positions (as in training)."""
    rows = compute_lm_rows(
        tm,
        [format_prompt(tm.tokenizer, i) for i in concept.pos_inputs],
        list(concept.pos_outputs),
        LAYER,
        chat_prefix_length(tm.tokenizer),
        batch_size=6,
    )
    batch = rows.batch(range(len(rows)))
    state = {"mask": None}
    edits = {}
    if loreft is not None:
        row = loreft.concept_ids.index(concept.concept_id)
        state["mask"] = prompt_position_mask(batch.attention_mask, torch.tensor(rows.prompt_lengths), 5, 5)
        for i, layer in enumerate(loreft.tensors["layers"][row].tolist()):
            t = [loreft.tensors[k][row, i] for k in ("R", "W", "b")]
            edits[layer] = lambda h, t=t: loreft_edit(h, *t)
    with torch.no_grad(), attached_edits(tm.model, edits, state):
        return float(full_response_loss(tm, batch))


@pytest.mark.parametrize("name", ADAPTERS)
def test_training_lowers_the_lm_loss_on_the_concept_responses(tm, concepts, trained, name) -> None:
    art = trained[name]
    assert art.ok and art.concept_ids == [0, 1]
    assert art.tensors["layers"].tolist() == [[0, 1, 2], [0, 1, 2]]
    method = get_method(name)
    for concept in concepts:
        before = _positive_loss(tm, concept)
        if name == "LoRA":
            with method.adapter(art, tm, concept.concept_id):
                after = _positive_loss(tm, concept)
        else:
            after = _positive_loss(tm, concept, loreft=art)
        assert _positive_loss(tm, concept) == pytest.approx(before, abs=1e-6)  # detached on exit
        # a random tiny model on word-salad responses: ~6.1 nats at the start, a few tenths can be learned
        assert after < before - 0.1, (name, concept.concept_id, before, after)
    losses = art.meta["train_loss"][0]
    assert len(losses) == 12 and losses[-1] < losses[0]


def test_lora_shapes_and_rslora_scaling(tm, trained) -> None:
    art = trained["LoRA"]
    assert art.tensors["lora_A"].shape == (2, 3, 4, 64)  # concepts × layers × r × d_in
    assert art.tensors["lora_B"].shape == (2, 3, 64, 4)
    assert art.tensors["lora_B"].abs().sum() > 0  # B left its zero init
    hp = get_method("LoRA").params(art.meta["hyperparameters"])
    from axbench_kedro.methods.lora import _ADAPTER, attached_lora

    with attached_lora(tm.model, [1], hp) as (mod,):
        assert mod.scaling[_ADAPTER] == pytest.approx(32 / 4**0.5)  # rsLoRA: α/√r
    assert type(tm.model.model.layers[1].self_attn.o_proj).__name__ == "Linear"
    assert not hasattr(tm.model.model.layers[1].self_attn.o_proj, "lora_A")  # restored


def test_loreft_rotation_keeps_orthonormal_rows(trained) -> None:
    art = trained["LoReFT"]
    R = art.tensors["R"]
    assert R.shape == (2, 3, 4, 64) and art.tensors["W"].shape == (2, 3, 4, 64)
    eye = torch.eye(4)
    for c in range(2):
        for layer in range(3):
            assert torch.linalg.norm(R[c, layer] @ R[c, layer].T - eye) < 1e-5


def test_prompt_positions_are_the_first_and_last_prompt_tokens_on_either_padding_side() -> None:
    right = torch.tensor([[1] * 14 + [0] * 2])
    mask = prompt_position_mask(right, torch.tensor([12]), first_n=5, last_n=5)
    assert mask[0].nonzero()[:, 0].tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
    left = torch.tensor([[0, 0, 0] + [1] * 6])
    mask = prompt_position_mask(left, torch.tensor([6]), first_n=5, last_n=5)
    assert mask[0].nonzero()[:, 0].tolist() == [3, 4, 5, 6, 7, 8]  # a short prompt: the union, once each


def test_layers_outside_the_model_are_a_config_error(tm, concepts) -> None:
    bad = [(get_method("LoRA"), {**FAST, "layers": [1, 7]})]
    with pytest.raises(AxbenchConfigError, match=r"training\.hyperparameters\.LoRA\.layers.*\[7\]"):
        train_methods(tm, concepts, bad, TrainOptions(setting="t", layer=LAYER, seed=42))


def _zeroed(art: MethodArtifact) -> MethodArtifact:
    tensors = dict(art.tensors)
    if "lora_B" in tensors:
        tensors["lora_B"] = torch.zeros_like(tensors["lora_B"])
    else:  # W = R, b = 0: Wh + b − Rh = 0
        tensors["W"], tensors["b"] = tensors["R"].clone(), torch.zeros_like(tensors["b"])
    return MethodArtifact(art.method, tensors, dict(art.meta))


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapted_sampling_differs_for_a_trained_adapter_and_not_for_a_zeroed_one(tm, trained, name) -> None:
    method = get_method(name)
    prompts = [format_prompt(tm.tokenizer, p) for p in PROMPTS]

    def sample(art: MethodArtifact | None) -> list[str]:
        kwargs = {"max_new_tokens": 8, "batch_size": 3, "seed": 7}
        if art is None:
            return [g.text for g in sample_generate(tm, prompts, **kwargs)]
        with method.adapter(art, tm, 0):
            return [g.text for g in sample_generate(tm, prompts, **kwargs)]

    plain = sample(None)
    assert sample(_zeroed(trained[name])) == plain
    assert sample(trained[name]) != plain
    assert sample(None) == plain  # nothing left attached


@pytest.mark.parametrize("name", ADAPTERS)
def test_a_batch_without_padding_is_adapted_too(tm, trained, name) -> None:
    """One prompt alone (no padding, so generation may pass no attention mask) still gets the adapter."""
    method = get_method(name)
    prompt = [format_prompt(tm.tokenizer, PROMPTS[2])]
    kwargs = {"max_new_tokens": 8, "batch_size": 1, "seed": 7}
    plain = [g.text for g in sample_generate(tm, prompt, **kwargs)]
    with method.adapter(trained[name], tm, 0):
        adapted = [g.text for g in sample_generate(tm, prompt, **kwargs)]
    assert adapted != plain


def _prompts_frame(tm) -> pd.DataFrame:
    rows = []
    for cid in (0, 1):
        for i, text in enumerate(PROMPTS):
            rows.append(
                {
                    "dataset_name": "AlpacaEval",
                    "concept_id": cid,
                    "input_id": i,
                    "input": format_prompt(tm.tokenizer, text),
                    "steered_input": format_prompt(tm.tokenizer, "Mention the concept. " + text),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ADAPTERS)
def test_steering_generates_once_per_instruction_inside_the_concepts_adapter(
    tm, trained, tmp_path, name
) -> None:
    params = _steer_params()
    (plan,) = steering_plans([name], trained, pd.DataFrame(), params, layer=LAYER, tm=tm, concept_ids=[0, 1])
    assert plan.factor_free and plan.adapter is not None and plan.vectors is None
    prompts = _prompts_frame(tm)
    units, rows = plan_units(plan, prompts, replicates=1)
    assert len(units) == 6 and len(rows) == 6 * 3  # one generation per instruction, shared by the 3 factors
    assert (units["prompt"] == prompts["input"]).all()  # the plain instruction, not the steered one
    assert units["vector_sha"].nunique() == 2  # one adapter hash per concept

    calls: list[tuple[int, str]] = []
    hooks_before = len(tm.model._forward_pre_hooks)

    def attached() -> bool:
        lora = hasattr(tm.model.model.layers[0].self_attn.o_proj, "lora_A")
        return lora or len(tm.model._forward_pre_hooks) > hooks_before

    def spy(tm_: Any, batch_prompts: list[str], **kw: Any) -> list[Any]:
        calls.append((len(batch_prompts), "on" if attached() else "off"))
        return sample_generate(tm_, batch_prompts, **kw)

    frame = generate_plans(
        [plan],
        prompts,
        tm,
        SQLiteCache(tmp_path / "g.sqlite", "g"),
        params,
        layer=LAYER,
        seed=42,
        sample_fn=spy,
    )
    assert calls == [(3, "on"), (3, "on")]  # one batch per concept, each instruction once, adapter attached
    assert not attached()
    calls.clear()
    again = generate_plans(
        [plan],
        prompts,
        tm,
        SQLiteCache(tmp_path / "g.sqlite", "g"),
        params,
        layer=LAYER,
        seed=42,
        sample_fn=spy,
    )
    assert calls == [] and again.equals(frame)  # cached under the adapter's hash
    assert len(frame) == 18 and frame["strength"].isna().all()
    per_instruction = frame.groupby(["concept_id", "input_id"])["steered_generation"].nunique()
    assert (per_instruction == 1).all()  # the factor rows share their instruction's generation
    # the generation is that of the adapted model with the batch's seed
    first = frame[(frame["concept_id"] == 0)].drop_duplicates("input_id").sort_values("input_id")
    seed_rows = first["seed"].tolist()
    assert len(set(seed_rows)) == 3


@pytest.mark.slow
def test_adapters_run_through_training_and_steering_eval(tmp_path) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)
    hp = {n: {**FAST, "epochs": 2, "layers": None} for n in ADAPTERS}
    params = TrainingParams(methods=["DiffMean", *ADAPTERS], hyperparameters=hp)
    catalog = training_catalog(tm, str(tmp_path / "no_sae.npz"), tmp_path / "cache", params)
    SequentialRunner().run(training_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    for name in ADAPTERS:
        assert arts[name].ok and arts[name].concept_ids == [0, 1, 2]
        assert arts[name].tensors["layers"].tolist() == [[LAYER]] * 3  # layers: null = the training layer
    mags = pd.DataFrame(
        {"concept_id": [0, 1, 2], "method": "DiffMean", "max_act": 1.0, "magnitude_base": 1.0, "source": "t"}
    )
    run = RunSettings(setting="tiny", layer=LAYER, seed=42)
    out = run_steering(
        tmp_path,
        tm=tm,
        concepts_meta=catalog.load("concepts_meta"),
        artifacts=arts,
        max_activations=mags,
        params=_steer_params(methods=None, factors=[0.5, 1.0]),
        instructions=PROMPTS + ["hello there"],
        run=run,
    )
    gens = out["steering_generations"]
    assert set(gens["method"]) == {"DiffMean", *ADAPTERS}
    for name in ADAPTERS:
        rows = gens[gens["method"] == name]
        assert len(rows) == 3 * 2 * 2 and rows["strength"].isna().all()  # concepts × instructions × factors
        assert (rows.groupby(["concept_id", "input_id"])["steered_generation"].nunique() == 1).all()
    selection = out["steering_selection"]
    assert {"DiffMean", *ADAPTERS} <= set(selection["method"])
    for name in ADAPTERS:
        assert selection[selection["method"] == name]["best_factor"].isna().all()  # factor-free
