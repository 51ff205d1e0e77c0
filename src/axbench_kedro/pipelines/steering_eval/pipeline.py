"""Wiring of the ``steering_eval`` pipeline (protocol §5); the logic lives in ``nodes.py``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.steering_eval import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """Prompts → steered generations → judgements → scores → factor selection → summary."""
    del kwargs
    return pipeline(
        [
            node(
                nodes.write_prompt_steering_texts,
                inputs=[
                    "concepts_meta",
                    "generator_llm",
                    "llm_prices",
                    "prompt_templates",
                    "params:steering_eval",
                ],
                outputs=["prompt_steering_texts", "steering_prompt_llm_usage"],
                name="write_prompt_steering_texts",
            ),
            node(
                nodes.build_steering_prompts,
                inputs=[
                    "concepts_meta",
                    "steering_instructions",
                    "prompt_steering_texts",
                    "target_model",
                    "params:steering_eval",
                ],
                outputs="steering_prompts",
                name="build_steering_prompts",
            ),
            node(
                nodes.generate_steering,
                inputs=[
                    "steering_prompts",
                    "method_artifacts",
                    "max_activations",
                    "target_model",
                    "generation_cache",
                    "params:steering_eval",
                    "params:run",
                    "params:scaling",
                ],
                outputs="steering_generations",
                name="generate_steering",
            ),
            node(
                nodes.judge_steering,
                inputs=[
                    "steering_generations",
                    "steering_prompts",
                    "judge_llm",
                    "llm_prices",
                    "prompt_templates",
                    "target_model",
                    "params:steering_eval",
                    "params:run",
                ],
                outputs=["judgements", "steering_judge_llm_usage"],
                name="judge_steering",
            ),
            node(
                nodes.score_steering,
                inputs=["judgements", "steering_generations", "params:steering_eval"],
                outputs="steering_scores",
                name="score_steering",
            ),
            node(
                nodes.select_steering_factors,
                inputs="steering_scores",
                outputs="steering_selection",
                name="select_steering_factors",
            ),
            node(
                nodes.summarize_steering,
                inputs=[
                    "steering_selection",
                    "judgements",
                    "max_activations",
                    "params:steering_eval",
                    "params:run",
                ],
                outputs="steering_summary",
                name="summarize_steering",
            ),
            node(
                nodes.collect_llm_usage,
                inputs=["steering_prompt_llm_usage", "steering_judge_llm_usage"],
                outputs="steering_llm_usage",
                name="collect_steering_llm_usage",
            ),
        ]
    )
