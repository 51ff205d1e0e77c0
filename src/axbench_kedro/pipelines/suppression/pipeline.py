"""Wiring of the ``suppression`` pipeline (protocol §6); the summary reuses the ``steering_eval`` node with
``params:suppression.steering``; judging reuses the steering judges (rule judge for rule concepts)."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.steering_eval import nodes as steering
from axbench_kedro.pipelines.suppression import nodes
from axbench_kedro.pipelines.suppression.report import create_report_pipeline

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """Suppression texts → prompts → suppressed generations → judgements → scores + selection → summary; then the
    attacks on rule concepts at the selected factors: R4 examples → attack prompts → generations → judgements →
    attack scores + summary."""
    del kwargs
    return (
        pipeline(
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
                        "params:scaling",
                    ],
                    outputs="suppression_generations",
                    name="generate_suppression",
                ),
                node(
                    nodes.judge_suppression,
                    inputs=[
                        "suppression_generations",
                        "suppression_prompts",
                        "concepts_meta",
                        "judge_llm",
                        "llm_prices",
                        "prompt_templates",
                        "target_model",
                        "params:suppression.steering",
                        "params:suppression.rule_judge",
                        "params:run",
                    ],
                    outputs=["suppression_judgements", "suppression_judge_llm_usage"],
                    name="judge_suppression",
                ),
                node(
                    nodes.score_suppression,
                    inputs=[
                        "suppression_judgements",
                        "suppression_generations",
                        "params:suppression.steering",
                    ],
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
                    nodes.write_multishot_examples,
                    inputs=[
                        "concepts_meta",
                        "suppression_prompts",
                        "generator_llm",
                        "llm_prices",
                        "prompt_templates",
                        "params:suppression.attacks",
                        "params:run",
                    ],
                    outputs=["multishot_examples", "suppression_multishot_llm_usage"],
                    name="write_multishot_examples",
                ),
                node(
                    nodes.build_attack_prompts,
                    inputs=[
                        "suppression_prompts",
                        "suppression_selection",
                        "multishot_examples",
                        "concepts_meta",
                        "target_model",
                        "params:suppression.attacks",
                    ],
                    outputs="attack_prompts",
                    name="build_attack_prompts",
                ),
                node(
                    nodes.generate_attacks,
                    inputs=[
                        "attack_prompts",
                        "method_artifacts",
                        "max_activations",
                        "target_model",
                        "generation_cache",
                        "params:suppression.steering",
                        "params:run",
                        "params:scaling",
                    ],
                    outputs="attack_generations",
                    name="generate_attacks",
                ),
                node(
                    nodes.judge_attacks,
                    inputs=[
                        "attack_generations",
                        "attack_prompts",
                        "concepts_meta",
                        "judge_llm",
                        "llm_prices",
                        "prompt_templates",
                        "target_model",
                        "params:suppression.steering",
                        "params:suppression.rule_judge",
                        "params:run",
                    ],
                    outputs=["attack_judgements", "suppression_attack_judge_llm_usage"],
                    name="judge_attacks",
                ),
                node(
                    nodes.score_attacks,
                    inputs=[
                        "attack_judgements",
                        "suppression_scores",
                        "suppression_selection",
                        "concepts_meta",
                        "params:suppression.attacks",
                        "params:suppression.steering",
                        "params:run",
                    ],
                    outputs=["attack_scores", "attack_summary"],
                    name="score_attacks",
                ),
                node(
                    nodes.collect_suppression_llm_usage,
                    inputs=[
                        "suppression_texts_llm_usage",
                        "suppression_judge_llm_usage",
                        "suppression_multishot_llm_usage",
                        "suppression_attack_judge_llm_usage",
                    ],
                    outputs="suppression_llm_usage",
                    name="collect_suppression_llm_usage",
                ),
            ]
        )
        + create_report_pipeline()
    )
