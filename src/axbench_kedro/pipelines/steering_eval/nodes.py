"""Nodes of the ``steering_eval`` pipeline (protocol §5): prompts → steered generations → judgements → scores.

Every node is a function of its inputs; the method registry and the judge registry decide what happens per method
and per judge kind (no branching on names here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.judges.base import JudgeResources, build_judge
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.metrics.steering import (
    generation_scores,
    overall_scores,
    select_factors,
    steering_scores,
    win_rates,
)
from axbench_kedro.pipelines.steering_eval.generation import GenerationStats, generate_plans, steering_plans

__all__ = [
    "PROMPT_COLUMNS",
    "SUMMARY_COLUMNS",
    "USAGE_COLUMNS",
    "sample_instructions",
    "write_prompt_steering_texts",
    "build_steering_prompts",
    "generate_steering",
    "judge_steering",
    "score_steering",
    "select_steering_factors",
    "summarize_steering",
    "collect_llm_usage",
]

log = logging.getLogger(__name__)

PROMPT_COLUMNS = [
    "dataset_name",
    "concept_id",
    "input_concept",
    "input_id",
    "factor",
    "original_prompt",
    "input",
    "steered_input",
    "steered_prompt",
    "suppress_original",
    "suppress_rewrite",
    "defense",
    "sae_link",
    "sae_id",
]
SUMMARY_COLUMNS = [
    "method",
    "setting",
    "judge_kind",
    "judge_model",
    "overall",
    "concept",
    "instruction",
    "fluency",
    "perplexity",
    "winrate_vs_prompt",
    "n_concepts",
    "parse_failures",
    "ci_low",
    "ci_high",
    "dataset_name",
]
USAGE_COLUMNS = ["stage", "model", "calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd"]


# ---- prompts -----------------------------------------------------------------------------------------------------
def sample_instructions(instructions: pd.DataFrame, concept_id: int, n: int) -> list[str]:
    """The concept's steering instructions: ``instructions.sample(n, random_state=concept_id)`` (protocol §5.1).

    The file order of ``instructions`` matters (pandas sampling depends on it); ``input_id`` = position in the
    returned list.
    """
    if "instruction" not in instructions.columns:
        raise AxbenchDataError(
            f"steering_instructions: missing column 'instruction' (columns: {list(instructions.columns)})"
        )
    if len(instructions) < n:
        raise AxbenchDataError(f"steering_instructions: {len(instructions)} rows, {n} needed per concept")
    return instructions.sample(n=n, random_state=int(concept_id))["instruction"].astype(str).tolist()


def _check_concepts(concepts_meta: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("concept_id", "concept") if c not in concepts_meta.columns]
    if missing:
        raise AxbenchDataError(f"concepts_meta: missing column(s) {missing}")
    return concepts_meta.sort_values("concept_id", kind="stable").reset_index(drop=True)


def write_prompt_steering_texts(
    concepts_meta: pd.DataFrame, generator_llm: Any, params: SteeringEvalParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Prompt baseline's steering instruction per concept (template P1, one cached LLM call per concept).

    An empty reply is replaced by the configured fallback (``is_fallback`` = True) [D 18].

    Returns:
        ``prompt_steering_texts`` (``concept_id, text, is_fallback, template_sha256, model``) and its usage row.
    """
    from axbench_kedro.llm.templates import load_template
    from axbench_kedro.llm.types import LLMRequest

    concepts = _check_concepts(concepts_meta)
    cfg = params.prompt_steering
    template = load_template(cfg.template)
    since = generator_llm.totals()
    requests = [
        LLMRequest.user(template.render(concept=c), temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        for c in concepts["concept"].astype(str)
    ]
    replies = generator_llm.complete_many(requests, desc="prompt-steering instructions")
    texts, fallback = [], []
    for concept, reply in zip(concepts["concept"].astype(str), replies, strict=True):
        text = reply.text.strip()
        if cfg.first_line_only:
            text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        fallback.append(not text)
        texts.append(text or cfg.fallback.replace("{concept}", concept))
    if any(fallback):
        log.warning(
            "prompt steering: %d of %d replies were empty; fallback used", sum(fallback), len(fallback)
        )
    out = pd.DataFrame(
        {
            "concept_id": concepts["concept_id"].astype("int64"),
            "text": texts,
            "is_fallback": fallback,
            "template_sha256": template.sha256,
            "model": str(generator_llm.model),
        }
    )
    return out, generator_llm.usage_frame("steering_eval.prompt_steering", since=since)


def build_steering_prompts(
    concepts_meta: pd.DataFrame,
    steering_instructions: pd.DataFrame,
    prompt_steering_texts: pd.DataFrame,
    target_model: TargetModel,
    params: SteeringEvalParams,
) -> pd.DataFrame:
    """``steering_prompts`` (protocol §1.10): one row per concept × instruction × factor of the shared grid.

    ``input`` = F-prompt(instruction); ``steered_input`` = F-prompt(steering text + blank line + ``Question: `` +
    instruction) (§3.9, Jun form).
    """
    from axbench_kedro.lm.chat import format_prompt

    concepts = _check_concepts(concepts_meta)
    steer = dict(
        zip(prompt_steering_texts["concept_id"].astype(int), prompt_steering_texts["text"], strict=True)
    )
    tok = target_model.tokenizer
    n = params.instructions.total
    rows = []
    for rec in concepts.to_dict("records"):
        cid = int(rec["concept_id"])
        if cid not in steer:
            raise AxbenchDataError(f"prompt_steering_texts: no steering text for concept_id {cid}")
        sae_id = rec.get("sae_id", -1)
        sae_id = -1 if sae_id is None or pd.isna(sae_id) else int(sae_id)
        for input_id, instruction in enumerate(sample_instructions(steering_instructions, cid, n)):
            base = {
                "dataset_name": params.dataset_name,
                "concept_id": cid,
                "input_concept": str(rec["concept"]),
                "input_id": input_id,
                "original_prompt": instruction,
                "input": format_prompt(tok, instruction),
                "steered_input": format_prompt(tok, f"{steer[cid]}\n\nQuestion: {instruction}"),
                "steered_prompt": "",
                "suppress_original": "",
                "suppress_rewrite": "",
                "sae_link": str(rec.get("ref", "null") or "null"),
                "sae_id": sae_id,
            }
            for factor in params.factors:
                rows.append({**base, "factor": float(factor), "defense": []})
    out = pd.DataFrame(rows, columns=PROMPT_COLUMNS)
    return out.astype({"concept_id": "int64", "input_id": "int64", "factor": "float64", "sae_id": "int64"})


# ---- generation --------------------------------------------------------------------------------------------------
def generate_steering(
    steering_prompts: pd.DataFrame,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    target_model: TargetModel,
    generation_cache: SQLiteCache,
    params: SteeringEvalParams,
    run: RunSettings,
) -> pd.DataFrame:
    """``steering_generations`` of every steering method: all rows of a method in large mixed batches.

    Magnitudes come from ``max_activations`` (a missing one is an error, [D 12]); factor-free methods generate
    once per instruction and their row stands for every factor [D 5]; every batch is persisted in the generation
    cache as soon as it finishes, so an interrupted run resumes with the missing rows only.
    """
    concept_ids = sorted(int(c) for c in steering_prompts["concept_id"].unique())
    plans = steering_plans(
        params.methods,
        method_artifacts,
        max_activations,
        params,
        layer=run.layer,
        tm=target_model,
        concept_ids=concept_ids,
    )
    stats = GenerationStats()
    out = generate_plans(
        plans,
        steering_prompts,
        target_model,
        generation_cache,
        params,
        layer=run.layer,
        seed=run.seed,
        stats=stats,
    )
    log.info(
        "steering generation: %d rows of %d methods from %d generations (%d new, %d cached), %d new tokens in %.1f s",
        stats.rows,
        len(plans),
        stats.units,
        stats.generated,
        stats.cached,
        stats.new_tokens,
        stats.seconds,
    )
    return out


# ---- judging -----------------------------------------------------------------------------------------------------
def judge_steering(
    steering_generations: pd.DataFrame,
    steering_prompts: pd.DataFrame,
    judge_llm: Any,
    target_model: TargetModel,
    params: SteeringEvalParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``judgements`` (protocol §1.12) from the configured judge, and the judge's LLM usage.

    ``judge_llm`` may be a client or a lazy handle: it is only built when the judge kind needs it.
    """
    resources = JudgeResources(llm_client=judge_llm, target_model=target_model, seed=run.seed)
    judge = build_judge(params.judge, resources)
    judgements = judge.judge(steering_generations, steering_prompts)
    failures = judgements[~judgements["parse_ok"] & ~judgements["replica"]]
    if len(failures):
        counts = failures.groupby(["method", "criterion"]).size().to_dict()
        log.warning("judge %s: %d unparsable replies rated 0: %s", judge.kind, len(failures), counts)
    return judgements, judge.usage_frame("steering_eval.judge")


# ---- metrics -----------------------------------------------------------------------------------------------------
def score_steering(
    judgements: pd.DataFrame, steering_generations: pd.DataFrame, params: SteeringEvalParams
) -> pd.DataFrame:
    """``steering_scores`` (protocol §1.13): per-split means of the per-generation HM and of each criterion."""
    per_generation = generation_scores(judgements, steering_generations)
    return steering_scores(per_generation, n_selection=params.instructions.n_selection)


def _factor_free(methods: list[str]) -> list[str]:
    from axbench_kedro.methods.registry import get_method

    return [m for m in methods if get_method(m).factor_free]


def select_steering_factors(steering_scores: pd.DataFrame) -> pd.DataFrame:
    """``steering_selection`` (protocol §1.14): factor chosen on the selection split, Score on the test split."""
    methods = sorted(steering_scores["method"].unique())
    return select_factors(steering_scores, factor_free_methods=_factor_free(methods))


def summarize_steering(
    steering_selection: pd.DataFrame,
    judgements: pd.DataFrame,
    params: SteeringEvalParams,
    run: RunSettings,
) -> pd.DataFrame:
    """``steering_summary``: one row per method with the Overall Score, its parts and the judge record."""
    overall = overall_scores(steering_selection)
    overall = overall[overall["dataset_name"] == params.dataset_name]
    wins = win_rates(steering_selection, baseline=params.winrate_baseline)
    wins = wins.set_index(["method", "dataset_name"])["win_rate"]
    judge_kind = str(judgements["judge_kind"].iloc[0]) if len(judgements) else params.judge.kind
    judge_model = str(judgements["judge_model"].iloc[0]) if len(judgements) else ""
    fresh = judgements[~judgements["replica"]] if "replica" in judgements.columns else judgements
    failures = (~fresh["parse_ok"]).groupby(fresh["method"]).sum()
    rows = []
    for rec in overall.to_dict("records"):
        scores = steering_selection.loc[
            (steering_selection["method"] == rec["method"])
            & (steering_selection["dataset_name"] == rec["dataset_name"]),
            "test_hm",
        ]
        low, high = bootstrap_ci(
            scores.to_numpy(), n_resamples=params.n_resamples, confidence=params.confidence, seed=run.seed
        )
        rows.append(
            {
                "method": rec["method"],
                "setting": run.setting,
                "judge_kind": judge_kind,
                "judge_model": judge_model,
                "overall": rec["overall"],
                "concept": rec["concept"],
                "instruction": rec["instruction"],
                "fluency": rec["fluency"],
                "perplexity": rec["perplexity"],
                "winrate_vs_prompt": float(wins.get((rec["method"], rec["dataset_name"]), np.nan)),
                "n_concepts": int(rec["n_concepts"]),
                "parse_failures": int(failures.get(rec["method"], 0)),
                "ci_low": low,
                "ci_high": high,
                "dataset_name": rec["dataset_name"],
            }
        )
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    for rec in out.to_dict("records"):
        log.info(
            "steering %s (%s judge): Overall %.3f, CI %.3f-%.3f (concept %.2f, instruction %.2f, fluency %.2f) "
            "over %d concepts",
            rec["method"],
            rec["judge_kind"],
            rec["overall"],
            rec["ci_low"],
            rec["ci_high"],
            rec["concept"],
            rec["instruction"],
            rec["fluency"],
            rec["n_concepts"],
        )
    return out.astype({"n_concepts": "int64", "parse_failures": "int64"})


def collect_llm_usage(prompt_usage: pd.DataFrame, judge_usage: pd.DataFrame) -> pd.DataFrame:
    """``steering_llm_usage``: one row per stage that called an LLM; logs the cost line."""
    frames = [f for f in (prompt_usage, judge_usage) if f is not None and len(f)]
    usage = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=USAGE_COLUMNS)
    usage = usage.reindex(columns=USAGE_COLUMNS)
    for rec in usage.to_dict("records"):
        log.info(
            "LLM usage %s (%s): %d calls, %d cache hits, %d input + %d output tokens, $%.4f",
            rec["stage"],
            rec["model"],
            rec["calls"],
            rec["cache_hits"],
            rec["input_tokens"],
            rec["output_tokens"],
            rec["cost_usd"],
        )
    log.info(
        "steering_eval LLM cost: $%.4f in %d calls", float(usage["cost_usd"].sum()), int(usage["calls"].sum())
    )
    return usage
