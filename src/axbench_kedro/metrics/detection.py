"""Concept-detection metrics (protocol §4): ROC AUC, Youden and F1-optimal thresholds, the 1:100 imbalanced set.

Scores are the per-row ``max_act`` of one method for one concept. They are min–max normalised over all of the
concept's rows (hard negatives included; constant scores → 0). ROC AUC uses positives vs ordinary negatives only;
the Youden threshold is the first maximum of tpr − fpr on those rows; the F1-optimal threshold comes from the
precision–recall curve on those rows and is then applied to every row with hard negatives counted as negatives.
Predictions use ``score ≥ threshold``.

Example (protocol §10.10):
    >>> m = concept_metrics([0.9, 0.4, 0.5, 0.1, 0.95], ["positive", "positive", "negative", "negative",
    ...                      "hard negative"])
    >>> m["roc_auc"], m["hardneg_macro_acc"], round(m["f1"], 3), m["macro_acc"]
    (0.75, 0.25, 0.667, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import auc, precision_recall_curve, roc_curve

from axbench_kedro.datagen.schemas import unknown_categories
from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "POSITIVE",
    "NEGATIVE",
    "HARD_NEGATIVE",
    "minmax_normalise",
    "youden_threshold",
    "f1_threshold",
    "roc_auc",
    "concept_metrics",
    "imbalanced_metrics",
    "mean_roc_curve",
    "METRIC_COLUMNS",
]

POSITIVE, NEGATIVE, HARD_NEGATIVE = "positive", "negative", "hard negative"

METRIC_COLUMNS = (
    "roc_auc",
    "youden_threshold",
    "positive_acc_youden",
    "hard_negative_acc_youden",
    "hardneg_macro_acc",
    "pr_threshold",
    "precision",
    "recall",
    "f1",
    "overall_accuracy",
    "positive_acc",
    "negative_acc",
    "hard_negative_acc",
    "macro_acc",
    "max_act",
    "min_act",
    "n_positive",
    "n_negative",
    "n_hard_negative",
)


def minmax_normalise(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``(s − min)/(max − min)``; NaN (constant or empty scores) → 0."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s
    lo, hi = np.nanmin(s), np.nanmax(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s - lo) / (hi - lo)
    return np.nan_to_num(out, nan=0.0)


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def roc_auc(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float:
    """Area under scikit-learn's ``roc_curve`` (NaN unless both classes are present)."""
    y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    return float(auc(fpr, tpr))


def youden_threshold(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float:
    """Threshold of the first maximum of tpr − fpr (may be ``inf``; NaN without both classes)."""
    y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
    if not _both_classes(y):
        return float("nan")
    fpr, tpr, thresholds = roc_curve(y, s)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def f1_threshold(y: Sequence[int] | np.ndarray, s: Sequence[float] | np.ndarray) -> float:
    """Threshold of the maximum F1 on the precision–recall curve (F1 = 0 where P + R = 0)."""
    y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
    if not y.size or int(y.sum()) == 0:
        return float("nan")
    precision, recall, thresholds = precision_recall_curve(y, s)
    p, r = precision[:-1], recall[:-1]
    denom = p + r
    f1 = np.divide(2 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])


def _binary_scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    tp = float(np.sum(y_pred & y_true))
    fp = float(np.sum(y_pred & ~y_true))
    fn = float(np.sum(~y_pred & y_true))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _mean_or_none(mask: np.ndarray, correct: np.ndarray) -> float | None:
    return float(correct[mask].mean()) if mask.any() else None


def concept_metrics(scores: Sequence[float] | np.ndarray, categories: Sequence[str]) -> dict[str, Any]:
    """Every §1.15 detection metric of one concept and method (except the imbalanced ones).

    Args:
        scores: raw ``max_act`` per row.
        categories: ``positive`` / ``negative`` / ``hard negative`` per row.

    Returns:
        A dict with :data:`METRIC_COLUMNS`; metrics that are undefined (no hard negatives, infinite Youden
        threshold, a missing class) are ``None``.

    Raises:
        AxbenchDataError: a category outside the three above (with each value's row count), or scores and
            categories of different lengths; no row is ever dropped.
    """
    raw = np.asarray(scores, dtype=np.float64)
    cats = np.asarray(categories, dtype=object)
    problem = unknown_categories(cats, (POSITIVE, NEGATIVE, HARD_NEGATIVE))
    if problem:  # never drop or relabel rows silently [D 30]
        raise AxbenchDataError(f"latent_scores: column 'category': {problem}")
    if raw.shape != cats.shape:
        raise AxbenchDataError(f"latent_scores: {raw.size} scores for {cats.size} categories")
    norm = minmax_normalise(raw)
    is_pos, is_neg, is_hard = cats == POSITIVE, cats == NEGATIVE, cats == HARD_NEGATIVE
    ordinary = is_pos | is_neg
    y_ord, s_ord = is_pos[ordinary].astype(int), norm[ordinary]
    out: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
    out.update(
        n_positive=int(is_pos.sum()),
        n_negative=int(is_neg.sum()),
        n_hard_negative=int(is_hard.sum()),
        max_act=float(raw.max()) if raw.size else None,
        min_act=float(raw.min()) if raw.size else None,
    )
    if not _both_classes(y_ord):
        return out
    out["roc_auc"] = roc_auc(y_ord, s_ord)

    tau_j = youden_threshold(y_ord, s_ord)
    if np.isfinite(tau_j):
        pred = norm >= tau_j
        out["youden_threshold"] = tau_j
        out["positive_acc_youden"] = _mean_or_none(is_pos, pred)
        out["hard_negative_acc_youden"] = _mean_or_none(is_hard, ~pred)
        if out["hard_negative_acc_youden"] is not None:
            out["hardneg_macro_acc"] = (out["positive_acc_youden"] + out["hard_negative_acc_youden"]) / 2

    tau_f = f1_threshold(y_ord, s_ord)
    pred = norm >= tau_f
    correct = pred == is_pos
    precision, recall, f1 = _binary_scores(is_pos, pred)
    per_cat = {
        "positive_acc": _mean_or_none(is_pos, correct),
        "negative_acc": _mean_or_none(is_neg, correct),
        "hard_negative_acc": _mean_or_none(is_hard, correct),
    }
    present = [v for v in per_cat.values() if v is not None]
    out.update(
        pr_threshold=tau_f,
        precision=precision,
        recall=recall,
        f1=f1,
        overall_accuracy=float(correct.mean()),
        macro_acc=float(np.mean(present)) if present else None,
        **per_cat,
    )
    return out


def imbalanced_metrics(
    positive_scores: Sequence[float] | np.ndarray, negative_scores: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """1:100 metrics of one concept: its positives against the shared negative pool (protocol §4.5).

    Returns:
        ``f1_imb``, ``precision_imb``, ``recall_imb`` (at the F1-optimal threshold) and ``auroc_imb``.
    """
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    empty = {"f1_imb": None, "precision_imb": None, "recall_imb": None, "auroc_imb": None}
    if not pos.size or not neg.size:
        return empty
    y = np.r_[np.ones(pos.size, dtype=bool), np.zeros(neg.size, dtype=bool)]
    s = minmax_normalise(np.r_[pos, neg])
    tau = f1_threshold(y.astype(int), s)
    precision, recall, f1 = _binary_scores(y, s >= tau)
    return {
        "f1_imb": f1,
        "precision_imb": precision,
        "recall_imb": recall,
        "auroc_imb": roc_auc(y.astype(int), s),
    }


def mean_roc_curve(
    curves: Sequence[tuple[Sequence[int], Sequence[float]]], grid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean TPR over concepts on a common FPR grid (each concept: labels and normalised scores).

    Returns:
        ``(fpr_grid, mean_tpr)``; concepts lacking a class are left out (all-NaN TPR if none is usable).
    """
    grid = np.linspace(0.0, 1.0, 101) if grid is None else np.asarray(grid, dtype=np.float64)
    tprs = []
    for y, s in curves:
        y_arr = np.asarray(y)
        if not _both_classes(y_arr):
            continue
        fpr, tpr, _ = roc_curve(y_arr, np.asarray(s, dtype=np.float64))
        interp = np.interp(grid, fpr, tpr)
        interp[0] = 0.0
        tprs.append(interp)
    if not tprs:
        return grid, np.full_like(grid, np.nan)
    mean = np.mean(tprs, axis=0)
    mean[-1] = 1.0
    return grid, mean
