"""The suppression report (protocol §7 item 5): suppression leaderboard (methods × settings), attack table and the
"suppression score vs n-shot" figure, written to this setting's versioned ``08_reporting/<setting>/report`` folder.

Added to the ``suppression`` pipeline with ``+ create_report_pipeline()``. The current setting's results come
through their own catalog entries; ``suppression_results`` adds the other settings' latest files for the
methods × settings leaderboard (``params:reporting.settings`` chooses which join, as in the ``reporting`` pipeline).
The logic lives in :mod:`axbench_kedro.reporting.suppression`.
"""

from __future__ import annotations

import pandas as pd
from kedro.pipeline import Pipeline, node, pipeline
from matplotlib.figure import Figure

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.reporting import suppression
from axbench_kedro.reporting.across_settings import stack_setting

__all__ = [
    "create_report_pipeline",
    "make_suppression_leaderboard",
    "make_suppression_report",
    "plot_attacks",
]


def make_suppression_leaderboard(
    suppression_selection: pd.DataFrame,
    suppression_summary: pd.DataFrame,
    suppression_results: dict[str, pd.DataFrame] | None,
    params: ReportingParams,
    run: RunSettings,
) -> pd.DataFrame:
    """Long suppression leaderboard: this setting stacked with the wanted other settings, bootstrap CIs, Avg rows.

    Args:
        suppression_selection, suppression_summary: this setting's results (catalog).
        suppression_results: every setting's latest suppression files (``{name: frame}`` plus ``sources``); this
            setting's copy there is ignored in favour of the catalog inputs.
        params: ``params:reporting`` (bootstrap, ``suppression_dataset``, ``settings``).
        run: ``params:run`` (setting name and seed).
    """
    others = suppression_results or {}
    selection = stack_setting(
        suppression_selection, others.get("suppression_selection"), run.setting, params.settings
    )
    summary = stack_setting(
        suppression_summary, others.get("suppression_summary"), run.setting, params.settings
    )
    return suppression.suppression_leaderboard(
        selection,
        summary,
        dataset_name=params.suppression_dataset,
        n_resamples=params.n_resamples,
        confidence=params.confidence,
        seed=run.seed,
        comparable_kinds=params.comparable_judge_kinds,
    )


def make_suppression_report(
    suppression_leaderboard: pd.DataFrame, attack_summary: pd.DataFrame, params: ReportingParams
) -> tuple[pd.DataFrame, str]:
    """The attack table (methods × attack settings) and the suppression report Markdown.

    Returns:
        ``(attack_table, markdown)``: leaderboard, attack table and a line naming the plot.
    """
    attacks = suppression.attack_table(attack_summary)
    markdown = suppression.suppression_markdown(
        suppression_leaderboard, attacks, confidence=params.confidence, n_resamples=params.n_resamples
    )
    return attacks, markdown


def plot_attacks(attack_summary: pd.DataFrame, run: RunSettings) -> Figure:
    """Suppression score vs n-shot of this setting (a "no rule concepts attacked" figure when empty)."""
    return suppression.attack_figure(attack_summary, run.setting)


def create_report_pipeline(**kwargs: object) -> Pipeline:
    """The suppression report nodes.

    Returns:
        A pipeline reading ``suppression_selection``, ``suppression_summary``, ``attack_summary``,
        ``suppression_results``, ``params:reporting`` and ``params:run``; writing ``suppression_leaderboard``,
        ``attack_table``, ``suppression_markdown`` and ``attack_plot``.
    """
    del kwargs
    return pipeline(
        [
            node(
                make_suppression_leaderboard,
                inputs=[
                    "suppression_selection",
                    "suppression_summary",
                    "suppression_results",
                    "params:reporting",
                    "params:run",
                ],
                outputs="suppression_leaderboard",
                name="make_suppression_leaderboard",
            ),
            node(
                make_suppression_report,
                inputs=["suppression_leaderboard", "attack_summary", "params:reporting"],
                outputs=["attack_table", "suppression_markdown"],
                name="make_suppression_report",
            ),
            node(
                plot_attacks,
                inputs=["attack_summary", "params:run"],
                outputs="attack_plot",
                name="plot_attacks",
            ),
        ]
    )
