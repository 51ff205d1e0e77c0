"""Suppression generation (protocol §6): the steering plans with negated factors and each method's strength rule.

The plans are the steering pipeline's own (:func:`~axbench_kedro.steering.plans.steering_plans`); only the factor
grid (negated, :func:`~axbench_kedro.suppression.prompts.negate_factors`) and the strength of each row change:
``addition`` methods steer with m·(−f), ``addition_suppression`` methods (RePS, Lang.) with s(m·(−f), b)
(:func:`~axbench_kedro.suppression.strengths.suppression_strengths`). Factor-free methods (the prompt defence)
read the row's ``steered_input`` and steer with nothing. Generation, batching and the cache are the steering
schedule's (:func:`~axbench_kedro.steering.schedule.generate_plans`).

Example:
    >>> frame = generate_suppression_rows(prompts, artifacts, max_activations, tm, cache, params,
    ...                                   layer=12, seed=42)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import Method
from axbench_kedro.methods.registry import get_method
from axbench_kedro.scaling.executor import ShardExecutor
from axbench_kedro.steering.plans import MethodPlan, resolve_artifact, steering_plans
from axbench_kedro.steering.schedule import generate_steering_rows
from axbench_kedro.suppression.prompts import negate_factors
from axbench_kedro.suppression.strengths import suppression_strengths

__all__ = ["suppression_plans", "generate_suppression_rows"]

log = logging.getLogger(__name__)


def _strength_fn(method: Method, plan: MethodPlan, biases: torch.Tensor) -> Callable[[int, float], float]:
    def strength(concept_id: int, factor: float) -> float:
        b = biases[plan.rows[concept_id]].reshape(1)
        return float(suppression_strengths(method, [factor], [plan.magnitudes[concept_id]], b)[0])

    return strength


def suppression_plans(
    method_names: Sequence[str] | None,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    params: SteeringEvalParams,
    *,
    layer: int,
    tm: TargetModel,
    concept_ids: Sequence[int],
) -> list[MethodPlan]:
    """The steering plans of ``method_names`` with negated grids and each method's suppression strength rule."""
    plans = steering_plans(
        method_names, method_artifacts, max_activations, params, layer=layer, tm=tm, concept_ids=concept_ids
    )
    # An adapter method (LoRA, LoReFT) steers toward its concept with no strength to negate: not a suppression.
    adapters = [p.method for p in plans if p.adapter is not None]
    if adapters:
        log.info("suppression: %s left out (adapter methods have no factor to negate)", ", ".join(adapters))
        plans = [p for p in plans if p.adapter is None]
    for plan in plans:
        plan.factors = negate_factors(plan.factors)
        if plan.factor_free:
            continue
        method = get_method(plan.method)
        if method.suppression_intervention == "addition":
            # b is ignored; one zero per artifact row (per-prompt plans compute their vectors later)
            biases = torch.zeros(1 + max(plan.rows.values(), default=0))
        else:
            biases = method.suppression_biases(resolve_artifact(method_artifacts[plan.method]))
        plan.strength_fn = _strength_fn(method, plan, biases)
    return plans


def generate_suppression_rows(
    suppression_prompts: pd.DataFrame,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    tm: TargetModel,
    cache: SQLiteCache,
    params: SteeringEvalParams,
    *,
    layer: int,
    seed: int,
    executor: ShardExecutor | None = None,
) -> pd.DataFrame:
    """``suppression_generations`` (the ``steering_generations`` schema, negative factors) of ``params.methods``.

    Args:
        suppression_prompts: ``AlpacaEvalSuppress`` rows (``input`` = rewritten instruction, ``steered_input`` =
            prompt-defence text).
        method_artifacts: ``{method: artifact}`` from training (values may be lazy loaders).
        max_activations: magnitude bases per concept and method [D 12].
        tm: the target model.
        cache: generation cache (shared with steering; keys hold prompt and strength).
        params: ``suppression.steering``.
        layer: steered block.
        seed: run seed.
        executor: runs the batches the cache lacks (Dask workers when distributed; in-process when ``None``).
    """
    return generate_steering_rows(
        suppression_prompts,
        method_artifacts,
        max_activations,
        tm,
        cache,
        params,
        layer=layer,
        seed=seed,
        plan_builder=suppression_plans,
        label="suppression",
        executor=executor,
    )
