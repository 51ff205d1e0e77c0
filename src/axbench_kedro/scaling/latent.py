"""Latent scoring (the ``activation``, ``text`` and ``gradient`` methods) as shards on Dask workers, with the
sequential run's scores.

The sequential pass (:func:`~axbench_kedro.detection.model_scores.score_model_outputs`) sorts every row by token
length and cuts the order into batches; a row's numbers depend on the batch it is padded with. A shard is therefore
a contiguous run of those very batches (the rows of its concepts' batches, whichever concepts they mix): scored on
its own, the shard's rows sort and batch exactly as they did in the whole pass, so each worker does the sequential
run's arithmetic row for row. Pool rows (the 1:100 negatives) are scored, in the shard holding their source row,
against every concept of the run. The driver puts the shards' rows back in the sequential order; the result is
cached as one entry, as in-process.

Per worker process the target model is loaded once per ``ModelSpec`` (:mod:`axbench_kedro.scaling.worker`); the
artifacts reach each worker once per run (the executor's ``common``).

Example:
    >>> scores, imbalance = score_model_outputs_sharded(executor, data, pool, arts, tm, layer=9, params=params)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.detection.model_scores import score_model_outputs
from axbench_kedro.detection.rows import concat_pool_scores, concat_scores
from axbench_kedro.lm.chat import format_detect
from axbench_kedro.lm.types import ModelSpec, TargetModel
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.scaling.executor import ShardExecutor
from axbench_kedro.scaling.worker import worker_model

__all__ = [
    "LatentJob",
    "LatentShard",
    "plan_latent_shards",
    "score_latent_shard",
    "score_model_outputs_sharded",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatentJob:
    """What every shard of one scoring run shares (shipped to each worker once)."""

    spec: ModelSpec
    torch_threads: int | None
    artifacts: dict[str, MethodArtifact]
    layer: int
    params: LatentEvalParams
    pool_concepts: tuple[int, ...]


@dataclass(frozen=True)
class LatentShard:
    """Rows of ``latent_eval_data`` scored together.

    Attributes:
        rows: their positions in the run's data, ascending (= their ``row_id``).
        data: those rows (index reset).
        pool: the pool rows whose source is among them, ``source_row_id`` counted within ``data``.
    """

    rows: tuple[int, ...]
    data: pd.DataFrame
    pool: pd.DataFrame


def plan_latent_shards(
    data: pd.DataFrame, pool: pd.DataFrame, tm: TargetModel, params: LatentEvalParams, n_shards: int
) -> list[LatentShard]:
    """At most ``n_shards`` shards, each a contiguous run of the sequential pass's length-sorted batches.

    The order is the one :func:`axbench_kedro.methods.activations.iter_states` uses (longest first, ties by
    position), so a shard re-sorted on its own yields the same batches.
    """
    texts = [format_detect(tm.tokenizer, i, o) for i, o in zip(data["input"], data["output"], strict=True)]
    if not texts:
        return []
    ids = tm.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=params.max_length)
    lengths = [len(x) for x in ids["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    batches = [order[s : s + params.batch_size] for s in range(0, len(order), params.batch_size)]
    per_shard = math.ceil(len(batches) / max(1, min(n_shards, len(batches))))
    sources = pool["source_row_id"].astype(int).to_numpy()
    shards = []
    for start in range(0, len(batches), per_shard):
        rows = sorted(r for b in batches[start : start + per_shard] for r in b)
        local = {r: k for k, r in enumerate(rows)}
        sub_pool = pool[np.isin(sources, rows)].copy()
        sub_pool["source_row_id"] = [local[int(r)] for r in sub_pool["source_row_id"]]
        shards.append(
            LatentShard(tuple(rows), data.iloc[rows].reset_index(drop=True), sub_pool.reset_index(drop=True))
        )
    return shards


def score_latent_shard(job: LatentJob, shard: LatentShard) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score one shard on this process's copy of the target model (the Dask task); ``row_id`` is the run's."""
    return _score(worker_model(job.spec, job.torch_threads), job, shard)


def _score(tm: TargetModel, job: LatentJob, shard: LatentShard) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores, imbalance = score_model_outputs(
        shard.data, shard.pool, job.artifacts, tm, job.layer, job.params, pool_concepts=job.pool_concepts
    )
    scores["row_id"] = np.asarray(shard.rows, dtype=np.int64)[scores["row_id"].to_numpy()]
    return scores, imbalance


def _in_order(frame: pd.DataFrame, methods: Sequence[str], keys: Mapping[str, Any]) -> pd.DataFrame:
    """``frame`` sorted by method (``methods`` order) then ``keys`` (column → position map), stably."""
    rank = {m: i for i, m in enumerate(methods)}
    sort = pd.DataFrame({"_m": frame["method"].map(rank)}, index=frame.index)
    for col, pos in keys.items():
        sort[col] = frame[col].map(pos) if pos is not None else frame[col]
    order = np.lexsort([sort[c].to_numpy() for c in reversed(list(sort.columns))])
    return frame.iloc[order].reset_index(drop=True)


def score_model_outputs_sharded(
    executor: ShardExecutor,
    data: pd.DataFrame,
    pool: pd.DataFrame,
    artifacts: Mapping[str, MethodArtifact],
    tm: TargetModel,
    layer: int,
    params: LatentEvalParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~axbench_kedro.detection.model_scores.score_model_outputs` with the rows' batches spread over
    ``executor``'s workers; the same frames, row for row."""
    shards = plan_latent_shards(data, pool, tm, params, 4 * executor.n_workers)
    if not shards:
        return score_model_outputs(data, pool, artifacts, tm, layer, params)
    job = LatentJob(
        spec=tm.spec,
        torch_threads=torch.get_num_threads(),
        artifacts=dict(artifacts),
        layer=int(layer),
        params=params,
        pool_concepts=tuple(sorted({int(c) for c in data["concept_id"]})),
    )
    log.info("latent_eval: scoring %d rows as %d shard(s) on Dask", len(data), len(shards))
    if executor.distributed:
        parts = executor.map(score_latent_shard, shards, common=job)
    else:  # in this process, on the caller's model
        parts = executor.map(functools.partial(_score, tm, job), shards)
    methods = list(dict.fromkeys(m for s, _ in parts for m in s["method"]))
    scores = _in_order(pd.concat([s for s, _ in parts], ignore_index=True), methods, {"row_id": None})
    pool_pos = {int(n): i for i, n in enumerate(pool["neg_row_id"])}
    pooled = [p for _, p in parts if len(p)]  # a shard without pool rows has an untyped empty frame
    if not pooled:
        return concat_scores([scores]), concat_pool_scores([])
    imbalance = _in_order(
        pd.concat(pooled, ignore_index=True), methods, {"neg_row_id": pool_pos, "concept_id": None}
    )
    return concat_scores([scores]), concat_pool_scores([imbalance])
