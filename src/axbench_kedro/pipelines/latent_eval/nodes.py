"""Nodes of the ``latent_eval`` pipeline (protocol §4): score, measure, plot.

* :func:`sample_imbalance_negatives` — the shared 1:100 negative pool (§1.8).
* :func:`score_model_methods` — every ``activation`` method in one truncated forward pass plus the ``text``
  methods (BoW); pool rows are scored against every concept in the same pass. With ``scaling.engine: dask`` the
  pass's batches are spread over Dask workers (:mod:`axbench_kedro.scaling.latent`, the same scores).
* :func:`score_prompt_detection` — the ``llm`` methods (PromptDetection), rated by the target model
  (``detection_rater_llm``); the 1:100 pool too when opted in [D 32].
* :func:`merge_latent_scores`, :func:`compute_latent_metrics`, :func:`compute_max_activations`,
  :func:`plot_latent_roc`.

The logic lives in :mod:`axbench_kedro.detection`; the nodes adapt catalog data and parameters to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.detection.imbalance import sample_negative_pool
from axbench_kedro.detection.inputs import check_latent_data, detection_artifacts
from axbench_kedro.detection.model_scores import cached_model_scores
from axbench_kedro.detection.prompt_detection import prompt_detection_scores
from axbench_kedro.detection.roc import latent_roc_figure
from axbench_kedro.detection.rows import concat_pool_scores, merge_scores
from axbench_kedro.detection.sae_max_act import SAEMaxActTable
from axbench_kedro.detection.summary import latent_metrics_frame, magnitude_table
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.scaling.executor import LazyExecutor
from axbench_kedro.scaling.latent import score_model_outputs_sharded

__all__ = [
    "sample_imbalance_negatives",
    "score_model_methods",
    "score_prompt_detection",
    "merge_latent_scores",
    "compute_latent_metrics",
    "compute_max_activations",
    "plot_latent_roc",
]


def sample_imbalance_negatives(
    latent_eval_data: pd.DataFrame, run: RunSettings, latent_eval: LatentEvalParams
) -> pd.DataFrame:
    """The shared negative pool of the 1:100 set (protocol §1.8, §4.5, [D 21]).

    ``n_pos × imbalance_factor`` rows of category ``negative`` from all concepts (``n_pos`` = the largest number of
    positives of a concept), drawn with the run seed; with fewer available, all of them (the achieved ratio is
    reported in ``latent_metrics``).
    """
    data = check_latent_data(latent_eval_data)
    return sample_negative_pool(data, run.seed, latent_eval.imbalance_factor)


def score_model_methods(
    latent_eval_data: pd.DataFrame,
    imbalance_negatives: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    target_model: TargetModel,
    latent_cache: Any,
    run: RunSettings,
    latent_eval: LatentEvalParams,
    scaling: ScalingParams | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of every ``activation``, ``text`` and ``gradient`` method on the latent-eval rows and negative pool.

    With ``scaling.engine: dask`` (``None``: sequential) the rows are scored as shards on Dask workers, with the
    in-process scores; an unchanged rerun reads them from ``latent_cache`` without starting a cluster.

    Returns:
        ``(scores, imbalance_scores)``: §1.7 long rows (``max_act`` rounded to 3 decimals) and
        ``neg_row_id, concept_id, method, max_act``.
    """
    data = check_latent_data(latent_eval_data)
    arts = detection_artifacts(
        method_artifacts,
        latent_eval.exclude_methods,
        log_skipped=True,
        kinds=("activation", "text", "gradient"),
    )
    cache = latent_cache if latent_eval.use_cache else None
    if scaling is None or scaling.engine == "sequential":
        return cached_model_scores(
            data, imbalance_negatives, arts, target_model, layer=run.layer, params=latent_eval, cache=cache
        )
    with LazyExecutor.for_model(scaling, target_model) as executor:
        return cached_model_scores(
            data,
            imbalance_negatives,
            arts,
            target_model,
            layer=run.layer,
            params=latent_eval,
            cache=cache,
            score_fn=partial(score_model_outputs_sharded, executor),
        )


def score_prompt_detection(
    latent_eval_data: pd.DataFrame,
    imbalance_negatives: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    detection_rater_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    latent_eval: LatentEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """PromptDetection: the target model rates each output for the concept (rubric J1); the rating is ``max_act``.

    ``detection_rater_llm`` (a lazy handle: built only when an ``llm`` method is scored) is the rater; the template
    named by ``latent_eval.prompt_detection.template`` comes from ``prompt_templates``; the usage is costed with
    ``llm_prices``. With ``latent_eval.prompt_detection_imbalance`` the 1:100 pool is rated too [D 32].

    Returns:
        ``(scores, imbalance_prompt_scores, usage)``: §1.7 rows (``max_act`` in [0, 2] or −1 when unparsable,
        ``max_act_idx`` −1, with ``template``, ``template_sha256``, ``rater_model``), the pool's
        ``neg_row_id, concept_id, method, max_act`` rows (empty unless opted in) and the LLM usage of this stage
        (``latent_eval_llm_usage``).
    """
    data = check_latent_data(latent_eval_data)
    arts = detection_artifacts(method_artifacts, latent_eval.exclude_methods, kinds=("llm",))
    return prompt_detection_scores(
        data,
        imbalance_negatives,
        concepts_meta,
        list(arts),
        detection_rater_llm,
        llm_prices,
        prompt_templates,
        latent_eval.prompt_detection,
        imbalance=latent_eval.prompt_detection_imbalance,
    )


def merge_latent_scores(model_scores: pd.DataFrame, prompt_scores: pd.DataFrame) -> pd.DataFrame:
    """``latent_scores``: one table, rows ordered by method then row id."""
    return merge_scores(model_scores, prompt_scores)


def compute_latent_metrics(
    latent_scores: pd.DataFrame,
    imbalance_scores: pd.DataFrame,
    imbalance_prompt_scores: pd.DataFrame,
    imbalance_negatives: pd.DataFrame,
    latent_eval: LatentEvalParams,
) -> pd.DataFrame:
    """``latent_metrics`` (§1.15): one row per concept and method, plus the 1:100 metrics, their ``imb_status`` and
    the achieved ratio (PromptDetection's 1:100 metrics only when opted in [D 32])."""
    return latent_metrics_frame(
        latent_scores,
        concat_pool_scores([imbalance_scores, imbalance_prompt_scores]),
        len(imbalance_negatives),
        llm_imbalance=latent_eval.prompt_detection_imbalance,
    )


def compute_max_activations(
    latent_scores: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    sae_max_act: SAEMaxActTable,
) -> pd.DataFrame:
    """``max_activations`` (§1.9): per concept and steering method the magnitude base m.

    ``latent_eval`` methods: max of ``max_act`` over all of the concept's rows, ≤ 0 → 50. ``sae_table`` methods
    (SAE, SAE-A): the ``sae_max_act`` value of the feature they use (``source = sae_table``; a missing feature is an
    error [D 12]); without a table the latent-eval rule, ``source = latent_eval``, labelled "AxBench max-act" in
    the reports [D 13]. ``unit`` methods: m = 1. Factor-free methods have no magnitude.
    """
    return magnitude_table(latent_scores, method_artifacts, sae_max_act)


def plot_latent_roc(latent_scores: pd.DataFrame, latent_eval: LatentEvalParams) -> Figure:
    """Mean ROC curve per method (positives vs negatives, interpolated on a common FPR grid)."""
    return latent_roc_figure(latent_scores, latent_eval.roc_grid_points)
