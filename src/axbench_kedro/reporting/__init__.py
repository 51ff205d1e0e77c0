"""Report building blocks (protocol §7): leaderboard, tables, plots, run card; used by the ``reporting`` pipeline
and by ``notebooks/analysis.ipynb``."""

from axbench_kedro.reporting.leaderboard import (
    AVG,
    build_leaderboard,
    concept_scores,
    judge_labels,
    leaderboard_markdown,
    leaderboard_wide,
)

__all__ = [
    "AVG",
    "build_leaderboard",
    "concept_scores",
    "judge_labels",
    "leaderboard_markdown",
    "leaderboard_wide",
]
