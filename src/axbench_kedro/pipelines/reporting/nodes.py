"""Nodes of the ``reporting`` pipeline: frames in, tables / Markdown / figures out (protocol §7).

The current setting's results arrive through the versioned catalog entries (so ``--load-versions`` pins them);
``results_across_settings`` adds every other setting's latest results. ``combine_settings`` stacks both with a
``setting`` column and everything downstream works on those stacked frames.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.datasets.results_across_settings import SOURCES_KEY
from axbench_kedro.reporting import leaderboard as lb
from axbench_kedro.reporting import plots, run_card, tables

__all__ = [
    "collect_run_provenance",
    "combine_settings",
    "format_leaderboard",
    "make_detection_tables",
    "make_leaderboard",
    "make_run_card",
    "make_steering_tables",
    "plot_auroc_vs_score",
    "plot_components",
    "plot_mean_roc",
    "plot_score_vs_factor",
    "plot_selected_factors",
]


def _stack(
    current: pd.DataFrame, others: pd.DataFrame | None, setting: str, keep: list[str] | None
) -> pd.DataFrame:
    parts = [current.assign(setting=setting)]
    if others is not None and not others.empty:
        names = others["setting"].astype(str)
        wanted = names.map(lambda s: s != setting and _wanted(s, keep))
        parts.append(others[wanted.to_numpy(dtype=bool)])
    return pd.concat(parts, ignore_index=True)


def _wanted(setting: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(setting, p) for p in patterns)


def combine_settings(
    steering_selection: pd.DataFrame,
    steering_summary: pd.DataFrame,
    latent_metrics: pd.DataFrame,
    results_across_settings: dict[str, pd.DataFrame],
    params: ReportingParams,
    run: RunSettings,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stack this setting's results with the other settings' (each frame gains a ``setting`` column).

    Args:
        steering_selection, steering_summary, latent_metrics: this environment's results (catalog).
        results_across_settings: ``{name: frame}`` of the other settings plus ``sources``.
        params: ``params:reporting`` (``settings`` chooses which other settings join).
        run: ``params:run`` (names the current setting).

    Returns:
        ``(selection, summary, latent_metrics, sources)`` across settings; ``sources`` lists the other settings'
        files used.
    """
    others = results_across_settings or {}
    keep = params.settings
    sources = others.get(SOURCES_KEY, pd.DataFrame(columns=["setting", "dataset", "version", "filepath"]))
    if not sources.empty:
        used = [str(s) != run.setting and _wanted(str(s), keep) for s in sources["setting"]]
        sources = sources[used].reset_index(drop=True)
    return (
        _stack(steering_selection, others.get("steering_selection"), run.setting, keep),
        _stack(steering_summary, others.get("steering_summary"), run.setting, keep),
        _stack(latent_metrics, others.get("latent_metrics"), run.setting, keep),
        sources,
    )


def make_leaderboard(
    selection: pd.DataFrame, summary: pd.DataFrame, params: ReportingParams, run: RunSettings
) -> pd.DataFrame:
    """Long leaderboard (§1.16): Overall Score and bootstrap CI per method and setting, plus Avg rows."""
    return lb.build_leaderboard(
        lb.concept_scores(selection, params.steering_dataset),
        lb.judge_labels(summary),
        n_resamples=params.n_resamples,
        confidence=params.confidence,
        seed=run.seed,
        comparable_kinds=params.comparable_judge_kinds,
    )


def format_leaderboard(leaderboard: pd.DataFrame, params: ReportingParams) -> tuple[pd.DataFrame, str]:
    """Wide leaderboard (CSV: methods × settings + Avg) and its Markdown rendering."""
    markdown = lb.leaderboard_markdown(
        leaderboard, confidence=params.confidence, n_resamples=params.n_resamples
    )
    return lb.leaderboard_wide(leaderboard), markdown


def make_detection_tables(latent_metrics: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Detection table per method and setting (balanced and 1:100 metrics) and its Markdown rendering."""
    table = tables.detection_table(latent_metrics)
    return table, tables.detection_markdown(table)


def make_steering_tables(
    selection: pd.DataFrame,
    judgements: pd.DataFrame,
    datagen_llm_usage: pd.DataFrame,
    latent_eval_llm_usage: pd.DataFrame,
    steering_llm_usage: pd.DataFrame,
    params: ReportingParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """Components at the selected factor, win rates, judge health, the LLM ledger and their Markdown.

    Returns:
        ``(steering_components, win_rates, judge_health, llm_usage, markdown)``.
    """
    components = tables.steering_components(selection, params.steering_dataset)
    rates = tables.win_rates(selection, params.winrate_opponents, params.steering_dataset)
    health = tables.judge_health(judgements)
    usage = tables.llm_usage(datagen_llm_usage, latent_eval_llm_usage, steering_llm_usage)
    return components, rates, health, usage, tables.steering_markdown(components, rates, health, usage)


def plot_mean_roc(latent_scores: pd.DataFrame, params: ReportingParams, run: RunSettings) -> Figure:
    """Mean ROC curve per method of this setting."""
    return plots.mean_roc_figure(plots.mean_roc_curves(latent_scores, params.roc_grid_points), run.setting)


def plot_score_vs_factor(
    steering_scores: pd.DataFrame, steering_selection: pd.DataFrame, params: ReportingParams, run: RunSettings
) -> Figure:
    """Score vs factor (log x) per method of this setting, selection and test splits with bootstrap bands."""
    curves = plots.score_vs_factor(
        steering_scores,
        params.steering_dataset,
        factor_free=plots.factor_free_methods(steering_selection),
        n_resamples=params.n_resamples,
        confidence=params.confidence,
        seed=run.seed,
    )
    return plots.score_vs_factor_figure(curves, run.setting)


def plot_components(steering_selection: pd.DataFrame, params: ReportingParams, run: RunSettings) -> Figure:
    """Concept / instruction / fluency at the selected factor, per method of this setting."""
    return plots.components_figure(steering_selection, params.steering_dataset, run.setting)


def plot_selected_factors(
    steering_selection: pd.DataFrame, params: ReportingParams, run: RunSettings
) -> Figure:
    """Distribution of the selected factor per method of this setting."""
    return plots.selected_factor_figure(steering_selection, params.steering_dataset, run.setting)


def plot_auroc_vs_score(leaderboard: pd.DataFrame, detection_table: pd.DataFrame) -> Figure:
    """Detection ROC AUC vs Overall Score, every method and setting."""
    return plots.auroc_vs_score_figure(leaderboard, detection_table)


def collect_run_provenance() -> dict[str, Any]:
    """Package versions, git commit, Python and platform of the code producing the report."""
    return run_card.collect_provenance()


def make_run_card(
    run: RunSettings,
    params: ReportingParams,
    provenance: dict[str, Any],
    concepts_meta: pd.DataFrame,
    judgements: pd.DataFrame,
    llm_usage: pd.DataFrame,
    sources: pd.DataFrame,
    leaderboard: pd.DataFrame,
) -> str:
    """The run card (§1.17) as Markdown."""
    return run_card.render_run_card(
        setting=run.setting,
        layer=run.layer,
        seed=run.seed,
        model=params.model,
        generator=params.generator,
        judge=params.judge,
        provenance=provenance,
        concepts_meta=concepts_meta,
        judgements=judgements,
        usage=llm_usage,
        sources=sources,
        methods=leaderboard["method"].unique().tolist() if not leaderboard.empty else [],
        max_listed_concepts=params.max_listed_concepts,
    )
