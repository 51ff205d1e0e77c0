"""Nodes of the ``suppression`` pipeline (protocol §6) that the steering pipeline does not already have.

The summary is the ``steering_eval`` node itself (wired in ``pipeline.py`` with ``params:suppression.steering``);
judging reuses the steering judges with the rule judge in place of J1 for rule concepts. The logic of the nodes
below lives in :mod:`axbench_kedro.suppression`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.suppression import AttackParams, SuppressionConcepts, SuppressionTextParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.judges.base import JudgeResources
from axbench_kedro.judges.rule_concepts import rule_description
from axbench_kedro.judges.rule_judge import RuleJudgeParams
from axbench_kedro.llm.ledger import USAGE_COLUMNS
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.scaling.executor import LazyExecutor
from axbench_kedro.steering.plans import factor_free_methods
from axbench_kedro.steering.prompts import check_concepts
from axbench_kedro.steering.usage import combine_usage
from axbench_kedro.suppression.attacks import (
    attack_prompts_frame,
    attack_scores_frame,
    attack_settings,
    attack_summary_frame,
    attacked_rules,
    generate_attack_rows,
    multishot_rules,
)
from axbench_kedro.suppression.generation import generate_suppression_rows, suppression_plans
from axbench_kedro.suppression.judging import (
    judge_attack_generations,
    judge_suppression_generations,
    rule_concepts,
)
from axbench_kedro.suppression.multishot import EXAMPLE_COLUMNS, multishot_examples
from axbench_kedro.suppression.prompts import SUPPRESS_DATASET, suppression_prompt_frame
from axbench_kedro.suppression.scoring import suppression_generation_scores, suppression_selection
from axbench_kedro.suppression.texts import suppression_texts

__all__ = [
    "write_suppression_texts",
    "build_suppression_prompts",
    "generate_suppression",
    "judge_suppression",
    "score_suppression",
    "write_multishot_examples",
    "build_attack_prompts",
    "generate_attacks",
    "judge_attacks",
    "score_attacks",
    "collect_suppression_llm_usage",
]


def _evaluated_concepts(
    concepts_meta: pd.DataFrame, concepts: SuppressionConcepts, steering: SteeringEvalParams
) -> pd.DataFrame:
    if steering.dataset_name != SUPPRESS_DATASET:
        raise AxbenchConfigError(
            f"suppression.steering.dataset_name: must be {SUPPRESS_DATASET!r}, got {steering.dataset_name!r}"
        )
    frame = check_concepts(concepts_meta)
    if concepts.concept_ids is not None:
        missing = sorted(set(concepts.concept_ids) - set(frame["concept_id"].astype(int)))
        if missing:
            raise AxbenchConfigError(
                f"suppression.concepts.concept_ids: {missing} not in concepts_meta "
                f"(its ids: {sorted(frame['concept_id'].astype(int))})"
            )
        frame = frame[frame["concept_id"].astype(int).isin(concepts.concept_ids)]
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
    """``suppression_texts``: R1 per concept × instruction, R2 per concept, R3 per rule concept (the
    ``concepts_meta`` rows with a ``rule_id``; R3 reads the rule's description), cached LLM calls, empty replies →
    the configured fallbacks [D 18], and their usage row."""
    return suppression_texts(
        _evaluated_concepts(concepts_meta, concepts, steering),
        steering_instructions,
        generator_llm,
        llm_prices,
        prompt_templates,
        n_instructions=steering.instructions.total,
        rules={c: rule_description(r) for c, r in rule_concepts(concepts_meta).items()},
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
    scaling: ScalingParams | None = None,
) -> pd.DataFrame:
    """``suppression_generations``: every method on its negated grid with its suppression intervention
    (``addition_suppression`` for RePS / Lang., m·(−f) for other rank-1 methods; factor-free = prompt defence).
    With ``scaling.engine: dask`` the batches the cache lacks run on Dask workers (the same generations)."""
    with LazyExecutor.for_model(scaling, target_model) as executor:
        return generate_suppression_rows(
            suppression_prompts,
            method_artifacts,
            max_activations,
            target_model,
            generation_cache,
            params,
            layer=run.layer,
            seed=run.seed,
            executor=executor,
        )


def _resources(
    judge_llm: Any, llm_prices: Any, prompt_templates: Any, target_model: TargetModel, seed: int
) -> JudgeResources:
    return JudgeResources(
        llm_client=judge_llm,
        target_model=target_model,
        seed=seed,
        prompt_templates=prompt_templates,
        llm_prices=llm_prices,
    )


def judge_suppression(
    suppression_generations: pd.DataFrame,
    suppression_prompts: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    judge_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    target_model: TargetModel,
    params: SteeringEvalParams,
    rule_judge: RuleJudgeParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``suppression_judgements`` (§1.12) and the judge's usage (stage ``suppression.judge``): the configured
    steering judge on every criterion of ordinary concepts; for rule concepts only instruction and fluency, and the
    rule judge's ``rule`` row in place of J1 (protocol §6)."""
    return judge_suppression_generations(
        suppression_generations,
        suppression_prompts,
        params.judge,
        _resources(judge_llm, llm_prices, prompt_templates, target_model, run.seed),
        rules=rule_concepts(concepts_meta),
        rule_params=rule_judge,
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


# ---- attacks (rule concepts only, at each concept's selected suppression factor) ---------------------------------
def _attacked(concepts_meta: pd.DataFrame, attacks: AttackParams) -> dict[int, str]:
    return attacked_rules(rule_concepts(concepts_meta), attacks.excluded_rules)


def write_multishot_examples(
    concepts_meta: pd.DataFrame,
    suppression_prompts: pd.DataFrame,
    generator_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    attacks: AttackParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``multishot_examples`` (R4, cached LLM calls): ``max(attacks.n_shots)`` examples per attacked rule of the
    evaluated concepts, and the usage row (stage ``suppression.multishot``). No many-shot attack or no rule
    concept → an empty frame and no LLM call."""
    evaluated = set(suppression_prompts["concept_id"].astype(int)) if len(suppression_prompts) else set()
    rules = {c: r for c, r in _attacked(concepts_meta, attacks).items() if c in evaluated}
    n_examples = max(attacks.n_shots, default=0)
    if not rules or n_examples == 0:
        return pd.DataFrame(columns=EXAMPLE_COLUMNS).astype({"example_id": "int64"}), pd.DataFrame(
            columns=USAGE_COLUMNS
        )
    return multishot_examples(
        multishot_rules(rules),
        generator_llm,
        llm_prices,
        prompt_templates,
        n_examples=n_examples,
        per_call=attacks.per_call,
        max_calls=attacks.max_calls,
        seed=run.seed,
        template=attacks.template,
        temperature=attacks.temperature,
        max_tokens=attacks.max_tokens,
    )


def build_attack_prompts(
    suppression_prompts: pd.DataFrame,
    suppression_selection: pd.DataFrame,
    multishot_examples: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    target_model: TargetModel,
    attacks: AttackParams,
) -> pd.DataFrame:
    """``attack_prompts``: per method × attack setting × attacked rule concept × instruction, at the method's
    selected suppression factor of the concept (``AttackMultiShot`` / ``AttackOverwrite`` /
    ``AttackOverwritePrefix``; ``attack`` and ``n_shot`` name the setting)."""
    return attack_prompts_frame(
        suppression_prompts,
        suppression_selection,
        multishot_examples,
        _attacked(concepts_meta, attacks),
        attack_settings(attacks.n_shots, attacks.overwrite),
        target_model.tokenizer,
    )


def generate_attacks(
    attack_prompts: pd.DataFrame,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    target_model: TargetModel,
    generation_cache: SQLiteCache,
    params: SteeringEvalParams,
    run: RunSettings,
    scaling: ScalingParams | None = None,
) -> pd.DataFrame:
    """``attack_generations``: every setting through the steering schedule and the generation cache, each method
    with its suppression intervention at each concept's selected factor (the prompt defence factor-free); on Dask
    workers with ``scaling.engine: dask``, as :func:`generate_suppression`."""
    if attack_prompts.empty:
        return generate_attack_rows(
            attack_prompts, [], target_model, generation_cache, params, layer=0, seed=0
        )
    plans = suppression_plans(
        list(dict.fromkeys(attack_prompts["method"])),
        method_artifacts,
        max_activations,
        params,
        layer=run.layer,
        tm=target_model,
        concept_ids=sorted(int(c) for c in attack_prompts["concept_id"].unique()),
    )
    with LazyExecutor.for_model(scaling, target_model) as executor:
        return generate_attack_rows(
            attack_prompts,
            plans,
            target_model,
            generation_cache,
            params,
            layer=run.layer,
            seed=run.seed,
            executor=executor,
        )


def judge_attacks(
    attack_generations: pd.DataFrame,
    attack_prompts: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    judge_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    target_model: TargetModel,
    params: SteeringEvalParams,
    rule_judge: RuleJudgeParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``attack_judgements`` (instruction and fluency from the configured judge, ``rule`` from the rule judge),
    one attack setting at a time, and the judge's usage (stage ``suppression.attack_judge``)."""
    return judge_attack_generations(
        attack_generations,
        attack_prompts,
        params.judge,
        _resources(judge_llm, llm_prices, prompt_templates, target_model, run.seed),
        rules=rule_concepts(concepts_meta),
        rule_params=rule_judge,
    )


def score_attacks(
    attack_judgements: pd.DataFrame,
    suppression_scores: pd.DataFrame,
    suppression_selection: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    attacks: AttackParams,
    params: SteeringEvalParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``attack_scores`` (per generation: HM(2 − rule, instruction, fluency)) and ``attack_summary`` (per method ×
    setting, plus the no-attack row from the suppression Score: mean over rule concepts of the test-split HM with
    the steering summary's bootstrap CI)."""
    rules = _attacked(concepts_meta, attacks)
    scores = attack_scores_frame(attack_judgements, rules, n_selection=params.instructions.n_selection)
    methods = sorted(suppression_selection["method"].unique())
    summary = attack_summary_frame(
        scores,
        suppression_selection,
        suppression_scores,
        rules,
        attack_settings(attacks.n_shots, attacks.overwrite),
        setting=run.setting,
        factor_free=factor_free_methods(methods),
        judge_kind=params.judge.kind,
        n_resamples=params.n_resamples,
        confidence=params.confidence,
        seed=run.seed,
    )
    return scores, summary


def collect_suppression_llm_usage(*usage_frames: pd.DataFrame) -> pd.DataFrame:
    """``suppression_llm_usage``: one row per stage that called an LLM (texts, judge, many-shot examples, attack
    judge); logs the cost line."""
    return combine_usage(*usage_frames)
