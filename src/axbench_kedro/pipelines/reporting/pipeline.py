"""Wiring of the ``reporting`` pipeline (tables, plots and run card; protocol §7)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.reporting import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """Build the ``reporting`` pipeline.

    Returns:
        The pipeline; its outputs are the versioned ``08_reporting`` datasets of ``catalog_reporting.yml``.
    """
    return pipeline(
        [
            node(
                nodes.combine_settings,
                inputs=[
                    "steering_selection",
                    "steering_summary",
                    "latent_metrics",
                    "results_across_settings",
                    "params:reporting",
                    "params:run",
                ],
                outputs=[
                    "report_steering_selection",
                    "report_steering_summary",
                    "report_latent_metrics",
                    "report_sources",
                ],
                name="combine_settings",
            ),
            node(
                nodes.make_leaderboard,
                inputs=[
                    "report_steering_selection",
                    "report_steering_summary",
                    "params:reporting",
                    "params:run",
                ],
                outputs="leaderboard",
                name="make_leaderboard",
            ),
            node(
                nodes.format_leaderboard,
                inputs=["leaderboard", "params:reporting"],
                outputs=["leaderboard_table", "leaderboard_markdown"],
                name="format_leaderboard",
            ),
            node(
                nodes.make_detection_tables,
                inputs="report_latent_metrics",
                outputs=["detection_table", "detection_markdown"],
                name="make_detection_tables",
            ),
            node(
                nodes.make_steering_tables,
                inputs=[
                    "report_steering_selection",
                    "judgements",
                    "datagen_llm_usage",
                    "latent_eval_llm_usage",
                    "steering_llm_usage",
                    "params:reporting",
                ],
                outputs=[
                    "steering_components",
                    "win_rates",
                    "judge_health",
                    "llm_usage",
                    "steering_markdown",
                ],
                name="make_steering_tables",
            ),
            node(
                nodes.plot_mean_roc,
                inputs=["latent_scores", "params:reporting", "params:run"],
                outputs="mean_roc_plot",
                name="plot_mean_roc",
            ),
            node(
                nodes.plot_score_vs_factor,
                inputs=["steering_scores", "steering_selection", "params:reporting", "params:run"],
                outputs="score_vs_factor_plot",
                name="plot_score_vs_factor",
            ),
            node(
                nodes.plot_components,
                inputs=["steering_selection", "params:reporting", "params:run"],
                outputs="steering_components_plot",
                name="plot_components",
            ),
            node(
                nodes.plot_selected_factors,
                inputs=["steering_selection", "params:reporting", "params:run"],
                outputs="selected_factor_plot",
                name="plot_selected_factors",
            ),
            node(
                nodes.plot_auroc_vs_score,
                inputs=["leaderboard", "detection_table"],
                outputs="auroc_vs_score_plot",
                name="plot_auroc_vs_score",
            ),
            node(
                nodes.collect_run_provenance,
                inputs=None,
                outputs="run_provenance",
                name="collect_run_provenance",
            ),
            node(
                nodes.make_run_card,
                inputs=[
                    "params:run",
                    "params:reporting",
                    "run_provenance",
                    "concepts_meta",
                    "judgements",
                    "llm_usage",
                    "report_sources",
                    "leaderboard",
                    "prompt_steering_texts",
                    "latent_eval_llm_usage",
                    "suppression_results",
                    "training_summary",
                ],
                outputs="run_card",
                name="make_run_card",
            ),
        ],
    )
