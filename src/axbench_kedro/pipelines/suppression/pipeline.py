"""Wiring of the ``suppression`` pipeline (protocol §6); judging, the summary and the ledger reuse the
``steering_eval`` nodes with ``params:suppression.steering``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.steering_eval import nodes as steering
from axbench_kedro.pipelines.suppression import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """Suppression texts → prompts → suppressed generations → judgements → scores + selection → summary."""
    del kwargs
    return pipeline(
        [
            node(
                nodes.write_suppression_texts,
                inputs=[
                    "concepts_meta",
                    "steering_instructions",
                    "generator_llm",
                    "llm_prices",
                    "prompt_templates",
                    "params:suppression.concepts",
                    "params:suppression.texts",
                    "params:suppression.steering",
                ],
                outputs=["suppression_texts", "suppression_texts_llm_usage"],
                name="write_suppression_texts",
            ),
            node(
                nodes.build_suppression_prompts,
                inputs=[
                    "concepts_meta",
                    "steering_instructions",
                    "suppression_texts",
                    "target_model",
                    "params:suppression.concepts",
                    "params:suppression.steering",
                ],
                outputs="suppression_prompts",
                name="build_suppression_prompts",
            ),
            node(
                nodes.generate_suppression,
                inputs=[
                    "suppression_prompts",
                    "method_artifacts",
                    "max_activations",
                    "target_model",
                    "generation_cache",
                    "params:suppression.steering",
                    "params:run",
                ],
                outputs="suppression_generations",
                name="generate_suppression",
            ),
            node(
                steering.judge_steering,
                inputs=[
                    "suppression_generations",
                    "suppression_prompts",
                    "judge_llm",
                    "llm_prices",
                    "prompt_templates",
                    "target_model",
                    "params:suppression.steering",
                    "params:run",
                ],
                outputs=["suppression_judgements", "suppression_judge_llm_usage"],
                name="judge_suppression",
            ),
            node(
                nodes.score_suppression,
                inputs=["suppression_judgements", "suppression_generations", "params:suppression.steering"],
                outputs=["suppression_scores", "suppression_selection"],
                name="score_suppression",
            ),
            node(
                steering.summarize_steering,
                inputs=[
                    "suppression_selection",
                    "suppression_judgements",
                    "max_activations",
                    "params:suppression.steering",
                    "params:run",
                ],
                outputs="suppression_summary",
                name="summarize_suppression",
            ),
            node(
                steering.collect_llm_usage,
                inputs=["suppression_texts_llm_usage", "suppression_judge_llm_usage"],
                outputs="suppression_llm_usage",
                name="collect_suppression_llm_usage",
            ),
        ]
    )
