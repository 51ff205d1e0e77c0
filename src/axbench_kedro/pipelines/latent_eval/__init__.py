"""``latent_eval``: concept-detection evaluation of every trained method (protocol §4)."""

from axbench_kedro.pipelines.latent_eval.pipeline import create_pipeline

__all__ = ["create_pipeline"]
