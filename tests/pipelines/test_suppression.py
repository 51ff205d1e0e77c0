"""suppression end to end on the tiny model with the loopback OpenAI-compatible server as generator and judge:
versioned outputs, negated factors with each method's suppression intervention, the prompt defence, the
HM(2 − concept, instruction, fluency) score, a rule concept judged by the rule judge, the attacks at the selected
factors, and a rerun without LLM calls or generations."""

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
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.config.suppression import SuppressionParams
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.pipeline_registry import DEFAULT_ORDER, register_pipelines
from axbench_kedro.pipelines.suppression import create_pipeline
from axbench_kedro.scaling import ScalingParams
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
    "multishot_examples",
    "attack_prompts",
    "attack_generations",
    "attack_judgements",
    "attack_scores",
    "attack_summary",
]
REPORT_OUTPUTS = ["suppression_leaderboard", "attack_table", "suppression_markdown", "attack_plot"]
RULE_CONCEPT = (
    2  # "cooking pasta" carries rule_id postscript: no tiny-model text holds a "P.S." line → rule 0
)


# ---- inputs ------------------------------------------------------------------------------------------------------
def _concepts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": [0, 1, 2],
            "concept": CONCEPTS,
            "ref": "null",
            "sae_id": -1,
            "rule_id": [None, None, "postscript"],
        }
    )


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
            "concepts": {"max_concepts": 3},
            "attacks": {"n_shots": [1, 2], "overwrite": ["append"]},
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
    if "example conversations" in prompt:  # R4
        return "User: q1?\nAssistant: A1. P.S. one\n\nUser: q2?\nAssistant: A2. P.S. two\nUser: q3?\nAssistant: A3"
    if "never to follow the writing rule" in prompt:  # R3
        return "Never add a postscript."
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
    for name in [*OUTPUTS, *REPORT_OUTPUTS]:
        config = catalog_entry(name)
        config["filepath"] = str(folder / Path(config["filepath"]).name)
        entries[name] = config
    return entries


def _run(
    tm,
    tmp_path: Path,
    gen_server,
    judge_server,
    params: SuppressionParams,
    scaling: ScalingParams | None = None,
) -> DataCatalog:
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
        "params:suppression.attacks": MemoryDataset(params.attacks, copy_mode="assign"),
        "params:suppression.rule_judge": MemoryDataset(params.rule_judge, copy_mode="assign"),
        "params:run": MemoryDataset(RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"),
        "params:scaling": MemoryDataset(scaling or ScalingParams(), copy_mode="assign"),
        "params:reporting": MemoryDataset(ReportingParams(), copy_mode="assign"),
        "suppression_results": MemoryDataset({}, copy_mode="assign"),  # no other setting on disk
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
        judge_bodies = list(judge.requests)
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

    # Texts: 3 concepts × 4 instructions R1 + 3 R2 + 1 R3 (the rule concept) + 1 R4 call (2 examples needed, 3
    # parsed per call); the empty R2 reply → fallback.
    texts = out["suppression_texts"]
    assert n_gen_calls == 3 * 4 + 3 + 1 + 1 and len(texts) == 12
    assert texts.set_index("concept_id")["suppress_rewrite"].to_dict() == {
        0: "",
        1: "",
        2: "Never add a postscript.",
    }
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
    assert set(gens["dataset_name"]) == {SUPPRESS_DATASET} and set(gens["concept_id"]) == {0, 1, 2}
    assert (gens["factor"] < 0).all()
    dm = gens[gens["method"] == "DiffMean"].set_index(["concept_id", "input_id", "factor"])["strength"]
    assert dm.loc[(0, 0, -2.0)] == pytest.approx(-6.0) and dm.loc[(1, 1, -0.5)] == pytest.approx(-1.0)
    reps = gens[gens["method"] == "RePS"]
    assert sorted(reps["factor"].unique()) == [-4.0, -1.0]
    reps = reps.set_index(["concept_id", "input_id", "factor"])["strength"]
    assert reps.loc[(0, 0, -4.0)] == pytest.approx(-4.5)  # −4 − 0.5
    assert reps.loc[(1, 2, -1.0)] == pytest.approx(-0.75)  # −1 − (−0.25)
    defence = gens[gens["method"] == "Prompt"]
    assert defence["strength"].isna().all() and len(defence) == 3 * 4 * 3
    assert (defence.groupby(["concept_id", "input_id"])["steered_generation"].nunique() == 1).all()

    # Scores: concept 0 rated 2 → 2 − 2 = 0 vetoes the HM; concept 1: HM(2 − 1, 2, 1) = 1.2; the rule concept:
    # no J1 call, the rule judge's 0 → HM(2 − 0, 2, 1) = 1.5.
    judged = out["suppression_judgements"]
    plain, ruled = judged[judged["concept_id"] != RULE_CONCEPT], judged[judged["concept_id"] == RULE_CONCEPT]
    assert set(plain["criterion"]) == {"concept", "instruction", "fluency"}
    assert set(ruled["criterion"]) == {"rule", "instruction", "fluency"}
    rule_rows = ruled[ruled["criterion"] == "rule"]
    assert (rule_rows["judge_kind"] == "rule").all() and (rule_rows["rating"] == 0.0).all()
    assert (rule_rows["parse_rule"] == "rules-v1").all() and (
        ruled.loc[ruled["criterion"] != "rule", "judge_kind"] == "llm"
    ).all()
    assert len(rule_rows) == len(gens[gens["concept_id"] == RULE_CONCEPT])
    scores = out["suppression_scores"]
    assert np.allclose(scores.loc[scores["concept_id"] == 0, "lm_judge_rating"], 0.0)
    assert np.allclose(scores.loc[scores["concept_id"] == 1, "lm_judge_rating"], 1.2)
    assert np.allclose(scores.loc[scores["concept_id"] == RULE_CONCEPT, "lm_judge_rating"], 1.5)
    assert np.allclose(scores.loc[scores["concept_id"] == RULE_CONCEPT, "relevance_concept_ratings"], 0.0)
    selection = out["suppression_selection"].set_index(["method", "concept_id"])
    assert selection.loc[("DiffMean", 1), "test_hm"] == pytest.approx(1.2)
    assert (
        selection.loc[("DiffMean", 1), "best_factor"] == -2.0
    )  # ties → first in ascending order (strongest)
    assert selection.loc[("RePS", 1), "best_factor"] == -4.0
    assert np.isnan(selection.loc[("Prompt", 1), "best_factor"])
    summary = out["suppression_summary"].set_index("method")
    assert set(summary.index) == {"DiffMean", "RePS", "Prompt"}
    assert summary.loc["DiffMean", "overall"] == pytest.approx(0.9)  # mean of 0, 1.2 and 1.5
    assert set(summary["dataset_name"]) == {SUPPRESS_DATASET} and (summary["n_concepts"] == 3).all()

    # Attacks: the rule concept only, 3 methods × 3 settings × 4 instructions, at each method's selected factor.
    examples = out["multishot_examples"]
    assert examples["rule"].tolist() == ["postscript", "postscript"] and examples["example_id"].tolist() == [
        0,
        1,
    ]
    attack_prompts = out["attack_prompts"]
    assert set(attack_prompts["concept_id"]) == {RULE_CONCEPT} and len(attack_prompts) == 3 * 3 * 4
    two = attack_prompts[(attack_prompts["attack"] == "multishot") & (attack_prompts["n_shot"] == 2)]
    assert two["steered_prompt"].str.count("Question: ").eq(3).all()  # 2 shots + the attacked instruction
    assert set(attack_prompts.groupby(["attack", "n_shot"])["dataset_name"].first()) == {
        "AttackMultiShot",
        "AttackOverwrite",
    }
    attack_gens = out["attack_generations"]
    assert len(attack_gens) == 3 * 3 * 4
    assert attack_gens.groupby(["attack", "n_shot"]).size().to_dict() == {
        ("append", 0): 12,
        ("multishot", 1): 12,
        ("multishot", 2): 12,
    }
    best = selection["best_factor"].to_dict()
    for method, rows in attack_gens.groupby("method"):
        expected = best[(method, RULE_CONCEPT)]
        assert np.allclose(rows["factor"], expected, equal_nan=True), method
    dm_attack = attack_gens[attack_gens["method"] == "DiffMean"]
    assert np.allclose(dm_attack["strength"], best[("DiffMean", RULE_CONCEPT)] * 1.0)  # m = 1 for concept 2
    assert attack_gens.loc[attack_gens["method"] == "Prompt", "strength"].isna().all()
    attack_judged = out["attack_judgements"]
    assert set(attack_judged["criterion"]) == {"rule", "instruction", "fluency"}
    assert len(attack_judged) == 3 * len(attack_gens)
    attack_scores = out["attack_scores"]
    assert len(attack_scores) == len(attack_gens) and np.allclose(attack_scores["hm"], 1.5)
    assert set(attack_scores["rule_id"]) == {"postscript"}
    assert attack_scores["split"].value_counts().to_dict() == {"selection": 18, "test": 18}
    attack_summary = out["attack_summary"]
    assert sorted(
        zip(attack_summary["method"], attack_summary["attack"], attack_summary["n_shot"], strict=True)
    ) == sorted(
        (m, a, n)
        for m in ("DiffMean", "Prompt", "RePS")
        for a, n in (("none", 0), ("multishot", 1), ("multishot", 2), ("append", 0))
    )
    assert np.allclose(attack_summary["score"], 1.5) and (attack_summary["n_concepts"] == 1).all()
    assert (
        attack_summary.loc[attack_summary["attack"] != "none", "n_generations"] == 2
    ).all()  # test ids 2-3
    kinds = attack_summary.drop_duplicates("method").set_index("method")["kind"].to_dict()
    assert kinds == {"DiffMean": "steering", "Prompt": "prompt", "RePS": "steering"}

    usage = out["suppression_llm_usage"].set_index("stage")
    assert usage.loc["suppression.texts", "calls"] == n_gen_calls - 1
    assert usage.loc["suppression.multishot", "calls"] == 1
    assert "suppression.judge" in usage.index and "suppression.attack_judge" in usage.index
    # instruction + fluency per distinct attacked generation, never J1: at most 2 calls per generation
    assert 0 < usage.loc["suppression.attack_judge", "calls"] <= 2 * len(attack_gens)
    assert not any("BEGIN CONCEPT" in str(r) and "cooking pasta" in str(r) for r in judge_bodies)
    assert usage["calls"].sum() == n_gen_calls + n_judge_calls
    again = {name: again_catalog.load(name) for name in OUTPUTS}
    assert again["suppression_llm_usage"]["calls"].sum() == 0
    pd.testing.assert_frame_equal(again["suppression_generations"], gens)
    pd.testing.assert_frame_equal(again["suppression_summary"], out["suppression_summary"])

    # The report: leaderboard rows per method (+ Avg), the attack table, the plot file, each versioned.
    board = catalog.load("suppression_leaderboard")
    summary = out["suppression_summary"].set_index("method")
    mine = board[board["setting"] == "tiny"].set_index("method")
    assert set(mine.index) == set(summary.index)
    assert np.allclose(mine.loc[list(summary.index), "overall"], summary["overall"])
    table = catalog.load("attack_table")
    assert set(table["method"].astype(str).str.split(" ").str[0]) == {"DiffMean", "Prompt", "RePS"}
    markdown = catalog.load("suppression_markdown")
    assert "HM(2 − concept, instruction, fluency)" in markdown and "2-shot" in markdown
    plots = list((tmp_path / "out" / "suppression_vs_nshot.png").glob("*/suppression_vs_nshot.png"))
    assert len(plots) == 2 and all(p.stat().st_size > 5000 for p in plots)


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


def test_suppression_concept_ids_choose_the_concepts() -> None:
    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.config.suppression import SuppressionConcepts
    from axbench_kedro.errors import AxbenchConfigError
    from axbench_kedro.pipelines.suppression.nodes import _evaluated_concepts

    steering = SteeringEvalParams(dataset_name=SUPPRESS_DATASET)
    meta = _concepts()
    chosen = _evaluated_concepts(meta, SuppressionConcepts(concept_ids=[2, 0]), steering)
    assert chosen["concept_id"].tolist() == [0, 2]
    first = _evaluated_concepts(meta, SuppressionConcepts(concept_ids=[2, 0], max_concepts=1), steering)
    assert first["concept_id"].tolist() == [0]
    with pytest.raises(
        AxbenchConfigError, match=r"suppression.concepts.concept_ids: \[7\] not in concepts_meta"
    ):
        _evaluated_concepts(meta, SuppressionConcepts(concept_ids=[0, 7]), steering)
    with pytest.raises(ValueError, match="distinct"):
        SuppressionConcepts(concept_ids=[1, 1])
