"""Report figures (protocol §7), drawn on ``matplotlib.figure.Figure`` objects (no pyplot state, no GUI backend).

Every function takes protocol frames and returns a Figure; the catalog's ``matplotlib.MatplotlibDataset`` writes it
as PNG. Empty inputs give a figure that says so, never an error, so a partial run still reports.
Factor-free methods are recognised from the data (no factor grid), never by name; controls are labelled
``<name> (control)`` from their registered role.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.metrics.detection import NEGATIVE, POSITIVE, mean_roc_curve, minmax_normalise
from axbench_kedro.reporting.leaderboard import AVG, require_columns
from axbench_kedro.reporting.roles import method_label

__all__ = [
    "auroc_vs_score_figure",
    "components_figure",
    "factor_free_methods",
    "mean_roc_curves",
    "mean_roc_figure",
    "method_colors",
    "score_vs_factor",
    "score_vs_factor_figure",
    "selected_factor_figure",
]

_COMPONENTS = {"test_concept": "concept", "test_instruction": "instruction", "test_fluency": "fluency"}
_SPLITS = {"selection": "--", "test": "-"}


def method_colors(methods: Iterable[str]) -> dict[str, tuple[float, ...]]:
    """A colour per method, stable across figures: registered methods (built-ins first, so installing a plugin
    leaves their colours alone) then unknown ones (sorted) take ``tab10`` and then the light ``tab20`` shades in
    turn."""
    from matplotlib import colormaps

    from axbench_kedro.methods.registry import default_methods

    wanted = set(methods)
    known = default_methods()
    names = known + sorted(wanted - set(known))
    palette = list(colormaps["tab10"].colors) + list(colormaps["tab20"].colors[1::2])
    return {name: tuple(palette[i % len(palette)]) for i, name in enumerate(names) if name in wanted}


def _empty(title: str, message: str) -> Figure:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def _grid(n: int, width: float = 3.6, height: float = 3.0, max_cols: int = 4) -> tuple[Figure, list]:
    cols = min(max_cols, max(n, 1))
    rows = int(np.ceil(max(n, 1) / cols))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes[:n]


def _log_ticks(values: np.ndarray, max_ticks: int = 6) -> list[float]:
    """At most ``max_ticks`` of the sorted values, spread evenly on a log axis."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if ordered.size <= max_ticks:
        return ordered.tolist()
    picks = np.unique(np.round(np.linspace(0, ordered.size - 1, max_ticks)).astype(int))
    return ordered[picks].tolist()


# --- detection ---------------------------------------------------------------------------------------------------


def mean_roc_curves(latent_scores: pd.DataFrame, grid_points: int = 101) -> pd.DataFrame:
    """Mean ROC curve per method on a common FPR grid (protocol §4: hard negatives excluded).

    Per concept, the ROC curve of the min–max normalised ``max_act`` (positives vs negatives) is interpolated on
    ``grid_points`` FPR values in [0, 1] and averaged over concepts, with ``metrics.detection.mean_roc_curve`` (the
    computation behind ``latent_eval``'s own plot). Concepts lacking positives or negatives are skipped.

    Args:
        latent_scores: ``latent_scores`` rows (§1.7): ``concept_id, method, category, max_act``.
        grid_points: number of FPR grid points.

    Returns:
        ``method, fpr, tpr, n_concepts`` (``grid_points`` rows per method with at least one usable concept).
    """
    require_columns(latent_scores, ["concept_id", "method", "category", "max_act"], "latent_scores")
    grid = np.linspace(0.0, 1.0, grid_points)
    parts = []
    for method, rows in latent_scores.groupby("method", sort=True):
        curves = []
        for _, concept in rows.groupby("concept_id", sort=True):
            norm = minmax_normalise(pd.to_numeric(concept["max_act"], errors="coerce").fillna(0.0).to_numpy())
            keep = concept["category"].isin([POSITIVE, NEGATIVE]).to_numpy()
            labels = (concept["category"] == POSITIVE).to_numpy()[keep].astype(int)
            if labels.size and 0 < labels.sum() < labels.size:
                curves.append((labels, norm[keep]))
        if curves:
            fpr, tpr = mean_roc_curve(curves, grid)
            parts.append(pd.DataFrame({"method": method, "fpr": fpr, "tpr": tpr, "n_concepts": len(curves)}))
    if not parts:
        return pd.DataFrame(columns=["method", "fpr", "tpr", "n_concepts"])
    return pd.concat(parts, ignore_index=True)


def mean_roc_figure(curves: pd.DataFrame, setting: str = "") -> Figure:
    """Mean ROC curve per method (output of ``mean_roc_curves``), AUC of the mean curve in the legend."""
    title = f"Mean ROC per method{f' ({setting})' if setting else ''}"
    if curves.empty:
        return _empty(title, "no detection scores")
    colors = method_colors(curves["method"])
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for method, curve in curves.groupby("method", sort=True):
        auc = float(np.trapezoid(curve["tpr"], curve["fpr"]))
        label = f"{method_label(method)} (area {auc:.3f}, n={int(curve['n_concepts'].iloc[0])})"
        ax.plot(curve["fpr"], curve["tpr"], color=colors[method], label=label, linewidth=1.6)
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), title=title
    )
    ax.legend(loc="lower right", fontsize="small")
    return fig


# --- steering ----------------------------------------------------------------------------------------------------


def factor_free_methods(selection: pd.DataFrame) -> list[str]:
    """Methods without a strength knob: every ``best_factor`` of theirs is missing (``steering_selection``)."""
    require_columns(selection, ["method", "best_factor"], "steering_selection")
    factors = pd.to_numeric(selection["best_factor"], errors="coerce")
    return sorted(str(m) for m, f in factors.groupby(selection["method"]) if f.isna().all())


def score_vs_factor(
    steering_scores: pd.DataFrame,
    dataset_name: str | None = None,
    *,
    factor_free: Iterable[str] = (),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
) -> pd.DataFrame:
    """Mean Score (``lm_judge_rating``) over concepts per method, split and factor, with bootstrap CIs.

    Args:
        steering_scores: ``steering_scores`` rows (§1.13).
        dataset_name: keep only this ``dataset_name`` (``None`` keeps all).
        factor_free: methods without a factor grid (``factor_free_methods``): their rows are pooled per concept.
        n_resamples, confidence, seed: bootstrap over concepts.

    Returns:
        ``method, split, factor, mean, ci_low, ci_high, n_concepts``; factor-free methods get one row per split
        with ``factor`` NaN.
    """
    require_columns(
        steering_scores, ["concept_id", "method", "split", "factor", "lm_judge_rating"], "steering_scores"
    )
    frame = steering_scores
    if dataset_name is not None and "dataset_name" in frame.columns:
        frame = frame[frame["dataset_name"] == dataset_name]
    free = set(factor_free)
    frame = frame.assign(factor=pd.to_numeric(frame["factor"], errors="coerce"))
    frame.loc[frame["method"].isin(free), "factor"] = np.nan
    rows = []
    for (method, split, factor), group in frame.groupby(
        ["method", "split", "factor"], sort=True, dropna=False
    ):
        per_concept = group.groupby("concept_id")["lm_judge_rating"].mean().to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(per_concept, n_resamples=n_resamples, confidence=confidence, seed=seed)
        rows.append(
            {
                "method": method,
                "split": split,
                "factor": factor,
                "mean": float(np.nanmean(per_concept)) if per_concept.size else np.nan,
                "ci_low": low,
                "ci_high": high,
                "n_concepts": int(per_concept.size),
            }
        )
    return pd.DataFrame(
        rows, columns=["method", "split", "factor", "mean", "ci_low", "ci_high", "n_concepts"]
    )


def score_vs_factor_figure(curves: pd.DataFrame, setting: str = "") -> Figure:
    """One panel per method: Score vs factor (log x) on the selection (dashed) and test (solid) splits.

    Factor-free methods (``factor`` NaN) are drawn as horizontal lines at their mean Score.
    """
    title = f"Overall Score vs steering factor{f' ({setting})' if setting else ''}"
    if curves.empty:
        return _empty(title, "no steering scores")
    methods = sorted(curves["method"].unique())
    colors = method_colors(methods)
    fig, axes = _grid(len(methods))
    factors = curves["factor"].dropna()
    span = (
        (factors.min() / 1.3, factors.max() * 1.3) if not factors.empty and factors.min() > 0 else (0.1, 10.0)
    )
    grid_ticks = _log_ticks(factors[factors > 0].unique()) if not factors.empty else [0.1, 1.0, 10.0]
    for ax, method in zip(axes, methods, strict=True):
        rows = curves[curves["method"] == method]
        for split, style in _SPLITS.items():
            part = rows[rows["split"] == split].sort_values("factor")
            if part.empty:
                continue
            if part["factor"].isna().all():
                ax.axhline(
                    part["mean"].iloc[0], color=colors[method], linestyle=style, label=f"{split} (no factor)"
                )
                continue
            ax.plot(
                part["factor"],
                part["mean"],
                style,
                marker="o",
                markersize=3,
                color=colors[method],
                label=split,
            )
            ax.fill_between(part["factor"], part["ci_low"], part["ci_high"], color=colors[method], alpha=0.15)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(grid_ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlim=span, ylim=(0, 2), title=method_label(method), xlabel="factor", ylabel="Score (0–2)")
        ax.legend(fontsize="x-small", loc="upper right")
    fig.suptitle(title)
    return fig


def components_figure(selection: pd.DataFrame, dataset_name: str | None = None, setting: str = "") -> Figure:
    """Box plots of concept / instruction / fluency ratings at the selected factor (test split), per method."""
    title = f"Judge criteria at the selected factor{f' ({setting})' if setting else ''}"
    require_columns(selection, ["method", *_COMPONENTS], "steering_selection")
    if dataset_name is not None and "dataset_name" in selection.columns:
        selection = selection[selection["dataset_name"] == dataset_name]
    if selection.empty:
        return _empty(title, "no steering selection")
    order = selection.groupby("method")["test_hm"].mean().sort_values(ascending=False).index.tolist()
    colors = method_colors(order)
    fig = Figure(figsize=(max(7.0, 1.3 * len(order)), 7.5), layout="constrained")
    axes = fig.subplots(len(_COMPONENTS), 1, sharex=True)
    for ax, (column, label) in zip(axes, _COMPONENTS.items(), strict=True):
        data = [
            pd.to_numeric(selection.loc[selection["method"] == m, column], errors="coerce").dropna()
            for m in order
        ]
        boxes = ax.boxplot(data, patch_artist=True, widths=0.6, medianprops={"color": "black"})
        for patch, method in zip(boxes["boxes"], order, strict=True):
            patch.set_facecolor(colors[method])
            patch.set_alpha(0.6)
        ax.set(ylabel=label, ylim=(-0.05, 2.05))
    axes[-1].set_xticks(range(1, len(order) + 1), [method_label(m) for m in order], rotation=30, ha="right")
    fig.suptitle(title)
    return fig


def selected_factor_figure(
    selection: pd.DataFrame, dataset_name: str | None = None, setting: str = ""
) -> Figure:
    """How often each factor was selected (``best_factor``), per method; log y. Factor-free methods are left out."""
    title = f"Selected steering factor{f' ({setting})' if setting else ''}"
    require_columns(selection, ["method", "best_factor"], "steering_selection")
    if dataset_name is not None and "dataset_name" in selection.columns:
        selection = selection[selection["dataset_name"] == dataset_name]
    chosen = selection.assign(best_factor=pd.to_numeric(selection["best_factor"], errors="coerce")).dropna(
        subset=["best_factor"]
    )
    if chosen.empty:
        return _empty(title, "no method with a factor grid")
    counts = chosen.groupby(["best_factor", "method"]).size().unstack("method", fill_value=0).sort_index()
    methods = sorted(counts.columns)
    colors = method_colors(methods)
    fig = Figure(
        figsize=(max(7.0, 0.55 * len(counts) * max(1, len(methods)) ** 0.5), 4.5), layout="constrained"
    )
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    x = np.arange(len(counts))
    for i, method in enumerate(methods):
        ax.bar(
            x + (i - (len(methods) - 1) / 2) * width,
            counts[method],
            width,
            color=colors[method],
            label=method_label(method),
        )
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{f:g}" for f in counts.index])
    ax.set(xlabel="selected factor", ylabel="concepts (log)", title=title)
    ax.legend(fontsize="small", ncols=2)
    return fig


def auroc_vs_score_figure(leaderboard: pd.DataFrame, detection: pd.DataFrame) -> Figure:
    """Mean ROC AUC (x) against Overall Score (y), one point per method and setting.

    Methods that steer but have no detection score (factor-free baselines such as Prompt) are dashed horizontal
    lines at their Overall Score.

    Args:
        leaderboard: long leaderboard (``method, setting, overall``).
        detection: detection table (``method, setting, roc_auc``).
    """
    title = "Detection (ROC AUC) vs steering (Overall Score)"
    lead = leaderboard[leaderboard["setting"] != AVG][["method", "setting", "overall"]]
    det = (
        detection[detection["setting"] != AVG][["method", "setting", "roc_auc"]]
        if not detection.empty
        else None
    )
    merged = (
        lead.merge(det, on=["method", "setting"], how="left")
        if det is not None
        else lead.assign(roc_auc=np.nan)
    )
    if merged.empty:
        return _empty(title, "no steering results")
    colors = method_colors(merged["method"])
    markers = dict(zip(sorted(merged["setting"].unique()), "osD^v<>Pp*", strict=False))
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    points = merged.dropna(subset=["roc_auc"])
    for row in points.itertuples(index=False):
        ax.scatter(
            row.roc_auc, row.overall, color=colors[row.method], marker=markers.get(row.setting, "o"), s=45
        )
        ax.annotate(
            method_label(row.method),
            (row.roc_auc, row.overall),
            fontsize="x-small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    for row in merged[merged["roc_auc"].isna()].itertuples(index=False):
        ax.axhline(row.overall, color=colors[row.method], linestyle="--", linewidth=1)
        ax.annotate(
            f"{method_label(row.method)} ({row.setting})", (0.0, row.overall),
            xycoords=("axes fraction", "data"), fontsize="x-small", xytext=(3, 2), textcoords="offset points",
        )  # fmt: skip
    for setting, marker in markers.items():
        ax.scatter([], [], color="grey", marker=marker, label=setting)
    ax.set(
        xlabel="mean ROC AUC",
        ylabel="Overall Score (0–2)",
        title=title,
        ylim=(0, max(2.0, merged["overall"].max())),
    )
    if not points.empty:
        ax.set_xlim(min(0.4, points["roc_auc"].min() - 0.02), 1.02)
    ax.legend(fontsize="small", loc="upper left", title="setting")
    return fig
