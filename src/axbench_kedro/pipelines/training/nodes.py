"""Nodes of the ``training`` pipeline: train the configured methods and summarise what happened.

The work itself (shared activations, per-concept caching, method dispatch) lives in
:mod:`axbench_kedro.methods.trainer`; the nodes only adapt catalog data and parameters to it.
"""

from __future__ import annotations

import pandas as pd
import torch

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.dictionary_file import DictionarySource
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sae_file import SAESource
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, build_preferences, train_methods
from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.scaling.executor import make_executor

__all__ = ["train_all_methods"]


def train_all_methods(
    train_data: pd.DataFrame,
    concepts_meta: pd.DataFrame,
    preference_data: pd.DataFrame,
    target_model: TargetModel,
    sae_params: SAESource | None,
    released_dictionaries: DictionarySource | None,
    training_cache: ArtifactStore | None,
    run: RunSettings,
    training: TrainingParams,
    scaling: ScalingParams,
) -> tuple[dict[str, MethodArtifact], pd.DataFrame]:
    """Train ``training.methods`` (every registered method when ``null``) on every concept of ``concepts_meta``.

    ``released_dictionaries`` (with ``concepts_meta``, the model name, the layer and the method's hyperparameters)
    is handed to every method through :meth:`~axbench_kedro.methods.base.Method.bind_run_inputs` (the
    ``Dictionary(...)`` methods read it).
    ``preference_data`` is read only when a method needs preference pairs (the RePS family). With
    ``scaling.engine: dask`` each concept group is trained on a Dask worker (same artifacts as in-process).

    Returns:
        ``method_artifacts`` (``{method: MethodArtifact}``, skipped methods included with their reason) and
        ``training_summary`` (method, status, skip_reason, n_concepts, cached_concepts, seconds, source_files).
    """
    if run.layer >= target_model.n_layers or run.layer < 0:
        raise AxbenchConfigError(
            f"run.layer: {run.layer} is outside the model's {target_model.n_layers} blocks"
        )
    concepts = build_concepts(train_data, concepts_meta)
    methods = [(get_method(name), training.method_params(name)) for name in training.method_names()]
    run_inputs = {
        "released_dictionaries": released_dictionaries,
        "concepts_meta": concepts_meta,
        "model": target_model.name,
        "layer": run.layer,
    }
    for method, hp in methods:
        method.bind_run_inputs({**run_inputs, "hyperparameters": hp})
    needs_pairs = any("preference" in m.requires for m, _ in methods)
    preferences = build_preferences(preference_data, concepts) if needs_pairs else None
    opts = TrainOptions(
        setting=run.setting,
        layer=run.layer,
        seed=run.seed,
        activation_batch_size=training.activation_batch_size,
        lm_cache_batch_size=training.lm_cache_batch_size,
        max_length=training.max_length,
        sae_width=training.sae_width,
        concept_group_size=training.concept_group_size,
        append_eot_to_targets=training.append_eot_to_targets,
        lm_objective_dtype=getattr(torch, training.lm_objective_dtype)
        if training.lm_objective_dtype
        else None,
    )
    store = training_cache if training.use_cache else None
    with make_executor(scaling, gpu=target_model.device.type == "cuda") as executor:
        return train_methods(
            target_model,
            concepts,
            methods,
            opts,
            sae=sae_params,
            store=store,
            preferences=preferences,
            executor=executor,
        )
