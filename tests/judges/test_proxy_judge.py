"""Proxy judge: sentence-embedding relevance (real offline embedder) and perplexity fluency (tiny model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from axbench_kedro.config.steering_eval import JudgeParams, ProxyJudgeParams
from axbench_kedro.judges import JudgeResources, ProxyJudge, build_judge
from axbench_kedro.judges.proxy_judge import distinct_trigram_ratio, load_embedder, threshold_rating


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def _frames(texts: list[str], concept: str, instruction: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    gens = pd.DataFrame(
        {
            "dataset_name": "AlpacaEval",
            "concept_id": 0,
            "input_id": 0,
            "factor": np.arange(len(texts), dtype=float),
            "method": "M",
            "steered_generation": texts,
        }
    )
    prompts = pd.DataFrame(
        [
            {
                "dataset_name": "AlpacaEval",
                "concept_id": 0,
                "input_id": 0,
                "input_concept": concept,
                "original_prompt": instruction,
            }
        ]
    )
    return gens, prompts


def test_on_concept_text_scores_higher(embedder, tiny_gemma3) -> None:
    texts = [
        "You can rent a car at the airport; the rental agency offers weekly rates and insurance.",
        "Mix flour, water, salt and yeast, then knead the dough for ten minutes before baking the bread.",
        "rental rental rental rental rental rental rental rental rental rental",
        "",
    ]
    gens, prompts = _frames(texts, "references to rental services", "How do I bake bread?")
    judge = ProxyJudge(
        tiny_gemma3, ProxyJudgeParams(fluency_perplexity=(1e9, 1e9)), seed=3, embedder=embedder
    )
    out = judge.judge(gens, prompts)
    wide = out.pivot_table(index="factor", columns="criterion", values="rating")
    cos = out[out["criterion"] == "concept"].set_index("factor")["raw_completion"]
    cosine = cos.str.extract(r"cosine=(-?[0-9.]+)")[0].astype(float)

    assert cosine[0.0] > 0.3 > 0.1 > cosine[1.0]  # on-concept vs off-concept text
    assert wide.loc[0.0, "concept"] == 2.0 and wide.loc[1.0, "concept"] == 0.0
    assert wide.loc[1.0, "instruction"] == 2.0 and wide.loc[0.0, "instruction"] == 0.0
    assert wide.loc[0.0, "fluency"] == 2.0  # thresholds at 1e9: any finite perplexity passes
    assert wide.loc[2.0, "fluency"] == 0.0  # looping text
    assert wide.loc[3.0].tolist() == [0.0, 0.0, 0.0]  # empty generation
    assert out["parse_ok"].all()
    assert set(out["judge_kind"]) == {"proxy"}
    assert out["judge_model"].iloc[0].startswith("proxy:")
    assert set(out["template_sha256"]) == {judge.config_sha256}
    assert set(out["parse_rule"]) == {"proxy-v1"} and set(out["seed"]) == {3}


def test_fluency_follows_perplexity_thresholds(embedder, tiny_gemma3) -> None:
    from axbench_kedro.lm.chat import format_prompt
    from axbench_kedro.lm.scoring import perplexities

    texts = ["the cat sat on the mat and looked at the sky", "dog blue if when seven computer happy"]
    gens, prompts = _frames(texts, "cats", "Tell me about cats.")
    ppl = perplexities(
        tiny_gemma3, [format_prompt(tiny_gemma3.tokenizer, "Tell me about cats.")] * 2, texts, 2
    )
    lo, hi = sorted(ppl)
    judge = ProxyJudge(
        tiny_gemma3, ProxyJudgeParams(fluency_perplexity=(lo, (lo + hi) / 2)), embedder=embedder
    )
    out = judge.judge(gens, prompts)
    flu = out[out["criterion"] == "fluency"].set_index("factor")["rating"]
    best = int(np.argmin(ppl))
    assert flu[float(best)] == 2.0 and flu[float(1 - best)] == 0.0
    # a stored perplexity_conditional is reused instead of recomputed
    gens["perplexity_conditional"] = [1.0, 1e6]
    flu2 = judge.judge(gens, prompts).query("criterion == 'fluency'").set_index("factor")["rating"]
    assert flu2.tolist() == [2.0, 0.0]
    # upstream's whole-sequence `perplexity` is never read [D 28]: swapping it changes nothing
    gens["perplexity"] = [1e6, 1.0]
    flu3 = judge.judge(gens, prompts).query("criterion == 'fluency'").set_index("factor")["rating"]
    assert flu3.tolist() == [2.0, 0.0]
    gens = gens.drop(columns="perplexity_conditional")
    flu4 = judge.judge(gens, prompts).query("criterion == 'fluency'").set_index("factor")["rating"]
    assert flu4[float(best)] == 2.0 and flu4[float(1 - best)] == 0.0  # recomputed conditional, as before


def test_stored_perplexities_leave_the_proxy_ratings_unchanged(embedder, tiny_gemma3) -> None:
    """Generation rows carrying both perplexities are rated exactly as rows carrying none (the proxy then computes the
    conditional value itself, its behaviour before D28's split): fluency reads ``perplexity_conditional`` only."""
    from axbench_kedro.lm.chat import format_prompt
    from axbench_kedro.lm.scoring import perplexities, sequence_perplexities

    texts = ["the cat sat on the mat and looked at the sky", "dog blue if when seven computer happy"]
    gens, prompts = _frames(texts, "cats", "Tell me about cats.")
    tok = tiny_gemma3.tokenizer
    cond = perplexities(tiny_gemma3, [format_prompt(tok, "Tell me about cats.")] * 2, texts, 2)
    seq = sequence_perplexities(tiny_gemma3, texts, 2)
    lo, hi = sorted(cond)
    judge = ProxyJudge(
        tiny_gemma3, ProxyJudgeParams(fluency_perplexity=(lo, (lo + hi) / 2)), embedder=embedder
    )
    bare = judge.judge(gens, prompts)
    stored = judge.judge(gens.assign(perplexity=seq, perplexity_conditional=cond), prompts)
    pd.testing.assert_frame_equal(stored, bare)


def test_threshold_mapping_and_loop_ratio() -> None:
    assert threshold_rating(np.array([0.1, 0.15, 0.3, 0.35, np.nan]), 0.15, 0.35).tolist() == [0, 1, 1, 2, 0]
    assert distinct_trigram_ratio("a b c d e f") == 1.0
    assert distinct_trigram_ratio("go go go go go go") == pytest.approx(1 / 4)
    assert distinct_trigram_ratio("hi") == 1.0


def test_proxy_needs_no_llm_client(tiny_gemma3) -> None:
    def factory():  # pragma: no cover - must never be called
        raise AssertionError("the proxy judge must not build an LLM client")

    judge = build_judge(
        JudgeParams(kind="proxy"), JudgeResources(llm_client=factory, target_model=tiny_gemma3)
    )
    assert isinstance(judge, ProxyJudge)
    assert judge.usage_frame("x").empty


def test_unknown_judge_kind_lists_the_known_ones(tiny_gemma3) -> None:
    from axbench_kedro.errors import AxbenchConfigError

    with pytest.raises(AxbenchConfigError, match="known judges: llm, proxy"):
        build_judge(JudgeParams(kind="oracle"), JudgeResources(target_model=tiny_gemma3))


def test_threshold_config_is_validated() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ProxyJudgeParams(concept_thresholds=(0.5, 0.1))
