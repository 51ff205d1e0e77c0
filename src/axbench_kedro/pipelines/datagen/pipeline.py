"""Wiring of the ``datagen`` pipeline (protocol §2); the work is in ``nodes.py``."""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from axbench_kedro.pipelines.datagen import nodes

__all__ = ["create_pipeline"]


def create_pipeline(**kwargs: object) -> Pipeline:
    """concept list + seed instructions → concepts_meta, train_data, latent_eval_data, preference_data."""
    return pipeline(
        [
            node(
                nodes.select_datagen_concepts,
                inputs=[
                    "concept_list",
                    "provided_train_data",
                    "provided_latent_eval_data",
                    "params:datagen",
                    "params:run",
                ],
                outputs="datagen_concepts",
                name="select_datagen_concepts",
            ),
            node(
                nodes.generate_negative_pool,
                inputs=[
                    "seed_instructions",
                    "provided_train_data",
                    "target_model",
                    "prompt_templates",
                    "datagen_cache",
                    "params:datagen",
                    "params:run",
                ],
                outputs="datagen_negative_pool",
                name="generate_negative_pool",
            ),
            node(
                nodes.generate_concept_data,
                inputs=[
                    "datagen_concepts",
                    "seed_instructions",
                    "provided_train_data",
                    "provided_latent_eval_data",
                    "target_model",
                    "generator_llm",
                    "llm_prices",
                    "prompt_templates",
                    "datagen_cache",
                    "params:datagen",
                    "params:run",
                ],
                outputs=[
                    "concepts_meta",
                    "datagen_train_positives",
                    "latent_eval_data",
                    "datagen_llm_usage",
                    "datagen_generation_info",
                ],
                name="generate_concept_data",
            ),
            node(
                nodes.assemble_train_data,
                inputs=[
                    "datagen_negative_pool",
                    "datagen_train_positives",
                    "provided_train_data",
                    "params:datagen",
                ],
                outputs="train_data",
                name="assemble_train_data",
            ),
            node(
                nodes.generate_preference_data,
                inputs=["train_data", "target_model", "prompt_templates", "datagen_cache", "params:datagen"],
                outputs="preference_data",
                name="generate_preference_data",
            ),
            node(
                nodes.summarise_datagen,
                inputs=[
                    "train_data",
                    "latent_eval_data",
                    "preference_data",
                    "datagen_llm_usage",
                    "datagen_generation_info",
                    "params:datagen",
                    "params:run",
                ],
                outputs="datagen_manifest",
                name="summarise_datagen",
            ),
        ]
    )
