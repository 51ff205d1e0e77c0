"""``params:datagen``: the data-generation block (protocol §2, defaults §8).

The defaults are the paper's counts; the default (embedded) environment shrinks them in
``conf/base/parameters_datagen.yml``.

Example:
    >>> p = DatagenParams(max_concepts=4, num_of_examples=12, latent_num_of_examples=6, output_length=32)
    >>> p.train_positives, p.pool_per_genre, p.pool_tokens
    (6, 6, 48)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from axbench_kedro.config.common import StrictModel

__all__ = ["ConceptSource", "DatagenParams"]


class ConceptSource(StrictModel):
    """Which Neuronpedia source a Neuronpedia explanations export must come from (checked on load).

    Attributes:
        model_id: Neuronpedia model id, e.g. ``gemma-2-2b``.
        sae_set: Neuronpedia layer/SAE id, e.g. ``10-gemmascope-res-16k``.
    """

    model_id: str
    sae_set: str

    @property
    def path(self) -> str:
        """``{model_id}/{sae_set}``, the Neuronpedia source path."""
        return f"{self.model_id}/{self.sae_set}"


class DatagenParams(StrictModel):
    """Counts, LLM settings and caching of the datagen pipeline.

    Attributes:
        max_concepts: keep the first N concepts of the seeded shuffle (``None`` = every concept, file order).
        num_of_examples: N of §2.4; a concept gets N/2 positives and its genre's pool holds N/2 negatives.
        latent_num_of_examples: n of §2.5 (positives and negatives per concept).
        output_length: T, target-tokenizer tokens kept per LLM response.
        negative_genre_counts: math/code negatives per concept; ``None`` = ``int(0.15 n)`` each (protocol),
            text gets the rest.
        max_related_words: cap on the related words of a concept (G2), hence on its hard negatives.
        max_hard_negatives: further cap on the hard negatives per concept (``None`` = no further cap).
        prompt_style: ``chat`` (instruction-following generator) or ``base`` (completion-style few-shot
            templates for a base model).
        temperature: generator sampling temperature.
        top_p: generator nucleus mass (``None`` = backend default).
        response_max_tokens: cap on generated tokens of G5/G6/G7 replies (``None`` = backend default).
        pool_new_tokens: new tokens of the target model's pool and losing answers (``None`` = int(1.5 T)).
        pool_template: ``None`` = the target model answers pool and losing instructions through F-prompt
            (protocol §2.4.1); a template name (field ``{instruction}``) = it continues that template raw, cut at
            the next question — for base models, which echo a chat-formatted question instead of answering it.
        target_batch_size: batch size of the target model's greedy generation.
        concepts_per_chunk: concepts whose LLM calls are sent together (one progress step each).
        dataset_category: ``instruction`` (all paper runs).
        concept_source: if set, a Neuronpedia export must come from this source.

    Released files to use instead of generating are catalog entries (``provided_train_data``,
    ``provided_latent_eval_data`` in ``conf/base/catalog_datagen.yml``), not parameters.
    """

    max_concepts: int | None = Field(500, ge=1)
    num_of_examples: int = Field(144, ge=2)
    latent_num_of_examples: int = Field(36, ge=1)
    output_length: int = Field(128, ge=1)
    negative_genre_counts: dict[Literal["math", "code"], int] | None = None
    max_related_words: int = Field(10, ge=0)
    max_hard_negatives: int | None = Field(None, ge=0)
    prompt_style: Literal["chat", "base"] = "chat"
    temperature: float = Field(1.0, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    response_max_tokens: int | None = Field(None, ge=1)
    pool_new_tokens: int | None = Field(None, ge=1)
    pool_template: str | None = None
    target_batch_size: int = Field(8, ge=1)
    concepts_per_chunk: int = Field(16, ge=1)
    dataset_category: Literal["instruction"] = "instruction"
    concept_source: ConceptSource | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "provided" in data:
            raise ValueError(
                "datagen.provided moved to the catalog: set `provided.train_data` / `provided.latent_eval_data` "
                "in conf/<env>/globals.yml, or override the catalog entries provided_train_data / "
                "provided_latent_eval_data (see conf/base/catalog_datagen.yml)"
            )
        return data

    @model_validator(mode="after")
    def _check_counts(self) -> DatagenParams:
        if self.num_of_examples % 2:
            raise ValueError(f"num_of_examples must be even (N/2 positives), got {self.num_of_examples}")
        counts = self.latent_negative_counts
        if min(counts.values()) < 0:
            raise ValueError(
                f"negative_genre_counts leave {counts['text']} text negatives for "
                f"latent_num_of_examples={self.latent_num_of_examples}"
            )
        return self

    @property
    def train_positives(self) -> int:
        """Positives per concept in ``train_data`` (N/2)."""
        return self.num_of_examples // 2

    @property
    def pool_per_genre(self) -> int:
        """Pool negatives per genre (N/2)."""
        return self.num_of_examples // 2

    @property
    def pool_tokens(self) -> int:
        """New tokens of pool / losing answers."""
        return self.pool_new_tokens if self.pool_new_tokens is not None else int(1.5 * self.output_length)

    @property
    def hard_negative_cap(self) -> int:
        """Most hard negatives a concept can get (also bounded by n: they use instructions n..2n-1)."""
        cap = min(self.max_related_words, self.latent_num_of_examples)
        return cap if self.max_hard_negatives is None else min(cap, self.max_hard_negatives)

    @property
    def latent_negative_counts(self) -> dict[str, int]:
        """Negatives per genre for one concept (§2.5 step 3; §10.5: n=36 → math 5, code 5, text 26)."""
        from axbench_kedro.datagen.instructions import negative_genre_counts

        return negative_genre_counts(self.latent_num_of_examples, self.negative_genre_counts)
