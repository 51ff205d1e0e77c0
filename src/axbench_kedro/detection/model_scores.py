"""Detection scores of the ``activation``, ``text`` and ``gradient`` methods on every latent-eval row and on the negative pool.

Every ``activation`` method (rank-1 encoders, SAE latents, …) is scored in one truncated forward pass over the
rows (:func:`axbench_kedro.methods.scoring.score_rows`); pool rows are scored against every concept in the same
pass. ``text`` methods (BoW) score the formatted texts directly. The result is content-keyed (model, layer, data,
pool, method fingerprints, parameters), so an unchanged rerun reads it from the cache.

Example:
    >>> scores, imbalance = cached_model_scores(data, pool, arts, tm, layer=9, params=params, cache=store)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.cache import content_key
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.detection.inputs import LATENT_COLUMNS
from axbench_kedro.detection.rows import (
    concat_pool_scores,
    concat_scores,
    per_text_rows,
    per_token_rows,
    pool_rows,
)
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.chat import format_detect
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.scoring import EncoderBank, score_rows

__all__ = ["check_layers", "latent_scores_key", "score_model_outputs", "cached_model_scores"]

log = logging.getLogger(__name__)


def check_layers(artifacts: Mapping[str, MethodArtifact], layer: int) -> None:
    """Raise unless every artefact that records its layer was trained at ``layer``.

    Raises:
        AxbenchConfigError: names ``run.layer`` and the artefact.
    """
    for name, art in artifacts.items():
        if art.meta.get("layer") is not None and int(art.meta["layer"]) != layer:
            raise AxbenchConfigError(
                f"run.layer: {layer} differs from the layer {art.meta['layer']} method_artifacts[{name}] was "
                "trained at"
            )


def _frame_hash(frame: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    return content_key(pd.util.hash_pandas_object(frame[cols], index=True).tolist())


def latent_scores_key(
    data: pd.DataFrame,
    pool: pd.DataFrame,
    artifacts: Mapping[str, MethodArtifact],
    tm: TargetModel,
    layer: int,
    params: LatentEvalParams,
) -> str:
    """Content key of the scores of ``artifacts`` on ``data`` and ``pool`` (changes with anything they depend on)."""
    return content_key(
        {
            "what": "latent_scores/v1",
            "model": [tm.name, str(tm.dtype), tm.device.type],
            "layer": layer,
            "data": _frame_hash(data, list(LATENT_COLUMNS)),
            "pool": pool["source_row_id"].tolist(),
            "methods": {n: a.fingerprint() for n, a in artifacts.items()},
            "params": params.model_dump(mode="json", exclude={"prompt_detection", "exclude_methods"}),
        }
    )


def score_model_outputs(
    data: pd.DataFrame,
    pool: pd.DataFrame,
    artifacts: Mapping[str, MethodArtifact],
    tm: TargetModel,
    layer: int,
    params: LatentEvalParams,
    *,
    pool_concepts: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score ``data`` and ``pool`` with every ``activation`` and ``text`` method of ``artifacts``.

    Args:
        data: checked ``latent_eval_data``.
        pool: ``imbalance_negatives`` (``neg_row_id``, ``source_row_id`` into ``data``).
        artifacts: the trained artefacts to score (other detection kinds are ignored).
        tm: the target model.
        layer: block whose output the encoders read.
        params: batch size, maximum length, token activations.
        pool_concepts: the concepts pool rows are scored against (default: those of ``data``; a shard of the
            rows passes the whole run's).

    Returns:
        ``(scores, imbalance_scores)``: §1.7 long rows and ``neg_row_id, concept_id, method, max_act``.
    """
    tok = tm.tokenizer
    texts = [format_detect(tok, i, o) for i, o in zip(data["input"], data["output"], strict=True)]
    concept_ids = data["concept_id"].astype(int).tolist()
    pool_sources = pool["source_row_id"].astype(int).tolist()
    all_concepts = sorted(set(concept_ids) if pool_concepts is None else {int(c) for c in pool_concepts})
    frames, pool_frames = [], []

    rank1 = {n: a for n, a in artifacts.items() if get_method(n).detection_kind == "activation"}
    if rank1:
        bank = EncoderBank.from_artifacts(rank1)
        res = score_rows(
            tm, texts, concept_ids, bank, layer, params.batch_size,
            full_rows=pool_sources, keep_token_acts=params.keep_token_acts, max_length=params.max_length,
        )  # fmt: skip
        for j, name in enumerate(bank.methods):
            frames.append(
                per_token_rows(
                    data,
                    concept_ids,
                    name,
                    res.max_act[:, j],
                    res.max_idx[:, j],
                    [t[j] for t in res.max_token],
                    acts=None if res.acts is None else [a[:, j] for a in res.acts],
                    tokens=res.tokens,
                )
            )
            if pool_sources:
                cols = bank.columns_for(all_concepts).numpy()[:, j]
                full = np.stack([res.full[src][cols] for src in pool_sources])
                pool_frames.append(pool_rows(full, pool, all_concepts, name))

    for name, art in artifacts.items():
        method = get_method(name)
        if method.detection_kind == "text":
            score = method.score_texts
        elif method.detection_kind == "gradient":
            score = partial(method.score_model_texts, tm=tm, layer=layer, max_length=params.max_length)
        else:
            continue
        own = score(art, texts, art.rows_of(concept_ids))
        frames.append(per_text_rows(data, name, own))
        if pool_sources:
            full = score(art, [texts[r] for r in pool_sources])[:, art.rows_of(all_concepts).numpy()]
            pool_frames.append(pool_rows(full, pool, all_concepts, name))

    return concat_scores(frames), concat_pool_scores(pool_frames)


def cached_model_scores(
    data: pd.DataFrame,
    pool: pd.DataFrame,
    artifacts: Mapping[str, MethodArtifact],
    tm: TargetModel,
    *,
    layer: int,
    params: LatentEvalParams,
    cache: Any | None,
    score_fn: Callable[..., tuple[pd.DataFrame, pd.DataFrame]] = score_model_outputs,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`score_model_outputs`, read from / written to ``cache`` under :func:`latent_scores_key`.

    Args:
        cache: a store with ``get_frames(key)`` / ``put_frames(key, frames)``, or ``None`` (no caching).
        score_fn: computes what the cache lacks (signature and results of :func:`score_model_outputs`; the
            Dask path passes its sharded equivalent).

    Raises:
        AxbenchConfigError: an artefact trained at another layer.
    """
    check_layers(artifacts, layer)
    key = latent_scores_key(data, pool, artifacts, tm, layer, params)
    if cache is not None and (hit := cache.get_frames(key)) is not None:
        log.info("latent_eval: scores of %s reused from the cache", list(artifacts))
        return hit["scores"], hit["imbalance"]
    scores, imbalance = score_fn(data, pool, artifacts, tm, layer, params)
    if cache is not None:
        cache.put_frames(key, {"scores": scores, "imbalance": imbalance})
    return scores, imbalance
