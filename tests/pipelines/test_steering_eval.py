"""steering_eval end to end on the tiny model with the loopback OpenAI-compatible server as generator and judge;
instruction sampling (§10.14), magnitudes (§10.12), resume after a crash, zero-cost rerun."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.methods import get_method
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.pipelines.steering_eval import create_pipeline
from axbench_kedro.pipelines.steering_eval.nodes import build_steering_prompts
from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.steering.plans import magnitudes_for, plan_units, steering_plans
from axbench_kedro.steering.prompts import sample_instructions
from axbench_kedro.steering.schedule import GenerationStats, generate_plans
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import ROOT, project_llm_prices, project_prompt_templates

LAYER = 1
CONCEPTS = ["references to rental services", "astronomy and stars"]
INSTRUCTIONS = [
    f"tell me about the {w}"
    for w in (
        "sea",
        "city",
        "train",
        "music",
        "school",
        "river",
        "game",
        "money",
        "garden",
        "family",
        "moon",
        "car",
    )
]
JUNK_INSTRUCTION_INDEX = 3  # concept 0's test instruction (input_id 3) gets an unparsable J2 reply


# ---- inputs ------------------------------------------------------------------------------------------------------
def _concepts() -> pd.DataFrame:
    return pd.DataFrame(
        {"concept_id": [0, 1], "concept": CONCEPTS, "ref": ["null", "null"], "sae_id": [-1, -1]}
    )


def _instructions() -> pd.DataFrame:
    return pd.DataFrame({"instruction": INSTRUCTIONS})


def _artifacts(d: int) -> dict[str, MethodArtifact]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, d, generator=gen)
    w = w / w.norm(dim=1, keepdim=True)
    meta = {"status": "ok", "layer": LAYER, "concept_ids": [0, 1], "method": "DiffMean", "d": d}
    return {
        "DiffMean": MethodArtifact("DiffMean", {"weight": w, "bias": torch.zeros(2)}, meta),
        "Prompt": MethodArtifact("Prompt", {}, {**meta, "method": "Prompt"}),
    }


def _max_activations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": [0, 1],
            "method": "DiffMean",
            "max_act": [3.0, -1.0],
            "magnitude_base": [3.0, 50.0],
            "source": "latent_eval",
        }
    )


def _params(**over) -> SteeringEvalParams:
    base = {
        "factors": [0.5, 1.0, 2.0],
        "instructions": {"n_selection": 2, "n_test": 2},
        "generation": {"max_new_tokens": 6, "batch_size": 8},
        "prompt_steering": {"template": "prompt_steering_instruction", "max_tokens": 30},
        "judge": {"kind": "llm", "model": "gpt-4o-mini"},
        "n_resamples": 200,
    }
    base.update(over)
    return SteeringEvalParams.model_validate(base)


# ---- scripted LLMs -----------------------------------------------------------------------------------------------
def _generator_reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    return "" if "astronomy" in prompt else "Always talk about renting things in every answer."


def _junk_instruction() -> str:
    return sample_instructions(_instructions(), 0, 4)[JUNK_INSTRUCTION_INDEX]


def _judge_reply(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "BEGIN CONCEPT" in prompt:
        return "Clearly there.\nRating: [[2]]" if "rental" in prompt else "Faint.\nRating: [[1]]"
    if "BEGIN INSTRUCTION" in prompt:
        if _junk_instruction() in prompt:
            return "I would say it is on topic."  # no Rating: → 0, counted
        return "On topic.\nRating: [[2]]"
    return "Readable with mistakes.\nRating: [[1]]"


class _KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot release (the test reads every output afterwards)."""

    def _release(self) -> None:
        pass


_OUTPUTS = [
    "prompt_steering_texts",
    "steering_prompts",
    "steering_generations",
    "judgements",
    "steering_scores",
    "steering_selection",
    "steering_summary",
    "steering_llm_usage",
]


def _run(tm, tmp_path, gen_server, judge_server, params: SteeringEvalParams) -> dict:
    catalog = DataCatalog(
        datasets={
            "concepts_meta": MemoryDataset(_concepts()),
            "steering_instructions": MemoryDataset(_instructions()),
            "method_artifacts": MemoryDataset(_artifacts(tm.d_model), copy_mode="assign"),
            "max_activations": MemoryDataset(_max_activations()),
            "target_model": MemoryDataset(tm, copy_mode="assign"),
            "generator_llm": MemoryDataset(
                client_for(gen_server, tmp_path / "llm.sqlite"), copy_mode="assign"
            ),
            "judge_llm": MemoryDataset(
                lambda: client_for(judge_server, tmp_path / "llm.sqlite"), copy_mode="assign"
            ),
            "llm_prices": MemoryDataset(project_llm_prices(), copy_mode="assign"),
            "prompt_templates": MemoryDataset(project_prompt_templates(), copy_mode="assign"),
            "generation_cache": MemoryDataset(SQLiteCache(tmp_path / "gen.sqlite", "g"), copy_mode="assign"),
            "params:steering_eval": MemoryDataset(params, copy_mode="assign"),
            "params:run": MemoryDataset(
                RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"
            ),
            "params:scaling": MemoryDataset(ScalingParams(), copy_mode="assign"),
            **{name: _KeptDataset() for name in _OUTPUTS},
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in _OUTPUTS}


# ---- end to end --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_end_to_end_with_llm_judge(tiny_gemma3, tmp_path) -> None:
    params = _params()
    with FakeOpenAIServer(reply_fn=_generator_reply) as gen, FakeOpenAIServer(reply_fn=_judge_reply) as judge:
        out = _run(tiny_gemma3, tmp_path, gen, judge, params)
        n_gen_calls, n_judge_calls = len(gen.requests), len(judge.requests)
        again = _run(tiny_gemma3, tmp_path, gen, judge, params)  # unchanged rerun: no call, no generation
        assert len(gen.requests) == n_gen_calls and len(judge.requests) == n_judge_calls

    # Prompt baseline texts: one generator call per concept, empty reply → fallback.
    texts = out["prompt_steering_texts"].set_index("concept_id")
    assert n_gen_calls == 2
    assert (
        texts.loc[0, "text"] == "Always talk about renting things in every answer."
        and not texts.loc[0, "is_fallback"]
    )
    assert texts.loc[1, "is_fallback"] and "astronomy and stars" in texts.loc[1, "text"]
    assert (texts["finish_reason"] == "stop").all() and not texts["truncated"].any()  # [D 31]
    assert texts["max_tokens"].tolist() == [30, 30]

    prompts = out["steering_prompts"]
    assert len(prompts) == 2 * 4 * 3
    row = prompts[(prompts["concept_id"] == 0) & (prompts["input_id"] == 0)].iloc[0]
    assert row["input"].startswith("<bos><start_of_turn>user\n") and row["original_prompt"] in row["input"]
    assert (
        "renting things" in row["steered_input"]
        and "\n\nQuestion: " + row["original_prompt"] in row["steered_input"]
    )

    gens = out["steering_generations"]
    assert len(gens) == 2 * 2 * 4 * 3  # 2 methods × 2 concepts × 4 instructions × 3 factors
    dm = gens[gens["method"] == "DiffMean"].set_index(["concept_id", "input_id", "factor"])
    assert dm.loc[(0, 0, 2.0), "strength"] == pytest.approx(6.0)  # f·m with m = 3
    assert dm.loc[(1, 0, 0.5), "strength"] == pytest.approx(25.0)  # m = 50 (max act ≤ 0)
    pr = gens[gens["method"] == "Prompt"]
    assert pr["strength"].isna().all()
    per_instruction = pr.groupby(["concept_id", "input_id"])["steered_generation"].nunique()
    assert (per_instruction == 1).all()  # one sample per instruction stands for every factor
    assert gens["n_new_tokens"].between(1, 6).all() and gens["perplexity"].notna().all()
    assert gens["perplexity_conditional"].notna().all()  # [D 28]

    # 3 independent judge calls per distinct generation (DiffMean 24, Prompt 8 shared by its factor rows).
    distinct = gens.drop_duplicates(["method", "concept_id", "input_id", "steered_generation"])
    assert len(distinct) == 32 and n_judge_calls == 3 * 32
    judged = out["judgements"]
    assert len(judged) == 3 * len(gens)
    fails = judged[~judged["parse_ok"] & ~judged["replica"]]
    assert set(fails["criterion"]) == {"instruction"}
    junk_rows = prompts.drop_duplicates(["concept_id", "input_id"])
    junk_rows = junk_rows[junk_rows["original_prompt"] == _junk_instruction()]
    # DiffMean: one judged text per factor; Prompt: one per instruction.
    assert len(fails) == len(junk_rows) * (3 + 1)

    # Scores by hand: concept 2 (concept 0) or 1 (concept 1), instruction 2 (0 when junk), fluency 1.
    expected = {}
    for rec in junk_rows.itertuples():
        expected.setdefault(rec.concept_id, set()).add(rec.input_id)
    summary = out["steering_summary"].set_index("method")
    selection = out["steering_selection"].set_index(["method", "concept_id"])
    scores = []
    for cid, hm_ok in ((0, 1.5), (1, 1.2)):  # HM(2,2,1) = 1.5; HM(1,2,1) = 1.2
        junk = expected.get(cid, set())
        sel = np.mean([0.0 if i in junk else hm_ok for i in (0, 1)])
        test = np.mean([0.0 if i in junk else hm_ok for i in (2, 3)])
        assert selection.loc[("DiffMean", cid), "selection_hm"] == pytest.approx(sel)
        assert selection.loc[("DiffMean", cid), "test_hm"] == pytest.approx(test)
        assert selection.loc[("DiffMean", cid), "best_factor"] == 0.5  # all factors tie → smallest
        assert selection.loc[("Prompt", cid), "test_hm"] == pytest.approx(test)
        assert math.isnan(selection.loc[("Prompt", cid), "best_factor"])
        assert selection.loc[("DiffMean", cid), "test_fluency"] == 1.0
        scores.append(test)
    assert JUNK_INSTRUCTION_INDEX in expected[0]
    assert summary.loc["DiffMean", "overall"] == pytest.approx(np.mean(scores))
    assert summary.loc["DiffMean", "winrate_vs_prompt"] == pytest.approx(0.5)  # ties everywhere
    assert summary.loc["DiffMean", "parse_failures"] == 3 * len(junk_rows)
    assert summary.loc["Prompt", "parse_failures"] == len(junk_rows)
    assert set(summary["judge_kind"]) == {"llm"} and set(summary["setting"]) == {"tiny"}
    assert (summary["n_concepts"] == 2).all()
    assert (
        summary.loc["DiffMean", "ci_low"]
        <= summary.loc["DiffMean", "overall"]
        <= summary.loc["DiffMean", "ci_high"]
    )

    usage = out["steering_llm_usage"].set_index("stage")
    assert usage.loc["steering_eval.judge", "calls"] == 3 * 32
    assert usage.loc["steering_eval.prompt_steering", "calls"] == 2
    assert usage.loc["steering_eval.judge", "cost_usd"] > 0
    again_usage = again["steering_llm_usage"].set_index("stage")
    assert again_usage["calls"].sum() == 0
    pd.testing.assert_frame_equal(again["steering_generations"], gens)
    pd.testing.assert_frame_equal(again["steering_summary"], out["steering_summary"])


# ---- counts (§10.22) ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_counts_of_a_paper_grid_run_and_of_its_rerun(tiny_gemma3, tmp_path) -> None:
    """§10.22 on the paper's grid (14 factors, 5 + 5 instructions): per concept and rank-1 method 140 generations
    and 420 judge calls (so 500 × 420 = 210 000 per method and setting); Prompt: 10 and 30 [D 5]; a rerun with
    unchanged inputs makes no LLM call and no generation."""
    from axbench_kedro.config.steering_eval import PAPER_FACTORS

    params = _params(
        factors=PAPER_FACTORS,
        instructions={"n_selection": 5, "n_test": 5},
        generation={"max_new_tokens": 4, "batch_size": 64},
        compute_perplexity=False,
        n_resamples=20,
    )
    n_concepts = len(CONCEPTS)
    with FakeOpenAIServer(reply_fn=_generator_reply) as gen, FakeOpenAIServer(reply_fn=_judge_reply) as judge:
        out = _run(tiny_gemma3, tmp_path, gen, judge, params)
        n_gen_calls, n_judge_calls = len(gen.requests), len(judge.requests)
        n_generated = len(SQLiteCache(tmp_path / "gen.sqlite", "g"))
        again = _run(tiny_gemma3, tmp_path, gen, judge, params)
        assert len(gen.requests) == n_gen_calls and len(judge.requests) == n_judge_calls  # rerun: 0 LLM calls
    assert len(SQLiteCache(tmp_path / "gen.sqlite", "g")) == n_generated  # rerun: 0 generations

    gens = out["steering_generations"]
    per_concept = gens.groupby(["method", "concept_id"]).size()
    assert (per_concept.loc["DiffMean"] == 140).all()  # 14 factors × 10 instructions
    assert (per_concept.loc["Prompt"] == 140).all()  # one row per factor, ...
    distinct = gens.drop_duplicates(["method", "concept_id", "input_id", "steered_generation"])
    units = distinct.groupby(["method", "concept_id"]).size()
    assert (units.loc["Prompt"] == 10).all()  # ... one generation per instruction stands for all 14 [D 5]
    assert (units.loc["DiffMean"] == 140).all()  # every steered text differs, so each one is judged
    assert n_generated == n_concepts * (140 + 10)
    assert n_gen_calls == n_concepts  # one P1 call per concept

    assert n_judge_calls == 3 * n_concepts * (140 + 10)  # 420 per concept for DiffMean, 30 for Prompt
    usage = out["steering_llm_usage"].set_index("stage")
    assert usage.loc["steering_eval.judge", "calls"] == n_judge_calls
    judged = out["judgements"]
    fresh = judged[~judged["replica"]].groupby(["method", "concept_id"]).size()
    assert (fresh.loc["DiffMean"] == 420).all() and (fresh.loc["Prompt"] == 30).all()
    assert 500 * fresh.loc["DiffMean"].iloc[0] == 210_000  # paper scale, per method and setting
    assert len(judged) == 3 * len(gens)

    assert again["steering_llm_usage"]["calls"].sum() == 0
    pd.testing.assert_frame_equal(again["steering_generations"], gens)


# ---- instruction sampling (§10.14) -------------------------------------------------------------------------------
def test_instruction_sampling_is_seeded_by_concept(tiny_gemma3) -> None:
    instructions = _instructions()
    first = sample_instructions(instructions, 0, 4)
    assert first == sample_instructions(instructions, 0, 4)
    assert first == instructions.sample(n=4, random_state=0)["instruction"].tolist()
    assert first != sample_instructions(instructions, 1, 4)
    texts = pd.DataFrame({"concept_id": [0, 1], "text": ["a", "b"]})
    prompts = build_steering_prompts(_concepts(), instructions, texts, tiny_gemma3, _params())
    c0 = prompts[prompts["concept_id"] == 0].drop_duplicates("input_id")
    assert c0["original_prompt"].tolist() == first  # input_id = sample order; 0–1 select, 2–3 report
    with pytest.raises(AxbenchDataError, match="steering_instructions"):
        sample_instructions(instructions.head(3), 0, 4)
    with pytest.raises(AxbenchDataError, match="'instruction'"):
        sample_instructions(instructions.rename(columns={"instruction": "prompt"}), 0, 4)


# ---- magnitudes (§10.12) -----------------------------------------------------------------------------------------
def test_magnitude_rule() -> None:
    table = pd.DataFrame(
        {
            "concept_id": [0, 1, 2],
            "method": "DiffMean",
            "max_act": [12.5, -3.0, 0.0],
            "magnitude_base": [12.5, 50.0, 50.0],
        }
    )
    mags = magnitudes_for(get_method("DiffMean"), table, [0, 1, 2])
    assert 2.0 * mags[0] == 25.0 and 2.0 * mags[1] == 100.0 and mags[2] == 50.0
    with pytest.raises(AxbenchDataError, match=r"concept_id\(s\) \[3\]"):
        magnitudes_for(get_method("DiffMean"), table, [0, 3])
    # methods defined with m = 1 need no entry
    assert magnitudes_for(get_method("Prompt"), table.iloc[:0], [5]) == {5: 1.0}


def test_magnitude_example_10_12_through_the_max_activations_table(tiny_gemma3) -> None:
    """§10.12 from latent scores to strengths: max-act 12.5 → m 12.5, f 2.0 → 25; max-act −3 or 0 → m 50 → 100."""
    from axbench_kedro.detection.summary import magnitude_table

    d = tiny_gemma3.d_model
    w = torch.nn.functional.normalize(torch.randn(3, d, generator=torch.Generator().manual_seed(1)), dim=-1)
    meta = {"status": "ok", "layer": LAYER, "concept_ids": [0, 1, 2], "method": "DiffMean", "d": d}
    arts = {"DiffMean": MethodArtifact("DiffMean", {"weight": w, "bias": torch.zeros(3)}, meta)}
    per_concept = {0: [12.5, 3.0, -1.0], 1: [-3.0, -7.5, -4.0], 2: [0.0, -2.0, 0.0]}  # maxima 12.5, −3, 0
    latent_scores = pd.DataFrame(
        [
            {"concept_id": cid, "row_id": i, "category": "positive", "method": "DiffMean", "max_act": v}
            for cid, values in per_concept.items()
            for i, v in enumerate(values)
        ]
    )
    table = magnitude_table(latent_scores, arts).set_index("concept_id")
    assert table["max_act"].tolist() == [12.5, -3.0, 0.0]
    assert table["magnitude_base"].tolist() == [12.5, 50.0, 50.0] and set(table["source"]) == {"latent_eval"}

    params = _params(factors=[2.0])
    (plan,) = steering_plans(
        ["DiffMean"], arts, table.reset_index(), params, layer=LAYER, tm=tiny_gemma3, concept_ids=[0, 1, 2]
    )
    prompts = pd.DataFrame(
        {
            "dataset_name": "AlpacaEval",
            "concept_id": [0, 1, 2],
            "input_id": 0,
            "input": "x",
            "steered_input": "x",
        }
    )
    units, rows = plan_units(plan, prompts, replicates=1)
    assert rows.set_index("concept_id")["strength"].to_dict() == {0: 25.0, 1: 100.0, 2: 100.0}
    assert units["strength"].tolist() == [25.0, 100.0, 100.0]  # what the intervention adds: h + strength·w


def test_plans_check_layer_and_artifacts(tiny_gemma3) -> None:
    arts = _artifacts(tiny_gemma3.d_model)
    args = {"tm": tiny_gemma3, "concept_ids": [0, 1]}
    plans = steering_plans(None, arts, _max_activations(), _params(), layer=LAYER, **args)
    assert [(p.method, p.factor_free) for p in plans] == [("DiffMean", False), ("Prompt", True)]
    with pytest.raises(AxbenchConfigError, match="layer"):
        steering_plans(None, arts, _max_activations(), _params(), layer=0, **args)
    with pytest.raises(AxbenchDataError, match="max_activations"):
        steering_plans(None, arts, _max_activations().iloc[:1], _params(), layer=LAYER, **args)
    with pytest.raises(AxbenchConfigError, match="detection only"):
        steering_plans(["BoW"], arts, _max_activations(), _params(), layer=LAYER, **args)


def test_factor_free_units_are_replicated_over_factors(tiny_gemma3) -> None:
    texts = pd.DataFrame({"concept_id": [0, 1], "text": ["a", "b"]})
    prompts = build_steering_prompts(_concepts(), _instructions(), texts, tiny_gemma3, _params())
    plans = steering_plans(
        None,
        _artifacts(tiny_gemma3.d_model),
        _max_activations(),
        _params(),
        layer=LAYER,
        tm=tiny_gemma3,
        concept_ids=[0, 1],
    )
    unique = prompts.drop_duplicates(["dataset_name", "concept_id", "input_id"])
    units, rows = plan_units(plans[1], unique, replicates=1)
    assert (
        len(units) == 8
        and len(rows) == 24
        and rows.groupby(["concept_id", "input_id"])["unit"].nunique().max() == 1
    )
    units3, rows3 = plan_units(plans[1], unique, replicates=3)
    assert len(units3) == 24 and rows3.groupby(["concept_id", "input_id"])["unit"].nunique().max() == 3
    units_dm, rows_dm = plan_units(plans[0], unique, replicates=1)
    assert len(units_dm) == len(rows_dm) == 24


# ---- resume after a crash ----------------------------------------------------------------------------------------
def test_resume_regenerates_only_missing_batches(tiny_gemma3, tmp_path) -> None:
    from axbench_kedro.lm.steering import steered_generate

    params = _params(generation={"max_new_tokens": 5, "batch_size": 5}, compute_perplexity=False)
    texts = pd.DataFrame({"concept_id": [0, 1], "text": ["a", "b"]})
    prompts = build_steering_prompts(_concepts(), _instructions(), texts, tiny_gemma3, params)
    plans = steering_plans(
        ["DiffMean"],
        _artifacts(tiny_gemma3.d_model),
        _max_activations(),
        params,
        layer=LAYER,
        tm=tiny_gemma3,
        concept_ids=[0, 1],
    )
    cache = SQLiteCache(tmp_path / "gen.sqlite", "g")
    calls = []

    def crashing(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("killed after the first batch")
        calls.append(len(args[1]))
        return steered_generate(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        generate_plans(plans, prompts, tiny_gemma3, cache, params, layer=LAYER, seed=42, generate_fn=crashing)
    assert len(cache) == calls[0] == 5

    stats = GenerationStats()
    resumed = generate_plans(plans, prompts, tiny_gemma3, cache, params, layer=LAYER, seed=42, stats=stats)
    assert stats.cached == 5 and stats.generated == 24 - 5 and len(cache) == 24

    fresh_stats = GenerationStats()
    fresh = generate_plans(
        plans,
        prompts,
        tiny_gemma3,
        SQLiteCache(":memory:", "g"),
        params,
        layer=LAYER,
        seed=42,
        stats=fresh_stats,
    )
    assert fresh_stats.generated == 24
    pd.testing.assert_frame_equal(resumed, fresh)  # resuming gives exactly what an uninterrupted run gives

    rerun = GenerationStats()
    generate_plans(plans, prompts, tiny_gemma3, cache, params, layer=LAYER, seed=42, stats=rerun)
    assert rerun.generated == 0 and rerun.cached == 24


# ---- catalog: the proxy judge never needs a key ------------------------------------------------------------------
def test_catalog_judge_client_is_lazy_and_cache_persists(tmp_path, monkeypatch) -> None:
    from kedro.config import OmegaConfigLoader

    from axbench_kedro.datasets.lazy import LazyHandle
    from axbench_kedro.settings import CONFIG_LOADER_ARGS

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # relative catalog paths land here
    loader = OmegaConfigLoader(str(ROOT / "conf"), **CONFIG_LOADER_ARGS)
    conf = {k: v for k, v in loader["catalog"].items() if k in ("judge_llm", "generation_cache")}
    catalog = DataCatalog.from_config(conf, loader["credentials"])  # api_key: ${oc.env:OPENAI_API_KEY,""}

    handle = catalog.load("judge_llm")
    assert isinstance(handle, LazyHandle) and not handle.loaded  # nothing built, no key asked
    with pytest.raises(AxbenchConfigError, match="api_key|OPENAI_API_KEY"):
        handle()  # the LLM judge would need the key: one clear error

    cache = catalog.load("generation_cache")
    cache.put("k", {"text": "hi"})
    assert (tmp_path / "data/07_model_output").is_dir()
    assert catalog.load("generation_cache").get("k") == {"text": "hi"}
