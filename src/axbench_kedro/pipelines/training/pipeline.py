"""Wiring of the ``training`` pipeline (protocol §3); the work is in ``nodes.py``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.training import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """train_data + concepts_meta + preference_data + target model (+ optional SAE, released dictionaries) →
    method_artifacts, training_summary."""
    return pipeline(
        [
            node(
                nodes.train_all_methods,
                inputs=[
                    "train_data",
                    "concepts_meta",
                    "preference_data",
                    "target_model",
                    "sae_params",
                    "released_dictionaries",
                    "training_cache",
                    "params:run",
                    "params:training",
                    "params:scaling",
                ],
                outputs=["method_artifacts", "training_summary"],
                name="train_methods",
            ),
        ]
    )
