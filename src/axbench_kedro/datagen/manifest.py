"""The datagen manifest: what a datagen run produced, with which settings and at what LLM cost.

Example:
    >>> manifest = datagen_manifest(train, latent, preference, usage, info, params, run)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from axbench_kedro.cache import content_key
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.datagen import DatagenParams

__all__ = ["provided_record", "category_counts", "datagen_manifest"]

log = logging.getLogger(__name__)


def provided_record(frame: pd.DataFrame | None) -> dict[str, Any] | None:
    """What the manifest keeps of a provided table: its size and a content hash.

    Args:
        frame: the provided table, or ``None`` when the table was generated.

    Returns:
        ``{"rows", "concepts", "sha256"}``, or ``None`` for a generated table.
    """
    if frame is None:
        return None
    return {
        "rows": len(frame),
        "concepts": int(frame.loc[frame["concept_id"] >= 0, "concept_id"].nunique()),
        "sha256": content_key(pd.util.hash_pandas_object(frame.astype(str), index=False).tolist()),
    }


def category_counts(column: pd.Series) -> dict[str, int]:
    """``{value: count}`` of a column, sorted by value, with JSON-safe keys and counts."""
    return {str(k): int(v) for k, v in column.value_counts().sort_index().items()}


def datagen_manifest(
    train_data: pd.DataFrame,
    latent_eval_data: pd.DataFrame,
    preference_data: pd.DataFrame,
    llm_usage: pd.DataFrame,
    generation_info: dict[str, Any],
    params: DatagenParams,
    run: RunSettings,
) -> dict[str, Any]:
    """The run's datagen manifest; logs one summary line (rows per category, LLM calls and cost).

    Args:
        train_data: ``train_data`` (pool rows have ``concept_id`` −1 and count as ``pool``).
        latent_eval_data: ``latent_eval_data``.
        preference_data: ``preference_data``.
        llm_usage: ``datagen_llm_usage`` (its first row is recorded).
        generation_info: the generation record of the generating node (merged in at the top level).
        params: ``params:datagen`` (recorded in full).
        run: ``params:run`` (setting and seed).
    """
    kind = train_data["category"].where(train_data["concept_id"] >= 0, "pool")
    usage = llm_usage.iloc[0].to_dict() if len(llm_usage) else {}
    usage = {k: (v.item() if hasattr(v, "item") else v) for k, v in usage.items()}
    manifest = {
        "setting": run.setting,
        "seed": run.seed,
        "concepts": int(train_data.loc[train_data["concept_id"] >= 0, "concept_id"].nunique()),
        "rows": {
            "train_data": category_counts(kind),
            "latent_eval_data": category_counts(latent_eval_data["category"]),
            "preference_data": len(preference_data),
        },
        "llm_usage": usage,
        "params": params.model_dump(),
        **generation_info,
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
