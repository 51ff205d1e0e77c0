"""Nodes of the ``datagen`` pipeline (protocol §2): pure functions over catalog data.

The LLM client, the target model, the datagen cache, the prompt templates and the LLM price table arrive as
catalog datasets; everything that is written goes out through the catalog. Released parquet files given by the
``provided_train_data`` / ``provided_latent_eval_data`` catalog entries (``None`` when not configured) are
validated on load and passed through instead of generating.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pandas as pd

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.concepts import (
    CONCEPTS_META_COLUMNS,
    concept_entries,
    concepts_frame,
    concepts_meta_from_rows,
    select_concepts,
)
from axbench_kedro.datagen.generate import (
    ConceptGenerator,
    build_negative_pool,
    build_preference_data,
    concept_jobs,
    rows_frame,
)
from axbench_kedro.datagen.greedy import GreedyAnswers
from axbench_kedro.datagen.instructions import InstructionPools
from axbench_kedro.datagen.prompts import DatagenPrompts
from axbench_kedro.datagen.schemas import check_counts, validate_table
from axbench_kedro.llm.client import apply_prices
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


def _provided_record(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """What the manifest keeps of a provided table: its size and a content hash (``None`` = generated)."""
    if frame is None:
        return None
    return {
        "rows": len(frame),
        "concepts": int(frame.loc[frame["concept_id"] >= 0, "concept_id"].nunique()),
        "sha256": content_key(pd.util.hash_pandas_object(frame.astype(str), index=False).tolist()),
    }


def _client(generator_llm: Any) -> Any:
    """The LLM client, built on first use when the catalog hands a lazy handle."""
    if hasattr(generator_llm, "complete_many"):
        return generator_llm
    if callable(generator_llm):
        return generator_llm()
    raise TypeError(f"generator_llm must be an LLM client, got {type(generator_llm).__name__}")


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
    answers = GreedyAnswers(target_model, datagen_cache, datagen.pool_tokens, datagen.target_batch_size)
    return build_negative_pool(pools, answers, datagen.pool_per_genre, run.seed, datagen.dataset_category)


def _usage(client: Any, since: Any) -> pd.DataFrame:
    if client is not None:
        return client.usage_frame("datagen", since=since)
    zero = {
        "stage": "datagen",
        "model": "",
        "calls": 0,
        "cache_hits": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    return pd.DataFrame([{**zero, "cost_usd": 0.0}])


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
    provided_latent = provided_latent_eval_data
    want_train = provided_train_data is None
    want_latent = provided_latent is None
    client = apply_prices(_client(generator_llm), llm_prices) if want_train or want_latent else None
    since = client.totals() if client is not None else None
    results = []
    info: dict[str, Any] = {
        "prompt_style": datagen.prompt_style,
        "generated": {"train": want_train, "latent": want_latent},
        "provided": {
            "train_data": _provided_record(provided_train_data),
            "latent_eval_data": _provided_record(provided_latent_eval_data),
        },
    }
    if client is not None:
        prompts = DatagenPrompts(
            datagen.prompt_style,
            templates=prompt_templates,
            temperature=datagen.temperature,
            top_p=datagen.top_p,
            response_max_tokens=datagen.response_max_tokens,
        )
        generator = ConceptGenerator(
            client,
            prompts,
            InstructionPools(seed_instructions),
            target_model.tokenizer,
            datagen,
            run.seed,
            datagen_cache,
            want_train=want_train,
            want_latent=want_latent,
            tokenizer_name=target_model.name,
        )
        results = generator.run(concept_jobs(datagen_concepts))
        chain: Counter[str] = Counter()
        for r in results:
            chain.update(r.stats)
        info.update(
            generator_model=client.model,
            generator_backend=getattr(client, "backend_name", ""),
            temperature=datagen.temperature,
            top_p=datagen.top_p,
            templates=prompts.hashes,
            chain=dict(chain),
        )
        log.info(
            "datagen contrast chain: %d related words → %d other meanings → %d distinct pairs (hard negatives); "
            "%d empty outputs",
            chain["related_words"],
            chain["meanings_kept"],
            chain["contrast_pairs"],
            chain["empty_outputs"],
        )
    genres = {r.concept_id: r.genres for r in results}
    meta = datagen_concepts.copy()
    meta["concept_genres"] = [
        list(genres.get(int(cid), [])) or list(g)
        for cid, g in zip(meta["concept_id"], meta["concept_genres"], strict=True)
    ]
    meta = validate_table(meta[CONCEPTS_META_COLUMNS].reset_index(drop=True), "concepts_meta")
    positives = rows_frame([row for r in results for row in r.train], "train_data")
    if provided_latent is not None:
        latent = provided_latent
    else:
        latent = validate_table(
            rows_frame([row for r in results for row in r.latent], "latent_eval_data"), "latent_eval_data"
        )
        expected = {"positive": datagen.latent_num_of_examples, "negative": datagen.latent_num_of_examples}
        check_counts(latent, "latent_eval_data", expected)
    return meta, positives, latent, _usage(client, since), info


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
    train_data: pd.DataFrame, target_model: TargetModel, datagen_cache: SQLiteCache, datagen: DatagenParams
) -> pd.DataFrame:
    """``preference_data`` (§2.6): winning = the positive, losing = the target model's greedy answer."""
    answers = GreedyAnswers(target_model, datagen_cache, datagen.pool_tokens, datagen.target_batch_size)
    return validate_table(build_preference_data(train_data, answers), "preference_data")


def _counts(column: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in column.value_counts().sort_index().items()}


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
    kind = train_data["category"].where(train_data["concept_id"] >= 0, "pool")
    usage = datagen_llm_usage.iloc[0].to_dict() if len(datagen_llm_usage) else {}
    usage = {k: (v.item() if hasattr(v, "item") else v) for k, v in usage.items()}
    manifest = {
        "setting": run.setting,
        "seed": run.seed,
        "concepts": int(train_data.loc[train_data["concept_id"] >= 0, "concept_id"].nunique()),
        "rows": {
            "train_data": _counts(kind),
            "latent_eval_data": _counts(latent_eval_data["category"]),
            "preference_data": len(preference_data),
        },
        "llm_usage": usage,
        "params": datagen.model_dump(),
        **datagen_generation_info,
    }
    log.info(
        "datagen summary: %d concepts | train_data %s | latent_eval_data %s | preference_data %d | "
        "LLM %s: %d calls, %d cache hits, %d in / %d out tokens, $%.4f",
        manifest["concepts"],
        manifest["rows"]["train_data"],
        manifest["rows"]["latent_eval_data"],
        len(preference_data),
        usage.get("model", ""),
        int(usage.get("calls", 0)),
        int(usage.get("cache_hits", 0)),
        int(usage.get("input_tokens", 0)),
        int(usage.get("output_tokens", 0)),
        float(usage.get("cost_usd", 0.0)),
    )
    return manifest
