"""``datagen``: concept metadata, training, detection-evaluation and preference data (protocol §2)."""

from axbench_kedro.pipelines.datagen.pipeline import create_pipeline

__all__ = ["create_pipeline"]
