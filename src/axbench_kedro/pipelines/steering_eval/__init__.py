"""``steering_eval``: steer every method, judge the generations, choose factors on held-out instructions.

Protocol §5: instructions per concept (selection / test split), steered generation across concepts in large
batches with a resumable generation cache, three judge criteria, harmonic mean, factor selection, Overall Score.
"""

from axbench_kedro.pipelines.steering_eval.pipeline import create_pipeline

__all__ = ["create_pipeline"]
