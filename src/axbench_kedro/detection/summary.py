"""Per-concept detection metrics (protocol §1.15) and the steering magnitude table (§1.9)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.datagen.schemas import unknown_categories
from axbench_kedro.detection.rows import method_order
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.prompt import PARSE_FAILED
from axbench_kedro.methods.registry import get_method
from axbench_kedro.metrics.detection import (
    HARD_NEGATIVE,
    NEGATIVE,
    POSITIVE,
    concept_metrics,
    imbalanced_metrics,
)

__all__ = ["MAGNITUDE_FALLBACK", "MAGNITUDE_COLUMNS", "latent_metrics_frame", "magnitude_table"]

MAGNITUDE_FALLBACK = 50.0
MAGNITUDE_COLUMNS = ["concept_id", "method", "max_act", "magnitude_base", "source"]


def latent_metrics_frame(
    latent_scores: pd.DataFrame, imbalance_scores: pd.DataFrame, n_pool: int
) -> pd.DataFrame:
    """One row per concept and method: balanced metrics, the 1:100 metrics and the achieved ratio.

    ``n_parse_failures`` counts, for LLM-rated methods (PromptDetection), the concept's rows whose rating could not
    be used (−1: unparsable, non-finite or out of range [D 29]); 0 for the other methods.

    Args:
        latent_scores: §1.7 rows.
        imbalance_scores: ``neg_row_id, concept_id, method, max_act`` of the negative pool.
        n_pool: number of rows of the negative pool.

    Raises:
        AxbenchDataError: a ``category`` outside positive / negative / hard negative (each value with its row
            count) [D 30].
    """
    problem = unknown_categories(latent_scores["category"], (POSITIVE, NEGATIVE, HARD_NEGATIVE))
    if problem:  # rows are never dropped silently [D 30]
        raise AxbenchDataError(f"latent_scores: column 'category': {problem}")
    rows = []
    imb_groups = (
        {k: g for k, g in imbalance_scores.groupby(["method", "concept_id"])} if len(imbalance_scores) else {}
    )
    llm_rated = {m: _rated_by_llm(m) for m in latent_scores["method"].unique()}
    for (method, cid), group in latent_scores.groupby(["method", "concept_id"], sort=False):
        rec: dict[str, Any] = {"concept_id": int(cid), "method": method}
        rec.update(concept_metrics(group["max_act"].to_numpy(), group["category"].tolist()))
        # PromptDetection: unparsable, non-finite or out-of-range ratings all score -1 [D 29]
        rec["n_parse_failures"] = int((group["max_act"] == PARSE_FAILED).sum()) if llm_rated[method] else 0
        pos = group.loc[group["category"] == POSITIVE, "max_act"].to_numpy()
        neg = imb_groups.get((method, cid))
        if neg is not None:
            rec.update(imbalanced_metrics(pos, neg["max_act"].to_numpy()))
            rec["imbalance_ratio"] = n_pool / max(len(pos), 1)
        else:
            rec.update({"f1_imb": None, "precision_imb": None, "recall_imb": None, "auroc_imb": None,
                        "imbalance_ratio": None})  # fmt: skip
        rows.append(rec)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    float_cols = [c for c in out.columns if c not in ("concept_id", "method") and not c.startswith("n_")]
    out[float_cols] = out[float_cols].astype("float64")
    return out.sort_values(["method", "concept_id"], key=method_order(latent_scores)).reset_index(drop=True)


def _rated_by_llm(method: str) -> bool:
    """Whether ``method`` detects through LLM ratings (an unregistered name counts as not)."""
    try:
        return get_method(method).detection_kind == "llm"
    except AxbenchConfigError:
        return False


def magnitude_table(
    latent_scores: pd.DataFrame, method_artifacts: Mapping[str, MethodArtifact]
) -> pd.DataFrame:
    """Per concept and steering method the magnitude base m (``MAGNITUDE_COLUMNS``).

    ``latent_eval`` and ``sae_table`` methods: max of ``max_act`` over all of the concept's rows, ≤ 0 → 50 (the
    SAE's Neuronpedia table, when the steering pipeline has one, takes precedence there: [D 13]). ``unit``
    methods: m = 1. Factor-free methods have no magnitude.
    """
    rows = []
    for name, art in method_artifacts.items():
        method = get_method(name)
        if not method.steers or method.factor_free or not art.ok:
            continue
        if method.magnitude_source == "unit":
            rows += [{"concept_id": c, "method": name, "max_act": float("nan"), "magnitude_base": 1.0,
                      "source": "unit"} for c in art.concept_ids]  # fmt: skip
            continue
        per = latent_scores[latent_scores["method"] == name].groupby("concept_id")["max_act"].max()
        for cid, value in per.items():
            base = float(value) if value > 0 else MAGNITUDE_FALLBACK
            rows.append({"concept_id": int(cid), "method": name, "max_act": float(value), "magnitude_base": base,
                         "source": "latent_eval"})  # fmt: skip
    out = pd.DataFrame(rows, columns=MAGNITUDE_COLUMNS)
    return out.astype({"concept_id": "int64", "max_act": "float64", "magnitude_base": "float64"})
