"""Nodes of the ``datagen`` pipeline (protocol §2): pure functions over catalog data.

The LLM client, the target model, the datagen cache, the prompt templates and the LLM price table arrive as
catalog datasets; everything that is written goes out through the catalog. Released parquet files given by the
``provided_train_data`` / ``provided_latent_eval_data`` catalog entries (``None`` when not configured) are
validated on load and passed through instead of generating.

The logic lives in :mod:`axbench_kedro.datagen` (``run``: the per-concept generation run, ``manifest``: the run's
manifest); the nodes adapt catalog data and parameters to it.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.concepts import (
    concept_entries,
    concepts_frame,
    concepts_meta_from_rows,
    select_concepts,
)
from axbench_kedro.datagen.generate import build_negative_pool, build_preference_data, rows_frame
from axbench_kedro.datagen.greedy import greedy_answers
from axbench_kedro.datagen.instructions import InstructionPools
from axbench_kedro.datagen.manifest import datagen_manifest
from axbench_kedro.datagen.run import generate_concept_tables
from axbench_kedro.datagen.schemas import check_counts, validate_table
from axbench_kedro.lm.types import TargetModel

__all__ = [
    "select_datagen_concepts",
    "generate_negative_pool",
    "generate_concept_data",
    "assemble_train_data",
    "generate_preference_data",
    "summarise_datagen",
]

log = logging.getLogger(__name__)


def select_datagen_concepts(
    concept_list: Any,
    provided_train_data: pd.DataFrame | None,
    provided_latent_eval_data: pd.DataFrame | None,
    datagen: DatagenParams,
    run: RunSettings,
) -> pd.DataFrame:
    """The concepts to generate for (``concepts_meta`` columns; empty genre lists = ask the LLM).

    With provided data the concepts come from those files (§1.1) and ``max_concepts`` is not applied.
    """
    train, latent = provided_train_data, provided_latent_eval_data
    if train is not None or latent is not None:
        meta = concepts_meta_from_rows(train, latent)
        log.info("datagen: %d concepts taken from the provided data", len(meta))
        return meta
    expected = datagen.concept_source.path if datagen.concept_source is not None else None
    entries = concept_entries(concept_list, "concept_list", expected)
    from_export = isinstance(concept_list, list) and bool(concept_list) and isinstance(concept_list[0], dict)
    if expected is not None and not from_export:
        foreign = [e for e in entries if f"/{expected}/" not in e.ref]
        if foreign:
            log.warning(
                "concept_list: %d of %d concepts do not link to %s (datagen.concept_source)",
                len(foreign),
                len(entries),
                expected,
            )
    chosen = select_concepts(entries, datagen.max_concepts, run.seed)
    if datagen.max_concepts is not None and len(chosen) < datagen.max_concepts:
        log.warning(
            "concept_list: %d concepts, fewer than datagen.max_concepts=%d", len(chosen), datagen.max_concepts
        )
    return concepts_frame(chosen)


def generate_negative_pool(
    seed_instructions: pd.DataFrame,
    provided_train_data: pd.DataFrame | None,
    target_model: TargetModel,
    prompt_templates: dict[str, Any],
    datagen_cache: SQLiteCache,
    datagen: DatagenParams,
    run: RunSettings,
) -> pd.DataFrame:
    """The shared pool (§2.4.1): N/2 train instructions per genre answered greedily by the target model.

    Empty when ``train_data`` is provided (the provided file already holds its pool).
    """
    if provided_train_data is not None:
        return rows_frame([], "train_data")
    pools = InstructionPools(seed_instructions)
    answers = greedy_answers(target_model, prompt_templates, datagen_cache, datagen)
    return build_negative_pool(pools, answers, datagen.pool_per_genre, run.seed, datagen.dataset_category)


def generate_concept_data(
    datagen_concepts: pd.DataFrame,
    seed_instructions: pd.DataFrame,
    provided_train_data: pd.DataFrame | None,
    provided_latent_eval_data: pd.DataFrame | None,
    target_model: TargetModel,
    generator_llm: Any,
    llm_prices: dict[str, Any],
    prompt_templates: dict[str, Any],
    datagen_cache: SQLiteCache,
    datagen: DatagenParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """LLM-written rows per concept (§2.4.2, §2.5).

    Returns:
        ``concepts_meta``, the ``train_data`` positives, ``latent_eval_data``, ``datagen_llm_usage`` (costed with
        ``llm_prices``) and the generation record (prompt style, template hashes, generator, contrast-chain
        counts, provided tables).
    """
    return generate_concept_tables(
        datagen_concepts,
        seed_instructions,
        provided_train_data,
        provided_latent_eval_data,
        target_model,
        generator_llm,
        llm_prices,
        prompt_templates,
        datagen_cache,
        datagen,
        run.seed,
    )


def assemble_train_data(
    datagen_negative_pool: pd.DataFrame,
    datagen_train_positives: pd.DataFrame,
    provided_train_data: pd.DataFrame | None,
    datagen: DatagenParams,
) -> pd.DataFrame:
    """``train_data``: the pool rows then every concept's positives (or the provided file, unchanged)."""
    provided = provided_train_data
    if provided is not None:
        check_counts(
            provided,
            "train_data",
            {"positive": datagen.train_positives, "pool": datagen.pool_per_genre},
            "provided_train_data",
        )
        return provided
    frame = pd.concat([datagen_negative_pool, datagen_train_positives], ignore_index=True)
    frame = rows_frame(frame.to_dict("records"), "train_data")
    validate_table(frame, "train_data")
    check_counts(frame, "train_data", {"positive": datagen.train_positives, "pool": datagen.pool_per_genre})
    return frame


def generate_preference_data(
    train_data: pd.DataFrame,
    target_model: TargetModel,
    prompt_templates: dict[str, Any],
    datagen_cache: SQLiteCache,
    datagen: DatagenParams,
) -> pd.DataFrame:
    """``preference_data`` (§2.6): winning = the positive, losing = the target model's greedy answer."""
    answers = greedy_answers(target_model, prompt_templates, datagen_cache, datagen)
    return validate_table(build_preference_data(train_data, answers), "preference_data")


def summarise_datagen(
    train_data: pd.DataFrame,
    latent_eval_data: pd.DataFrame,
    preference_data: pd.DataFrame,
    datagen_llm_usage: pd.DataFrame,
    datagen_generation_info: dict[str, Any],
    datagen: DatagenParams,
    run: RunSettings,
) -> dict[str, Any]:
    """Log one summary line (rows per category, LLM calls and cost) and return the run's datagen manifest."""
    return datagen_manifest(
        train_data,
        latent_eval_data,
        preference_data,
        datagen_llm_usage,
        datagen_generation_info,
        datagen,
        run,
    )
