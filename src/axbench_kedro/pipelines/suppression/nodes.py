"""Nodes of the ``suppression`` pipeline (protocol §6) that the steering pipeline does not already have.

Judging, the summary and the LLM ledger are the ``steering_eval`` nodes themselves (wired in ``pipeline.py`` with
``params:suppression.steering``); the logic of the nodes below lives in :mod:`axbench_kedro.suppression`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.suppression import SuppressionConcepts, SuppressionTextParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.steering.plans import factor_free_methods
from axbench_kedro.steering.prompts import check_concepts
from axbench_kedro.suppression.generation import generate_suppression_rows
from axbench_kedro.suppression.prompts import SUPPRESS_DATASET, suppression_prompt_frame
from axbench_kedro.suppression.scoring import suppression_generation_scores, suppression_selection
from axbench_kedro.suppression.texts import suppression_texts

__all__ = [
    "write_suppression_texts",
    "build_suppression_prompts",
    "generate_suppression",
    "score_suppression",
]


def _evaluated_concepts(
    concepts_meta: pd.DataFrame, concepts: SuppressionConcepts, steering: SteeringEvalParams
) -> pd.DataFrame:
    if steering.dataset_name != SUPPRESS_DATASET:
        raise AxbenchConfigError(
            f"suppression.steering.dataset_name: must be {SUPPRESS_DATASET!r}, got {steering.dataset_name!r}"
        )
    frame = check_concepts(concepts_meta)
    return frame if concepts.max_concepts is None else frame.head(concepts.max_concepts)


def write_suppression_texts(
    concepts_meta: pd.DataFrame,
    steering_instructions: pd.DataFrame,
    generator_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    concepts: SuppressionConcepts,
    texts: SuppressionTextParams,
    steering: SteeringEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``suppression_texts``: R1 per concept × instruction, R2 per concept, R3 per rule concept (cached LLM calls,
    empty replies → the configured fallbacks [D 18]), and their usage row."""
    return suppression_texts(
        _evaluated_concepts(concepts_meta, concepts, steering),
        steering_instructions,
        generator_llm,
        llm_prices,
        prompt_templates,
        n_instructions=steering.instructions.total,
        rule_concept_ids=concepts.rule_concept_ids,
        templates=texts.templates.model_dump(),
        fallbacks=texts.fallbacks.model_dump(),
        temperature=texts.temperature,
        max_tokens=texts.max_tokens,
        first_line_only=texts.first_line_only,
    )


def build_suppression_prompts(
    concepts_meta: pd.DataFrame,
    steering_instructions: pd.DataFrame,
    suppression_texts: pd.DataFrame,
    target_model: TargetModel,
    concepts: SuppressionConcepts,
    steering: SteeringEvalParams,
) -> pd.DataFrame:
    """``suppression_prompts``: ``AlpacaEvalSuppress`` rows, one per concept × instruction × negated factor of the
    shared grid (``input`` = F-prompt(R1 text); ``steered_input`` = the prompt-defence text [D 23])."""
    return suppression_prompt_frame(
        _evaluated_concepts(concepts_meta, concepts, steering),
        steering_instructions,
        suppression_texts,
        target_model.tokenizer,
        n_instructions=steering.instructions.total,
        factors=steering.factors,
    )


def generate_suppression(
    suppression_prompts: pd.DataFrame,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    target_model: TargetModel,
    generation_cache: SQLiteCache,
    params: SteeringEvalParams,
    run: RunSettings,
) -> pd.DataFrame:
    """``suppression_generations``: every method on its negated grid with its suppression intervention
    (``addition_suppression`` for RePS / Lang., m·(−f) for other rank-1 methods; factor-free = prompt defence)."""
    return generate_suppression_rows(
        suppression_prompts,
        method_artifacts,
        max_activations,
        target_model,
        generation_cache,
        params,
        layer=run.layer,
        seed=run.seed,
    )


def score_suppression(
    suppression_judgements: pd.DataFrame, suppression_generations: pd.DataFrame, params: SteeringEvalParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``suppression_scores`` and ``suppression_selection``: HM(2 − concept, instruction, fluency) per generation
    (zero veto), factor chosen on ids ``< n_selection``, Score on the rest [D 24]."""
    per_generation = suppression_generation_scores(suppression_judgements, suppression_generations)
    methods = sorted(per_generation["method"].unique())
    return suppression_selection(
        per_generation,
        n_selection=params.instructions.n_selection,
        factor_free_methods=factor_free_methods(methods),
    )
