"""The ``reporting`` pipeline: leaderboard, detection and steering tables, plots and the run card."""

from axbench_kedro.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
