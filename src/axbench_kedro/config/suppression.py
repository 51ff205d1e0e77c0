"""Parameters of the ``suppression`` pipeline (``params:suppression``, protocol §6).

Suppression is the steering evaluation run again with the suppression prompt set, negated factors and the
suppression score, so its ``steering`` block is an ordinary :class:`SteeringEvalParams` (read as
``params:suppression.steering`` by the steering nodes the pipeline reuses). Its factor grids are the steering grids
as written there (positive); the pipeline negates them.

Nodes read the sub-blocks (``params:suppression.concepts``, ``.texts``, ``.steering``): Kedro validates a typed
``params:`` input by replacing its value with the model, so a parent block and its children cannot both be typed
inputs. :class:`SuppressionParams` is the model of the whole block (documentation, tests).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from axbench_kedro.config.common import StrictModel
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.suppression.prompts import SUPPRESS_DATASET
from axbench_kedro.suppression.replies import AVOID_CONCEPT_FALLBACK, AVOID_RULE_FALLBACK, REWRITE_FALLBACK

__all__ = [
    "SuppressionConcepts",
    "SuppressionTemplates",
    "SuppressionFallbacks",
    "SuppressionTextParams",
    "AttackParams",
    "SuppressionParams",
]


class SuppressionConcepts(StrictModel):
    """Which concepts are evaluated.

    Attributes:
        max_concepts: the first ``max_concepts`` concepts of ``concepts_meta`` (by ``concept_id``); ``None`` = all.
        rule_concept_ids: concepts that are rules (R3 text, rule judge); empty = none.
    """

    max_concepts: int | None = Field(default=None, ge=1)
    rule_concept_ids: list[int] = Field(default_factory=list)


class SuppressionTemplates(StrictModel):
    """Template names of R1–R3 (``_base`` variants for base models)."""

    rewrite: str = "suppress_rewrite_instruction"
    avoid_concept: str = "suppress_avoid_concept"
    avoid_rule: str = "suppress_avoid_rule"


class SuppressionFallbacks(StrictModel):
    """Texts used when an R1–R3 reply is empty [D 18]; ``{instruction}``, ``{concept}``, ``{rule}`` are filled."""

    rewrite: str = REWRITE_FALLBACK
    avoid_concept: str = AVOID_CONCEPT_FALLBACK
    avoid_rule: str = AVOID_RULE_FALLBACK

    @field_validator("rewrite", "avoid_concept", "avoid_rule")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a suppression fallback must not be empty")
        return value


class SuppressionTextParams(StrictModel):
    """The suppression texts (R1 per instruction, R2 per concept, R3 per rule concept), generator LLM, cached.

    Attributes:
        templates: R1–R3 template names.
        fallbacks: replacements of empty replies.
        temperature: generator temperature (protocol 1.0).
        max_tokens: reply cap (``None`` = none).
        first_line_only: keep the first non-empty line (completion-style ``_base`` templates).
    """

    templates: SuppressionTemplates = Field(default_factory=SuppressionTemplates)
    fallbacks: SuppressionFallbacks = Field(default_factory=SuppressionFallbacks)
    temperature: float = Field(default=1.0, ge=0.0)
    max_tokens: int | None = Field(default=None, ge=1)
    first_line_only: bool = False


class AttackParams(StrictModel):
    """Attacks on rule concepts at each concept's selected suppression factor (protocol §6).

    Attributes:
        n_shots: many-shot example counts (the largest sets how many R4 examples are collected).
        overwrite: overwrite placements to run (``append``, ``prepend``).
    """

    n_shots: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50])
    overwrite: list[str] = Field(default_factory=lambda: ["append", "prepend"])

    @field_validator("n_shots")
    @classmethod
    def _shots(cls, value: list[int]) -> list[int]:
        if any(n < 0 for n in value) or sorted(set(value)) != list(value):
            raise ValueError(f"attacks.n_shots must be ascending, distinct and >= 0, got {value}")
        return value


def _suppression_steering() -> SteeringEvalParams:
    return SteeringEvalParams(dataset_name=SUPPRESS_DATASET)


class SuppressionParams(StrictModel):
    """``params:suppression``.

    Attributes:
        concepts: which concepts (and which of them are rules).
        steering: methods, positive factor grids (negated by the pipeline), instruction split, sampling, judge and
            summary settings; ``dataset_name`` is ``AlpacaEvalSuppress``. ``Prompt`` is the prompt defence [D 23].
        texts: R1–R3 texts.
        attacks: many-shot and overwrite attacks on rule concepts.
    """

    concepts: SuppressionConcepts = Field(default_factory=SuppressionConcepts)
    steering: SteeringEvalParams = Field(default_factory=_suppression_steering)
    texts: SuppressionTextParams = Field(default_factory=SuppressionTextParams)
    attacks: AttackParams = Field(default_factory=AttackParams)

    @field_validator("steering")
    @classmethod
    def _suppress_dataset(cls, value: SteeringEvalParams) -> SteeringEvalParams:
        if value.dataset_name != SUPPRESS_DATASET:
            raise ValueError(
                f"steering.dataset_name must be {SUPPRESS_DATASET!r}, got {value.dataset_name!r}"
            )
        return value
