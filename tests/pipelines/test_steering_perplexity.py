"""The two perplexities of ``steering_generations`` (protocol §5.9, D28) on the tiny model.

``perplexity`` is upstream's (chat prompt + generation decoded with special tokens skipped, re-tokenized with BOS,
the generation alone for Prompt); ``perplexity_conditional`` is the project's earlier value (the generation given the
unsteered ``input``). Both flow into scores, selection and summary; a pre-split cache entry is read as conditional.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.lm.scoring import perplexities
from axbench_kedro.lm.types import Generation
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.metrics.steering import generation_scores, overall_scores, select_factors, steering_scores
from axbench_kedro.pipelines.steering_eval.nodes import build_steering_prompts
from axbench_kedro.steering.plans import steering_plans
from axbench_kedro.steering.schedule import PPL_CONDITIONAL, PPL_SEQUENCE, GenerationStats, generate_plans

LAYER = 1


def _params(**over) -> SteeringEvalParams:
    base = {
        "factors": [0.5, 2.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 6, "batch_size": 4},
        "perplexity_batch_size": 3,
    }
    base.update(over)
    return SteeringEvalParams.model_validate(base)


def _setup(tm, params):
    concepts = pd.DataFrame({"concept_id": [0], "concept": ["references to rental services"]})
    instructions = pd.DataFrame({"instruction": ["tell me about the sea", "tell me about the city", "hi"]})
    texts = pd.DataFrame({"concept_id": [0], "text": ["Always talk about renting cars."]})
    prompts = build_steering_prompts(concepts, instructions, texts, tm, params)
    w = torch.nn.functional.normalize(
        torch.randn(1, tm.d_model, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    meta = {"status": "ok", "layer": LAYER, "concept_ids": [0], "d": tm.d_model}
    arts = {
        "DiffMean": MethodArtifact(
            "DiffMean", {"weight": w, "bias": torch.zeros(1)}, {**meta, "method": "DiffMean"}
        ),
        "Prompt": MethodArtifact("Prompt", {}, {**meta, "method": "Prompt"}),
    }
    max_acts = pd.DataFrame(
        {
            "concept_id": [0],
            "method": "DiffMean",
            "max_act": [3.0],
            "magnitude_base": [3.0],
            "source": "latent_eval",
        }
    )
    plans = steering_plans(None, arts, max_acts, params, layer=LAYER, tm=tm, concept_ids=[0])
    return prompts, plans


def _by_hand(tm, prompt: str, generation: str) -> float:
    """decode(prompt ids + generation ids, special tokens skipped) → tokenize with BOS → full unpadded forward →
    exp(mean NLL of every token after the first)."""
    tok = tm.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    ids = list(ids) + list(tok(generation, add_special_tokens=False)["input_ids"])
    seq = tok(tok.decode(ids, skip_special_tokens=True))["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(tm.model(input_ids=torch.tensor([seq])).logits[0].float(), -1)
    nll = [-float(logp[p - 1, seq[p]]) for p in range(1, len(seq))]
    return math.exp(sum(nll) / len(nll)) if nll else float("nan")


def test_perplexity_is_upstreams_and_conditional_is_kept(tiny_gemma3, tmp_path) -> None:
    tm = tiny_gemma3
    params = _params()
    prompts, plans = _setup(tm, params)
    cache = SQLiteCache(tmp_path / "gen.sqlite", "g")
    gens = generate_plans(plans, prompts, tm, cache, params, layer=LAYER, seed=7)
    assert {"perplexity", "perplexity_conditional"} <= set(gens.columns)
    assert gens["perplexity"].dtype == gens["perplexity_conditional"].dtype == "float64"
    keyed = prompts.drop_duplicates(["concept_id", "input_id"]).set_index("input_id")
    checked = {"DiffMean": 0, "Prompt": 0}
    for rec in gens.drop_duplicates(["method", "input_id", "steered_generation"]).itertuples():
        if not rec.steered_generation:
            continue
        row = keyed.loc[rec.input_id]
        # Rank-1 methods: the chat prompt + generation; Prompt: the decoded generation alone [D 28].
        prefix = "" if rec.method == "Prompt" else row["input"]
        assert rec.perplexity == pytest.approx(_by_hand(tm, prefix, rec.steered_generation), rel=1e-4)
        # perplexity_conditional = the earlier value: the generation given the unsteered input (never steered_input).
        (cond,) = perplexities(tm, [row["input"]], [rec.steered_generation], batch_size=1)
        assert rec.perplexity_conditional == pytest.approx(cond, rel=1e-5)
        checked[rec.method] += 1
    assert checked["DiffMean"] and checked["Prompt"]

    # Scores / selection / summary carry both, never mixed up.
    judgements = pd.concat(
        [gens.assign(criterion=c, rating=2.0)[[*gens.columns[:5], "criterion", "rating"]] for c in ("concept", "instruction", "fluency")]
    )  # fmt: skip
    scored = steering_scores(generation_scores(judgements, gens), n_selection=1)
    assert {"perplexity", "perplexity_conditional"} <= set(scored.columns)
    selection = select_factors(scored, factor_free_methods=["Prompt"])
    overall = overall_scores(selection).set_index("method")
    test_rows = gens[gens["input_id"] == 1]
    prompt_rows = test_rows[test_rows["method"] == "Prompt"]
    assert overall.loc["Prompt", "perplexity"] == pytest.approx(prompt_rows["perplexity"].mean())
    assert overall.loc["Prompt", "perplexity_conditional"] == pytest.approx(
        prompt_rows["perplexity_conditional"].mean()
    )
    assert {"test_perplexity", "test_perplexity_conditional"} <= set(selection.columns)


def _all_keys(cache: SQLiteCache) -> list[str]:
    with cache._lock:
        return [k for (k,) in cache._conn.execute(f"SELECT key FROM {cache.table}").fetchall()]


def test_legacy_cache_entry_is_read_as_conditional(tiny_gemma3, tmp_path) -> None:
    tm = tiny_gemma3
    params = _params()
    prompts, plans = _setup(tm, params)
    cache = SQLiteCache(tmp_path / "gen.sqlite", "g")
    first = generate_plans(plans, prompts, tm, cache, params, layer=LAYER, seed=7)
    # Rewrite every entry the way the cache stored it before the split: one "perplexity", the conditional value.
    legacy = {}
    for key, entry in cache.get_many(_all_keys(cache)).items():
        assert PPL_SEQUENCE in entry and PPL_CONDITIONAL in entry and "perplexity" not in entry
        legacy[key] = {k: v for k, v in entry.items() if k not in (PPL_SEQUENCE, PPL_CONDITIONAL)}
        legacy[key]["perplexity"] = entry[PPL_CONDITIONAL]
    cache.put_many(legacy)

    def no_conditional(*args, **kwargs):  # the legacy value is reused, never recomputed
        raise AssertionError("perplexity_conditional recomputed")

    stats = GenerationStats()
    again = generate_plans(
        plans, prompts, tm, cache, params, layer=LAYER, seed=7, perplexity_fn=no_conditional, stats=stats
    )
    assert stats.generated == 0
    pd.testing.assert_frame_equal(again, first, rtol=1e-5)
    assert all("perplexity" not in e for e in cache.get_many(_all_keys(cache)).values())


def test_empty_generation_gives_null_conditional_and_is_counted(tiny_gemma3, tmp_path) -> None:
    tm = tiny_gemma3
    params = _params()
    prompts, plans = _setup(tm, params)

    def empty(tm_, prompts_, *args, **kwargs):
        return [Generation(text="", n_new_tokens=1) for _ in prompts_]

    stats = GenerationStats()
    gens = generate_plans(
        plans, prompts, tm, SQLiteCache(":memory:", "g"), params, layer=LAYER, seed=7,
        generate_fn=empty, sample_fn=empty, stats=stats,
    )  # fmt: skip
    assert gens["perplexity_conditional"].isna().all()
    assert stats.null_conditional_perplexity == len(gens)
    # Upstream's value still scores the prompt for rank-1 methods; Prompt's empty text has nothing to score.
    assert gens.loc[gens["method"] == "DiffMean", "perplexity"].notna().all()
    assert gens.loc[gens["method"] == "Prompt", "perplexity"].isna().all()


def test_sequence_perplexity_off_skips_its_pass_and_fills_it_later(tiny_gemma3, tmp_path) -> None:
    tm = tiny_gemma3
    params = _params(sequence_perplexity=False)
    prompts, plans = _setup(tm, params)
    cache = SQLiteCache(tmp_path / "gen.sqlite", "g")

    def no_sequence(*args, **kwargs):
        raise AssertionError("the sequence perplexity pass ran with sequence_perplexity: false")

    off = generate_plans(
        plans, prompts, tm, cache, params, layer=LAYER, seed=7, sequence_perplexity_fn=no_sequence
    )
    assert off["perplexity"].isna().all()
    assert off["perplexity_conditional"].notna().any()
    # Switched back on, the same cache entries gain only the missing value: no generation, no conditional pass.
    stats = GenerationStats()

    def no_conditional(*args, **kwargs):
        raise AssertionError("perplexity_conditional recomputed")

    on = generate_plans(
        plans, prompts, tm, cache, _params(), layer=LAYER, seed=7, perplexity_fn=no_conditional, stats=stats
    )
    assert stats.generated == 0
    assert on["perplexity"].notna().any()
    pd.testing.assert_series_equal(on["perplexity_conditional"], off["perplexity_conditional"])
