"""Long-form detection score rows: ``latent_scores`` (protocol §1.7) and ``imbalance_scores``.

``max_act`` is rounded to 3 decimals everywhere, as in the released files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "SCORE_COLUMNS",
    "POOL_COLUMNS",
    "empty_scores",
    "per_text_rows",
    "per_token_rows",
    "pool_rows",
    "concat_scores",
    "concat_pool_scores",
    "merge_scores",
    "method_order",
]

SCORE_COLUMNS = ["concept_id", "row_id", "category", "method", "max_act", "max_act_idx", "max_token"]
POOL_COLUMNS = ["neg_row_id", "concept_id", "method", "max_act"]


def empty_scores() -> pd.DataFrame:
    """A ``latent_scores`` frame without rows (typed columns)."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SCORE_COLUMNS, [
        "int64", "int64", "object", "object", "float64", "int64", "object"], strict=True)})  # fmt: skip


def per_text_rows(data: pd.DataFrame, method: str, scores: np.ndarray) -> pd.DataFrame:
    """Rows of a method scored per text (no token positions): one score per row of ``data``."""
    return pd.DataFrame(
        {
            "concept_id": data["concept_id"].astype("int64").to_numpy(),
            "row_id": np.arange(len(data), dtype=np.int64),
            "category": data["category"].to_numpy(),
            "method": method,
            "max_act": np.round(scores, 3),
            "max_act_idx": -1,
            "max_token": "",
        }
    )


def per_token_rows(
    data: pd.DataFrame,
    concept_ids: list[int],
    method: str,
    max_act: np.ndarray,
    max_idx: np.ndarray,
    max_token: list[str],
    acts: list[np.ndarray] | None = None,
    tokens: list[Any] | None = None,
) -> pd.DataFrame:
    """Rows of a method scored per token: the maximum, its position and token (plus every token's score).

    Args:
        data: the scored rows (``category``).
        concept_ids: each row's concept.
        method: method name.
        max_act, max_idx, max_token: per row, the largest activation, its token position and the token.
        acts, tokens: per row, every token's activation and the tokens (kept when both are given).
    """
    frame = pd.DataFrame(
        {
            "concept_id": concept_ids,
            "row_id": np.arange(len(data), dtype=np.int64),
            "category": data["category"].to_numpy(),
            "method": method,
            "max_act": np.round(max_act, 3),
            "max_act_idx": max_idx,
            "max_token": max_token,
        }
    )
    if acts is not None and tokens is not None:
        frame["acts"] = [np.round(a, 3).tolist() for a in acts]
        frame["tokens"] = tokens
    return frame


def pool_rows(full: np.ndarray, pool: pd.DataFrame, concepts: list[int], method: str) -> pd.DataFrame:
    """Long ``neg_row_id, concept_id, method, max_act`` rows of a ``[n_pool, n_concepts]`` score matrix."""
    n_pool, n_concepts = full.shape
    return pd.DataFrame(
        {
            "neg_row_id": np.repeat(pool["neg_row_id"].to_numpy(dtype=np.int64), n_concepts),
            "concept_id": np.tile(np.asarray(concepts, dtype=np.int64), n_pool),
            "method": method,
            "max_act": np.round(full.reshape(-1), 3),
        }
    )


def concat_scores(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``latent_scores`` of several methods, typed (empty when there are none)."""
    scores = pd.concat(frames, ignore_index=True) if frames else empty_scores()
    return scores.astype(
        {"concept_id": "int64", "row_id": "int64", "max_act": "float64", "max_act_idx": "int64"}
    )


def concat_pool_scores(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``imbalance_scores`` of several methods, typed (empty when there are none)."""
    imbalance = (
        pd.concat(frames, ignore_index=True)[POOL_COLUMNS]
        if frames
        else pd.DataFrame({"neg_row_id": [], "concept_id": [], "method": [], "max_act": []})
    )
    return imbalance.astype({"neg_row_id": "int64", "concept_id": "int64", "max_act": "float64"})


def method_order(scores: pd.DataFrame) -> Any:
    """Sort key putting methods in their order of first appearance in ``scores`` (other columns unchanged)."""
    order = {m: i for i, m in enumerate(dict.fromkeys(scores["method"]))}
    return lambda s: s.map(order) if s.name == "method" else s


def merge_scores(*parts: pd.DataFrame) -> pd.DataFrame:
    """One ``latent_scores`` table from several, rows ordered by method (first appearance) then row id."""
    parts = tuple(f for f in parts if len(f))
    if not parts:
        return empty_scores()
    out = pd.concat(parts, ignore_index=True)
    out = out.sort_values(["method", "row_id"], key=method_order(out))
    return out.reset_index(drop=True)
