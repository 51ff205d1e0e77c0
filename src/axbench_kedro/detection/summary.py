"""Per-concept detection metrics (protocol §1.15) and the steering magnitude table (§1.9, §3.0, [D 12], [D 13])."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.datagen.schemas import unknown_categories
from axbench_kedro.detection.rows import method_order
from axbench_kedro.detection.sae_max_act import SAEMaxActTable
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

__all__ = [
    "FEATURE_META_KEY",
    "IMB_MISSING",
    "IMB_NO_POOL",
    "IMB_OPT_IN",
    "IMB_SCORED",
    "MAGNITUDE_FALLBACK",
    "MAGNITUDE_COLUMNS",
    "latent_metrics_frame",
    "magnitude_table",
    "rated_by_llm",
]

log = logging.getLogger(__name__)

MAGNITUDE_FALLBACK = 50.0
MAGNITUDE_COLUMNS = ["concept_id", "method", "max_act", "magnitude_base", "source", "source_ref"]
IMB_SCORED, IMB_OPT_IN, IMB_NO_POOL, IMB_MISSING = "scored", "opt-in", "no negatives", "not scored"
"""``latent_metrics.imb_status`` values: why a method's 1:100 metrics are present or null [D 32]."""
FEATURE_META_KEY = "sae_ids"  # a ``sae_table`` artefact's feature per concept (row order = ``concept_ids``)


def latent_metrics_frame(
    latent_scores: pd.DataFrame, imbalance_scores: pd.DataFrame, n_pool: int, *, llm_imbalance: bool = False
) -> pd.DataFrame:
    """One row per concept and method: balanced metrics, the 1:100 metrics and the achieved ratio.

    ``n_parse_failures`` counts, for LLM-rated methods (PromptDetection), the concept's rows whose rating could not
    be used (−1: unparsable, non-finite or out of range [D 29]); 0 for the other methods. ``imb_status`` says why
    the 1:100 metrics are there or null: ``scored``, ``opt-in`` (an LLM-rated method while
    ``prompt_detection_imbalance`` is off [D 32]), ``no negatives`` (empty pool) or ``not scored``.

    Args:
        latent_scores: §1.7 rows.
        imbalance_scores: ``neg_row_id, concept_id, method, max_act`` of the negative pool.
        n_pool: number of rows of the negative pool.
        llm_imbalance: whether LLM-rated methods were opted in to the 1:100 set.

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
    llm_rated = {m: rated_by_llm(m) for m in latent_scores["method"].unique()}
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
            rec["imb_status"] = IMB_SCORED
        else:
            rec.update({"f1_imb": None, "precision_imb": None, "recall_imb": None, "auroc_imb": None,
                        "imbalance_ratio": None})  # fmt: skip
            rec["imb_status"] = _unscored_status(llm_rated[method], llm_imbalance, n_pool)
        rows.append(rec)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    text_cols = ("concept_id", "method", "imb_status")
    float_cols = [c for c in out.columns if c not in text_cols and not c.startswith("n_")]
    out[float_cols] = out[float_cols].astype("float64")
    return out.sort_values(["method", "concept_id"], key=method_order(latent_scores)).reset_index(drop=True)


def _unscored_status(llm_rated: bool, llm_imbalance: bool, n_pool: int) -> str:
    """Why a method has no 1:100 scores: PromptDetection not opted in [D 32], an empty pool, or neither."""
    if llm_rated and not llm_imbalance:
        return IMB_OPT_IN
    return IMB_NO_POOL if not n_pool else IMB_MISSING


def rated_by_llm(method: str) -> bool:
    """Whether ``method`` detects through LLM ratings (an unregistered name counts as not)."""
    try:
        return get_method(method).detection_kind == "llm"
    except AxbenchConfigError:
        return False


def magnitude_table(
    latent_scores: pd.DataFrame,
    method_artifacts: Mapping[str, MethodArtifact],
    sae_max_act: SAEMaxActTable | None = None,
) -> pd.DataFrame:
    """Per concept and steering method the magnitude base m (``MAGNITUDE_COLUMNS``, protocol §1.9, §3.0).

    * ``latent_eval`` methods: max of ``max_act`` over all of the concept's latent-eval rows (positives, negatives,
      hard negatives), ≤ 0 → 50; ``source`` = ``latent_eval``.
    * ``sae_table`` methods (SAE, SAE-A) with a table: the ``max_act`` of the feature the artefact uses for the
      concept (meta ``sae_ids``: SAE's ``concepts_meta.sae_id``, SAE-A's chosen feature); ``source`` =
      ``sae_table``. A table value ≤ 0 gets the same ≤ 0 → 50 rule (logged). A feature missing from the table is
      an error [D 12].
    * ``sae_table`` methods without a table: the latent-eval rule, ``source`` = ``latent_eval``, with a warning
      [D 13]; reports label them "<method> (AxBench max-act)".
    * ``unit`` methods: m = 1. Factor-free methods have no magnitude.
    * an artefact that fixes its own magnitudes (:meth:`~axbench_kedro.methods.base.Method.artifact_magnitudes`,
      e.g. a released dictionary with ``magnitude_source: released``): those ``max_act`` values, ≤ 0 → 50.

    ``source_ref`` says where a ``sae_table`` method's m came from: the table (file, SHA-256, rows) or why there was
    none; ``""`` for the other methods.

    Raises:
        AxbenchDataError: a ``sae_table`` artefact without ``sae_ids``, or features missing from the table.
    """
    table = sae_max_act if sae_max_act is not None else SAEMaxActTable(None)
    rows: list[dict[str, Any]] = []
    for name, art in method_artifacts.items():
        method = get_method(name)
        if not method.steers or method.factor_free or not art.ok:
            continue
        fixed = method.artifact_magnitudes(art)
        if fixed is not None:
            rows += [{**r, "method": name, "magnitude_base": _base(float(r["max_act"]))} for r in fixed]
            continue
        if method.magnitude_source == "unit":
            rows += [{"concept_id": c, "method": name, "max_act": float("nan"), "magnitude_base": 1.0,
                      "source": "unit", "source_ref": ""} for c in art.concept_ids]  # fmt: skip
            continue
        if method.magnitude_source == "sae_table" and table.available:
            rows += _table_rows(name, art, table)
            continue
        ref = ""
        if method.magnitude_source == "sae_table":
            ref = table.missing_reason
            log.warning(
                "%s: %s; steering magnitudes follow the latent-eval rule (max over latent-eval rows, <= 0 -> 50) "
                "and the method is labelled '%s (AxBench max-act)' [D 13]",
                name,
                table.missing_reason,
                name,
            )
        per = latent_scores[latent_scores["method"] == name].groupby("concept_id")["max_act"].max()
        for cid, value in per.items():
            rows.append({"concept_id": int(cid), "method": name, "max_act": float(value),
                         "magnitude_base": _base(float(value)), "source": "latent_eval",
                         "source_ref": ref})  # fmt: skip
    out = pd.DataFrame(rows, columns=MAGNITUDE_COLUMNS)
    return out.astype({"concept_id": "int64", "max_act": "float64", "magnitude_base": "float64"})


def _base(value: float) -> float:
    """The ≤ 0 → 50 rule of §3.0 (a NaN maximum, e.g. no finite score, also gets 50)."""
    return value if value > 0 else MAGNITUDE_FALLBACK


def _table_rows(name: str, art: MethodArtifact, table: SAEMaxActTable) -> list[dict[str, Any]]:
    """One row per concept of a ``sae_table`` artefact: m = the table's ``max_act`` of the concept's feature."""
    features = art.meta.get(FEATURE_META_KEY)
    if features is None or len(features) != len(art.concept_ids):
        raise AxbenchDataError(
            f"method_artifacts[{name}]: meta {FEATURE_META_KEY!r} must list one SAE feature per concept "
            f"(have {features!r} for {len(art.concept_ids)} concepts)"
        )
    rows, missing, non_positive = [], [], []
    for cid, feature in zip(art.concept_ids, features, strict=True):
        value = table.value(int(feature))
        if value is None:
            missing.append(f"concept_id {cid} -> feature {int(feature)}")
            continue
        if value <= 0:
            non_positive.append(int(feature))
        rows.append({"concept_id": int(cid), "method": name, "max_act": value, "magnitude_base": _base(value),
                     "source": "sae_table", "source_ref": table.describe()})  # fmt: skip
    if missing:
        raise AxbenchDataError(
            f"sae_max_act: {table.path} has no max_act for method {name!r}: {', '.join(missing[:10])}"
            f"{' ...' if len(missing) > 10 else ''} ({len(missing)} concept(s); no fallback for a feature "
            "missing from a present table [D 12]: add its row or remove the table)"
        )
    if non_positive:
        log.warning(
            "%s: sae_max_act lists max_act <= 0 for feature(s) %s; those concepts steer with m = %g (the <= 0 rule)",
            name,
            non_positive[:10],
            MAGNITUDE_FALLBACK,
        )
    return rows
