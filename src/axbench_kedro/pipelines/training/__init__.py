"""``training``: train every configured method on the binarized training data (protocol §3)."""

from axbench_kedro.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
