"""suppression end to end on the tiny model with the loopback OpenAI-compatible server as generator and judge:
versioned outputs, negated factors with each method's suppression intervention, the prompt defence, the
HM(2 − concept, instruction, fluency) score, and a rerun without LLM calls or generations."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.suppression import SuppressionParams
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.pipeline_registry import DEFAULT_ORDER, register_pipelines
from axbench_kedro.pipelines.suppression import create_pipeline
from axbench_kedro.suppression.prompts import SUPPRESS_DATASET
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import catalog_entry, project_llm_prices, project_prompt_templates

LAYER = 1
CONCEPTS = ["references to rental services", "astronomy and stars", "cooking pasta"]
INSTRUCTIONS = [
    f"tell me about the {w}" for w in ("sea", "city", "train", "music", "school", "river", "game")
]
REPS_BIAS = [0.5, -0.25]
OUTPUTS = [
    "suppression_texts",
    "suppression_prompts",
    "suppression_generations",
    "suppression_judgements",
    "suppression_scores",
    "suppression_selection",
    "suppression_summary",
    "suppression_llm_usage",
]


# ---- inputs ------------------------------------------------------------------------------------------------------
def _concepts() -> pd.DataFrame:
    return pd.DataFrame({"concept_id": [0, 1, 2], "concept": CONCEPTS, "ref": "null", "sae_id": -1})


def _artifacts(d: int) -> dict[str, MethodArtifact]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, d, generator=gen)
    w = w / w.norm(dim=1, keepdim=True)
    meta = {"status": "ok", "layer": LAYER, "concept_ids": [0, 1, 2], "d": d}
    bias = torch.tensor([*REPS_BIAS, 0.0])
    return {
        "DiffMean": MethodArtifact(
            "DiffMean", {"weight": w, "bias": torch.zeros(3)}, {**meta, "method": "DiffMean"}
        ),
        "RePS": MethodArtifact("RePS", {"weight": w.flip(0), "bias": bias}, {**meta, "method": "RePS"}),
        "Prompt": MethodArtifact("Prompt", {}, {**meta, "method": "Prompt"}),
    }


def _max_activations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": [0, 1, 2],
            "method": "DiffMean",
            "max_act": [3.0, 2.0, 1.0],
            "magnitude_base": [3.0, 2.0, 1.0],
            "source": "latent_eval",
        }
    )


def _params() -> SuppressionParams:
    return SuppressionParams.model_validate(
        {
            "concepts": {"max_concepts": 2},
            "steering": {
                "methods": ["DiffMean", "RePS", "Prompt"],
                "dataset_name": SUPPRESS_DATASET,
                "factors": [0.5, 1.0, 2.0],
                "method_factors": {"RePS": [1.0, 4.0]},
                "instructions": {"n_selection": 2, "n_test": 2},
                "generation": {"max_new_tokens": 5, "batch_size": 8},
                "judge": {"kind": "llm", "model": "gpt-4o-mini"},
                "n_resamples": 50,
            },
        }
    )


# ---- scripted LLMs -----------------------------------------------------------------------------------------------
def _generator_reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "Rewrite the instruction" in prompt:
        instruction = re.search(r"=== BEGIN INSTRUCTION ===\n(.*?)\n===", prompt, re.S).group(1)
        return f"{instruction}, and make it about the concept"
    return "" if "astronomy" in prompt else "Never say anything about renting."


def _judge_reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "BEGIN CONCEPT" in prompt:
        return "Rating: [[2]]" if "rental" in prompt else "Rating: [[1]]"
    if "BEGIN INSTRUCTION" in prompt:
        return "Rating: [[2]]"
    return "Rating: [[1]]"


# ---- catalog: the project's own entries of the outputs, written under tmp_path ------------------------------------
def _output_entries(folder: Path) -> dict[str, dict]:
    entries = {}
    for name in OUTPUTS:
        config = catalog_entry(name)
        config["filepath"] = str(folder / Path(config["filepath"]).name)
        entries[name] = config
    return entries


def _run(tm, tmp_path: Path, gen_server, judge_server, params: SuppressionParams) -> DataCatalog:
    catalog = DataCatalog.from_config(_output_entries(tmp_path / "out"))
    inputs = {
        "concepts_meta": MemoryDataset(_concepts()),
        "steering_instructions": MemoryDataset(pd.DataFrame({"instruction": INSTRUCTIONS})),
        "method_artifacts": MemoryDataset(_artifacts(tm.d_model), copy_mode="assign"),
        "max_activations": MemoryDataset(_max_activations()),
        "target_model": MemoryDataset(tm, copy_mode="assign"),
        "generator_llm": MemoryDataset(client_for(gen_server, tmp_path / "llm.sqlite"), copy_mode="assign"),
        "judge_llm": MemoryDataset(
            lambda: client_for(judge_server, tmp_path / "llm.sqlite"), copy_mode="assign"
        ),
        "llm_prices": MemoryDataset(project_llm_prices(), copy_mode="assign"),
        "prompt_templates": MemoryDataset(project_prompt_templates(), copy_mode="assign"),
        "generation_cache": MemoryDataset(SQLiteCache(tmp_path / "gen.sqlite", "g"), copy_mode="assign"),
        "params:suppression.concepts": MemoryDataset(params.concepts, copy_mode="assign"),
        "params:suppression.texts": MemoryDataset(params.texts, copy_mode="assign"),
        "params:suppression.steering": MemoryDataset(params.steering, copy_mode="assign"),
        "params:run": MemoryDataset(RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"),
    }
    for name, dataset in inputs.items():
        catalog[name] = dataset
    SequentialRunner().run(create_pipeline(), catalog)
    return catalog


# ---- end to end --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_suppression_end_to_end(tiny_gemma3, tmp_path) -> None:
    params = _params()
    with FakeOpenAIServer(reply_fn=_generator_reply) as gen, FakeOpenAIServer(reply_fn=_judge_reply) as judge:
        catalog = _run(tiny_gemma3, tmp_path, gen, judge, params)
        out = {name: catalog.load(name) for name in OUTPUTS}
        n_gen_calls, n_judge_calls = len(gen.requests), len(judge.requests)
        n_generated = len(SQLiteCache(tmp_path / "gen.sqlite", "g"))
        again_catalog = _run(tiny_gemma3, tmp_path, gen, judge, params)
        assert len(gen.requests) == n_gen_calls and len(judge.requests) == n_judge_calls  # rerun: 0 LLM calls
    assert len(SQLiteCache(tmp_path / "gen.sqlite", "g")) == n_generated  # rerun: 0 generations

    # Versioned: every output is <name>.parquet/<version>/<name>.parquet, one version per run.
    for name in OUTPUTS:
        folder = tmp_path / "out" / f"{name}.parquet"
        versions = sorted(p.name for p in folder.iterdir())
        assert len(versions) == 2, name
        assert all((folder / v / f"{name}.parquet").is_file() for v in versions)

    # Texts: 2 concepts (max_concepts) × 4 instructions R1 + 2 R2 calls; the empty R2 reply → fallback.
    texts = out["suppression_texts"]
    assert n_gen_calls == 2 * 4 + 2 and len(texts) == 8
    assert texts["rewritten"].str.endswith(", and make it about the concept").all()
    by_concept = texts.drop_duplicates("concept_id").set_index("concept_id")
    assert by_concept.loc[0, "suppress_original"] == "Never say anything about renting."
    assert by_concept.loc[1, "suppress_original_is_fallback"]
    assert "astronomy and stars" in by_concept.loc[1, "suppress_original"]

    prompts = out["suppression_prompts"]
    assert set(prompts["dataset_name"]) == {SUPPRESS_DATASET}
    assert sorted(prompts["factor"].unique()) == [-2.0, -1.0, -0.5]  # the steering grid negated
    row = prompts[(prompts["concept_id"] == 0) & (prompts["input_id"] == 0)].iloc[0]
    assert row["original_prompt"] in INSTRUCTIONS and row["steered_prompt"] in row["input"]
    assert "Never say anything about renting.\n\n" + row["steered_prompt"] in row["steered_input"]  # [D 23]

    # Generations: negated factors; DiffMean m·(−f), RePS s(−f, b) = −f − b (m = 1), Prompt defence factor-free.
    gens = out["suppression_generations"]
    assert set(gens["dataset_name"]) == {SUPPRESS_DATASET} and set(gens["concept_id"]) == {0, 1}
    assert (gens["factor"] < 0).all()
    dm = gens[gens["method"] == "DiffMean"].set_index(["concept_id", "input_id", "factor"])["strength"]
    assert dm.loc[(0, 0, -2.0)] == pytest.approx(-6.0) and dm.loc[(1, 1, -0.5)] == pytest.approx(-1.0)
    reps = gens[gens["method"] == "RePS"]
    assert sorted(reps["factor"].unique()) == [-4.0, -1.0]
    reps = reps.set_index(["concept_id", "input_id", "factor"])["strength"]
    assert reps.loc[(0, 0, -4.0)] == pytest.approx(-4.5)  # −4 − 0.5
    assert reps.loc[(1, 2, -1.0)] == pytest.approx(-0.75)  # −1 − (−0.25)
    defence = gens[gens["method"] == "Prompt"]
    assert defence["strength"].isna().all() and len(defence) == 2 * 4 * 3
    assert (defence.groupby(["concept_id", "input_id"])["steered_generation"].nunique() == 1).all()

    # Scores: concept 0 rated 2 → 2 − 2 = 0 vetoes the HM; concept 1: HM(2 − 1, 2, 1) = 1.2.
    judged = out["suppression_judgements"]
    assert set(judged["criterion"]) == {"concept", "instruction", "fluency"}
    scores = out["suppression_scores"]
    assert np.allclose(scores.loc[scores["concept_id"] == 0, "lm_judge_rating"], 0.0)
    assert np.allclose(scores.loc[scores["concept_id"] == 1, "lm_judge_rating"], 1.2)
    selection = out["suppression_selection"].set_index(["method", "concept_id"])
    assert selection.loc[("DiffMean", 1), "test_hm"] == pytest.approx(1.2)
    assert (
        selection.loc[("DiffMean", 1), "best_factor"] == -2.0
    )  # ties → first in ascending order (strongest)
    assert selection.loc[("RePS", 1), "best_factor"] == -4.0
    assert np.isnan(selection.loc[("Prompt", 1), "best_factor"])
    summary = out["suppression_summary"].set_index("method")
    assert set(summary.index) == {"DiffMean", "RePS", "Prompt"}
    assert summary.loc["DiffMean", "overall"] == pytest.approx(0.6)  # mean of 0 and 1.2
    assert set(summary["dataset_name"]) == {SUPPRESS_DATASET} and (summary["n_concepts"] == 2).all()

    usage = out["suppression_llm_usage"].set_index("stage")
    assert usage.loc["suppression.texts", "calls"] == n_gen_calls
    assert usage["calls"].sum() == n_gen_calls + n_judge_calls
    again = {name: again_catalog.load(name) for name in OUTPUTS}
    assert again["suppression_llm_usage"]["calls"].sum() == 0
    pd.testing.assert_frame_equal(again["suppression_generations"], gens)
    pd.testing.assert_frame_equal(again["suppression_summary"], out["suppression_summary"])


# ---- registration and configuration ------------------------------------------------------------------------------
def test_suppression_is_registered_outside_the_default_run() -> None:
    from kedro.framework.project import configure_project

    configure_project("axbench_kedro")
    pipelines = register_pipelines()
    assert "suppression" not in DEFAULT_ORDER
    suppression = pipelines["suppression"]
    assert all(n.name.startswith("suppression.") and "suppression" in n.tags for n in suppression.nodes)
    assert not set(n.name for n in suppression.nodes) & set(n.name for n in pipelines["__default__"].nodes)
    # The steering nodes are reused, not copied.
    funcs = {n.func.__module__ for n in suppression.nodes}
    assert "axbench_kedro.pipelines.steering_eval.nodes" in funcs


def test_every_suppression_output_is_versioned_with_a_layer() -> None:
    for name in OUTPUTS:
        entry = catalog_entry(name)
        assert entry["versioned"] is True, name
        layer = "model_output" if "07_model_output" in entry["filepath"] else "reporting"
        assert re.search(rf"data/0[78]_[a-z_]+/[^/]+/{name}\.parquet$", entry["filepath"]), name
        assert entry["metadata"]["kedro-viz"]["layer"] == layer, name


def test_suppression_steering_block_must_name_the_suppression_dataset() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="AlpacaEvalSuppress"):
        SuppressionParams.model_validate({"steering": {"dataset_name": "AlpacaEval"}})
    assert SuppressionParams().steering.dataset_name == SUPPRESS_DATASET


def test_suppression_nodes_refuse_a_steering_dataset_name(tiny_gemma3) -> None:
    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.errors import AxbenchConfigError
    from axbench_kedro.pipelines.suppression.nodes import build_suppression_prompts

    params = _params()
    with pytest.raises(AxbenchConfigError, match="suppression.steering.dataset_name"):
        build_suppression_prompts(
            _concepts(),
            pd.DataFrame({"instruction": INSTRUCTIONS}),
            pd.DataFrame(),
            tiny_gemma3,
            params.concepts,
            SteeringEvalParams(),
        )
