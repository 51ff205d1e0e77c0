"""The mean ROC figure of ``latent_eval`` (positives vs negatives, interpolated on a common FPR grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.metrics.detection import NEGATIVE, POSITIVE, mean_roc_curve, minmax_normalise

__all__ = ["latent_roc_figure"]


def latent_roc_figure(latent_scores: pd.DataFrame, grid_points: int) -> Figure:
    """Mean ROC curve per method (area in the legend); methods without a curve are left out.

    Args:
        latent_scores: §1.7 rows.
        grid_points: points of the common false-positive-rate grid.
    """
    grid = np.linspace(0.0, 1.0, grid_points)
    fig = Figure(figsize=(5.5, 5.0), dpi=120)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    for method, group in latent_scores.groupby("method", sort=False):
        curves = []
        for _, g in group.groupby("concept_id"):
            keep = g["category"].isin([POSITIVE, NEGATIVE]).to_numpy()
            norm = minmax_normalise(g["max_act"].to_numpy())
            curves.append(((g["category"] == POSITIVE).to_numpy()[keep].astype(int), norm[keep]))
        fpr, tpr = mean_roc_curve(curves, grid)
        if np.isnan(tpr).all():
            continue
        area = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{method} (area {area:.3f})")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Concept detection: mean ROC over concepts")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    return fig
