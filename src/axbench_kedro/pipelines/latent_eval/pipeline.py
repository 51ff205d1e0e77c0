"""Wiring of the ``latent_eval`` pipeline (protocol §4); the work is in ``nodes.py``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.latent_eval import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """latent_eval_data + method_artifacts → latent_scores, latent_metrics, max_activations, ROC plot."""
    return pipeline(
        [
            node(
                nodes.sample_imbalance_negatives,
                inputs=["latent_eval_data", "params:run", "params:latent_eval"],
                outputs="imbalance_negatives",
                name="sample_imbalance_negatives",
            ),
            node(
                nodes.score_model_methods,
                inputs=[
                    "latent_eval_data",
                    "imbalance_negatives",
                    "method_artifacts",
                    "target_model",
                    "latent_cache",
                    "params:run",
                    "params:latent_eval",
                    "params:scaling",
                ],
                outputs=["latent_model_scores", "imbalance_scores"],
                name="score_model_methods",
            ),
            node(
                nodes.score_prompt_detection,
                inputs=[
                    "latent_eval_data",
                    "imbalance_negatives",
                    "concepts_meta",
                    "method_artifacts",
                    "detection_rater_llm",
                    "llm_prices",
                    "prompt_templates",
                    "params:latent_eval",
                ],
                outputs=["latent_prompt_scores", "imbalance_prompt_scores", "latent_eval_llm_usage"],
                name="score_prompt_detection",
            ),
            node(
                nodes.merge_latent_scores,
                inputs=["latent_model_scores", "latent_prompt_scores"],
                outputs="latent_scores",
                name="merge_latent_scores",
            ),
            node(
                nodes.compute_latent_metrics,
                inputs=[
                    "latent_scores",
                    "imbalance_scores",
                    "imbalance_prompt_scores",
                    "imbalance_negatives",
                    "params:latent_eval",
                ],
                outputs="latent_metrics",
                name="compute_latent_metrics",
            ),
            node(
                nodes.compute_max_activations,
                inputs=["latent_scores", "method_artifacts", "sae_max_act"],
                outputs="max_activations",
                name="compute_max_activations",
            ),
            node(
                nodes.plot_latent_roc,
                inputs=["latent_scores", "params:latent_eval"],
                outputs="latent_roc_plot",
                name="plot_latent_roc",
            ),
        ]
    )
