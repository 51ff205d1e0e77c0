"""Nodes of the ``steering_eval`` pipeline (protocol §5): prompts → steered generations → judgements → scores.

Every node is a function of its inputs; the method registry and the judge registry decide what happens per method
and per judge kind (no branching on names here). The logic lives in :mod:`axbench_kedro.steering` (prompts, plans,
the generation schedule, the summary) and :mod:`axbench_kedro.metrics.steering`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.judges.base import JudgeResources, build_judge
from axbench_kedro.llm.ledger import USAGE_COLUMNS
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.metrics.steering import generation_scores, select_factors, steering_scores
from axbench_kedro.steering.plans import steering_plans
from axbench_kedro.steering.prompts import check_concepts, steering_prompt_frame
from axbench_kedro.steering.schedule import GenerationStats, generate_plans
from axbench_kedro.steering.summary import steering_summary_frame

__all__ = [
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


# ---- prompts -----------------------------------------------------------------------------------------------------
def write_prompt_steering_texts(
    concepts_meta: pd.DataFrame,
    generator_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    params: SteeringEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Prompt baseline's steering instruction per concept (template P1, one cached LLM call per concept).

    An empty reply is replaced by the configured fallback (``is_fallback`` = True) [D 18]. The template named by
    ``steering_eval.prompt_steering.template`` comes from ``prompt_templates``; the usage is costed with
    ``llm_prices``.

    Returns:
        ``prompt_steering_texts`` (``concept_id, text, is_fallback, template_sha256, model``) and its usage row.
    """
    from axbench_kedro.llm.client import apply_prices
    from axbench_kedro.llm.templates import pick_template
    from axbench_kedro.llm.types import LLMRequest

    concepts = check_concepts(concepts_meta)
    cfg = params.prompt_steering
    template = pick_template(prompt_templates, cfg.template, "steering_eval.prompt_steering.template")
    generator_llm = apply_prices(generator_llm, llm_prices)
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
    return steering_prompt_frame(
        concepts_meta,
        steering_instructions,
        prompt_steering_texts,
        target_model.tokenizer,
        dataset_name=params.dataset_name,
        n_instructions=params.instructions.total,
        factors=params.factors,
    )


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
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    target_model: TargetModel,
    params: SteeringEvalParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``judgements`` (protocol §1.12) from the configured judge, and the judge's LLM usage.

    ``judge_llm`` may be a client or a lazy handle: it is only built when the judge kind needs it. The LLM judge
    takes its rubrics from ``prompt_templates`` and costs its usage with ``llm_prices``.
    """
    resources = JudgeResources(
        llm_client=judge_llm,
        target_model=target_model,
        seed=run.seed,
        prompt_templates=prompt_templates,
        llm_prices=llm_prices,
    )
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
    out = steering_summary_frame(steering_selection, judgements, params, run)
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
    return out


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
