"""Nodes of the ``reporting`` pipeline: frames in, tables / Markdown / figures out (protocol §7).

The current setting's results arrive through the versioned catalog entries (so ``--load-versions`` pins them);
``results_across_settings`` adds every other setting's latest results. ``combine_settings`` stacks both with a
``setting`` column and everything downstream works on those stacked frames. The logic lives in
:mod:`axbench_kedro.reporting`; the nodes adapt catalog data and parameters to it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.reporting import leaderboard as lb
from axbench_kedro.reporting import plots, run_card, suppression, tables
from axbench_kedro.reporting.across_settings import stack_settings
from axbench_kedro.reporting.magnitudes import magnitude_rows

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
    return stack_settings(
        steering_selection,
        steering_summary,
        latent_metrics,
        results_across_settings,
        run.setting,
        params.settings,
    )


def make_leaderboard(
    selection: pd.DataFrame, summary: pd.DataFrame, params: ReportingParams, run: RunSettings
) -> pd.DataFrame:
    """Long leaderboard (§1.16): Overall Score and bootstrap CI per method and setting, plus Avg rows (and each
    subset method's baseline on its concepts, e.g. SAE on SAE (filtered)'s kept concepts, §3.15)."""
    scores, labels = lb.with_subset_baselines(
        lb.concept_scores(selection, params.steering_dataset), lb.judge_labels(summary)
    )
    return lb.build_leaderboard(
        scores,
        labels,
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
    """Detection table per method and setting (balanced and 1:100 metrics) and its Markdown rendering (methods whose
    detection repeats another's, e.g. SAE (filtered), are left out)."""
    table = tables.detection_table(tables.reported_detection_rows(latent_metrics))
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
    """Mean ROC curve per method of this setting (the methods of the detection table)."""
    rows = tables.reported_detection_rows(latent_scores)
    return plots.mean_roc_figure(plots.mean_roc_curves(rows, params.roc_grid_points), run.setting)


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
    prompt_steering_texts: pd.DataFrame | None = None,
    latent_eval_llm_usage: pd.DataFrame | None = None,
    suppression_results: dict[str, pd.DataFrame] | None = None,
    training_summary: pd.DataFrame | None = None,
) -> str:
    """The run card (§1.17) as Markdown.

    ``prompt_steering_texts`` gives the P1 call's token cap (labelled when set) and the replies cut at it [D 31];
    ``leaderboard`` the methods and, per SAE method and setting, where its magnitudes came from [D 13];
    ``latent_eval_llm_usage`` PromptDetection's rater and its 1:100 opt-in [D 32]; ``suppression_results`` (every
    setting's suppression files, filtered here to this setting) the "Suppression" section (§7 item 5);
    ``training_summary`` the files (with SHA-256) that methods read their rows from (§3.16).
    """
    sup_selection, sup_summary, attacks, sup_sources = suppression.setting_results(
        suppression_results, run.setting
    )
    board = suppression.suppression_leaderboard(
        sup_selection,
        sup_summary,
        dataset_name=params.suppression_dataset,
        n_resamples=params.n_resamples,
        confidence=params.confidence,
        seed=run.seed,
        comparable_kinds=params.comparable_judge_kinds,
    )
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
        prompt_steering_texts=prompt_steering_texts,
        magnitudes=magnitude_rows(leaderboard),
        detection_usage=latent_eval_llm_usage,
        suppression_board=board,
        suppression_attacks=suppression.attack_table(attacks),
        suppression_sources=sup_sources,
        training_summary=training_summary,
    )
