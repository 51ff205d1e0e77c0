"""Nodes of the ``steering_eval`` pipeline (protocol §5): prompts → steered generations → judgements → scores.

Every node is a function of its inputs; the method registry and the judge registry decide what happens per method
and per judge kind (no branching on names here). The logic lives in :mod:`axbench_kedro.steering` (the Prompt
baseline's texts, prompts, plans, the generation schedule, judging, the summary, the LLM ledger) and
:mod:`axbench_kedro.metrics.steering`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.judges.base import JudgeResources
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.metrics.steering import generation_scores, select_factors, steering_scores
from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.scaling.executor import LazyExecutor
from axbench_kedro.steering.judging import judge_generations
from axbench_kedro.steering.plans import factor_free_methods
from axbench_kedro.steering.prompt_baseline import steering_instruction_texts
from axbench_kedro.steering.prompts import steering_prompt_frame
from axbench_kedro.steering.schedule import generate_steering_rows
from axbench_kedro.steering.summary import log_steering_summary, steering_summary_frame
from axbench_kedro.steering.usage import combine_usage

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

    No length cap by default [D 31]; replies cut at a configured cap are kept, counted and logged.

    Returns:
        ``prompt_steering_texts`` (``concept_id, text, is_fallback, finish_reason, truncated, max_tokens,
        template_sha256, model``) and its usage row.
    """
    return steering_instruction_texts(
        concepts_meta, generator_llm, llm_prices, prompt_templates, params.prompt_steering
    )


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
    scaling: ScalingParams | None = None,
) -> pd.DataFrame:
    """``steering_generations`` of every steering method: all rows of a method in large mixed batches.

    Magnitudes come from ``max_activations`` (a missing one is an error, [D 12]); factor-free methods generate
    once per instruction and their row stands for every factor [D 5]; every batch is persisted in the generation
    cache as soon as it finishes, so an interrupted run resumes with the missing rows only. With
    ``scaling.engine: dask`` (``None``: sequential) the missing batches run on Dask workers (the same
    generations; a cluster is started only when a batch is missing).
    """
    with LazyExecutor.for_model(scaling, target_model) as executor:
        return generate_steering_rows(
            steering_prompts,
            method_artifacts,
            max_activations,
            target_model,
            generation_cache,
            params,
            layer=run.layer,
            seed=run.seed,
            executor=executor,
        )


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
    return judge_generations(steering_generations, steering_prompts, params.judge, resources)


# ---- metrics -----------------------------------------------------------------------------------------------------
def score_steering(
    judgements: pd.DataFrame, steering_generations: pd.DataFrame, params: SteeringEvalParams
) -> pd.DataFrame:
    """``steering_scores`` (protocol §1.13): per-split means of the per-generation HM and of each criterion."""
    per_generation = generation_scores(judgements, steering_generations)
    return steering_scores(per_generation, n_selection=params.instructions.n_selection)


def select_steering_factors(steering_scores: pd.DataFrame) -> pd.DataFrame:
    """``steering_selection`` (protocol §1.14): factor chosen on the selection split, Score on the test split."""
    methods = sorted(steering_scores["method"].unique())
    return select_factors(steering_scores, factor_free_methods=factor_free_methods(methods))


def summarize_steering(
    steering_selection: pd.DataFrame,
    judgements: pd.DataFrame,
    max_activations: pd.DataFrame,
    params: SteeringEvalParams,
    run: RunSettings,
) -> pd.DataFrame:
    """``steering_summary``: one row per method with the Overall Score, its parts, the judge record and the
    magnitude source (``label`` names a ``sae_table`` method that fell back to the latent-eval rule, [D 13])."""
    out = steering_summary_frame(steering_selection, judgements, params, run, max_activations)
    log_steering_summary(out)
    return out


def collect_llm_usage(prompt_usage: pd.DataFrame, judge_usage: pd.DataFrame) -> pd.DataFrame:
    """``steering_llm_usage``: one row per stage that called an LLM; logs the cost line."""
    return combine_usage(prompt_usage, judge_usage)
