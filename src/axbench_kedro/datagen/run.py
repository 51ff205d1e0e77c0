"""One datagen run over the selected concepts: the LLM-written tables, their usage and the generation record.

Tables given as provided data are not generated: with both ``train_data`` and ``latent_eval_data`` provided no LLM
client is built at all.

Example:
    >>> out = generate_concept_tables(concepts, seed, None, None, tm, client, prices, templates, cache, params, 42)
    ... # doctest: +SKIP
    >>> out.latent_eval_data  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.concepts import CONCEPTS_META_COLUMNS
from axbench_kedro.datagen.generate import ConceptGenerator, ConceptResult, concept_jobs, rows_frame
from axbench_kedro.datagen.instructions import InstructionPools
from axbench_kedro.datagen.manifest import provided_record
from axbench_kedro.datagen.prompts import DatagenPrompts
from axbench_kedro.datagen.schemas import check_counts, validate_table
from axbench_kedro.llm.client import apply_prices, resolve_client
from axbench_kedro.llm.ledger import zero_usage_frame
from axbench_kedro.lm.types import TargetModel

__all__ = ["ConceptTables", "generate_concept_tables"]

log = logging.getLogger(__name__)


class ConceptTables(NamedTuple):
    """What :func:`generate_concept_tables` returns (a tuple, in the order of the datagen node's outputs)."""

    concepts_meta: pd.DataFrame
    train_positives: pd.DataFrame
    latent_eval_data: pd.DataFrame
    llm_usage: pd.DataFrame
    generation_info: dict[str, Any]


def generate_concept_tables(
    concepts: pd.DataFrame,
    seed_instructions: pd.DataFrame,
    provided_train_data: pd.DataFrame | None,
    provided_latent_eval_data: pd.DataFrame | None,
    target_model: TargetModel,
    generator_llm: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    store: SQLiteCache | None,
    params: DatagenParams,
    seed: int,
) -> ConceptTables:
    """LLM-written rows per concept (§2.4.2, §2.5) for the tables that are not provided.

    Args:
        concepts: the concepts to generate for (``concepts_meta`` columns; empty genre lists = ask the LLM).
        seed_instructions: the seed instruction pools.
        provided_train_data: the released ``train_data`` (``None`` = generate the positives).
        provided_latent_eval_data: the released ``latent_eval_data`` (``None`` = generate it).
        target_model: its tokenizer truncates outputs to ``output_length`` tokens.
        generator_llm: the LLM client, or a lazy handle that builds it (only built when something is generated).
        llm_prices: the price table the usage is costed with.
        prompt_templates: the G1–G7 templates.
        store: the finished-concept store (resume).
        params: ``params:datagen``.
        seed: the run seed.

    Returns:
        ``concepts_meta`` (genres filled in), the ``train_data`` positives, ``latent_eval_data`` (the provided one
        unchanged), the stage's LLM usage and the generation record (prompt style, template hashes, generator,
        contrast-chain counts, provided tables).
    """
    want_train = provided_train_data is None
    want_latent = provided_latent_eval_data is None
    client = apply_prices(resolve_client(generator_llm), llm_prices) if want_train or want_latent else None
    since = client.totals() if client is not None else None
    results: list[ConceptResult] = []
    info: dict[str, Any] = {
        "prompt_style": params.prompt_style,
        "pool_prompt": params.pool_template or "F-prompt",
        "generated": {"train": want_train, "latent": want_latent},
        "provided": {
            "train_data": provided_record(provided_train_data),
            "latent_eval_data": provided_record(provided_latent_eval_data),
        },
    }
    if client is not None:
        prompts = DatagenPrompts(
            params.prompt_style,
            templates=prompt_templates,
            temperature=params.temperature,
            top_p=params.top_p,
            response_max_tokens=params.response_max_tokens,
        )
        generator = ConceptGenerator(
            client,
            prompts,
            InstructionPools(seed_instructions),
            target_model.tokenizer,
            params,
            seed,
            store,
            want_train=want_train,
            want_latent=want_latent,
            tokenizer_name=target_model.name,
        )
        results = generator.run(concept_jobs(concepts))
        info.update(
            generator_model=client.model,
            generator_backend=getattr(client, "backend_name", ""),
            temperature=params.temperature,
            top_p=params.top_p,
            templates=prompts.hashes,
            chain=_chain_counts(results),
        )
    meta = _concepts_meta(concepts, results)
    positives = rows_frame([row for r in results for row in r.train], "train_data")
    if provided_latent_eval_data is not None:
        latent = provided_latent_eval_data
    else:
        latent = _latent_table(results, params.latent_num_of_examples)
    usage = client.usage_frame("datagen", since=since) if client is not None else zero_usage_frame("datagen")
    return ConceptTables(meta, positives, latent, usage, info)


def _chain_counts(results: Sequence[ConceptResult]) -> dict[str, int]:
    """The contrast-chain statistics summed over all concepts (logged)."""
    chain: Counter[str] = Counter()
    for r in results:
        chain.update(r.stats)
    log.info(
        "datagen contrast chain: %d related words → %d other meanings → %d distinct pairs (hard negatives); "
        "%d empty outputs",
        chain["related_words"],
        chain["meanings_kept"],
        chain["contrast_pairs"],
        chain["empty_outputs"],
    )
    return dict(chain)


def _concepts_meta(concepts: pd.DataFrame, results: Sequence[ConceptResult]) -> pd.DataFrame:
    """``concepts_meta``: the concepts with the generated genres where none were known."""
    genres = {r.concept_id: r.genres for r in results}
    meta = concepts.copy()
    if "rule_id" not in meta.columns:  # a concept table written before rule concepts existed
        meta["rule_id"] = None
    meta["concept_genres"] = [
        list(genres.get(int(cid), [])) or list(g)
        for cid, g in zip(meta["concept_id"], meta["concept_genres"], strict=True)
    ]
    return validate_table(meta[CONCEPTS_META_COLUMNS].reset_index(drop=True), "concepts_meta")


def _latent_table(results: Sequence[ConceptResult], n: int) -> pd.DataFrame:
    """The generated ``latent_eval_data``, validated, with ``n`` positives and ``n`` negatives per concept."""
    latent = validate_table(
        rows_frame([row for r in results for row in r.latent], "latent_eval_data"), "latent_eval_data"
    )
    check_counts(latent, "latent_eval_data", {"positive": n, "negative": n})
    return latent
