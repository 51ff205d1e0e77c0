"""Parameters of the ``suppression`` pipeline (``params:suppression``, protocol §6).

Suppression is the steering evaluation run again with the suppression prompt set, negated factors and the
suppression score, so its ``steering`` block is an ordinary :class:`SteeringEvalParams` (read as
``params:suppression.steering`` by the steering nodes the pipeline reuses). Its factor grids are the steering grids
as written there (positive); the pipeline negates them.

Nodes read the sub-blocks (``params:suppression.concepts``, ``.texts``, ``.steering``, ``.attacks``,
``.rule_judge``): Kedro validates a typed
``params:`` input by replacing its value with the model, so a parent block and its children cannot both be typed
inputs. :class:`SuppressionParams` is the model of the whole block (documentation, tests).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from axbench_kedro.config.common import StrictModel
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.judges.rule_concepts import DEFAULT_ATTACK_EXCLUDED, check_rule_id
from axbench_kedro.judges.rule_judge import RuleJudgeParams
from axbench_kedro.suppression.multishot import TEMPLATE as MULTISHOT_TEMPLATE
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

    Rule concepts are the ``concepts_meta`` rows with a ``rule_id`` (given by the concept list): they get R3, the
    rule judge instead of J1, and the attacks.

    Attributes:
        concept_ids: these concepts of ``concepts_meta`` only (an id it lacks is an error); ``None`` = all.
        max_concepts: then the first ``max_concepts`` of them (by ``concept_id``); ``None`` = all.
    """

    concept_ids: list[int] | None = None
    max_concepts: int | None = Field(default=None, ge=1)

    @field_validator("concept_ids")
    @classmethod
    def _distinct_ids(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"concept_ids must be a non-empty list of distinct ids, got {value}")
        return value


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
        n_shots: many-shot example counts (ascending, ≤ 200; the largest sets how many R4 examples are collected);
            empty = no many-shot attack.
        overwrite: overwrite placements to run (``append``, ``prepend``); empty = none.
        excluded_rules: rule ids never attacked (protocol §6: 20 of the 25 rules are attacked).
        template: R4 template name (``multishot_examples_base`` for base models).
        per_call: examples asked for per R4 call (protocol 10).
        max_calls: R4 calls per rule before giving up (``None`` = 4 · ceil(max n_shots / per_call)).
        temperature / max_tokens: sampling of the R4 calls.
    """

    n_shots: list[int] = Field(default_factory=lambda: [1, 5, 10, 20, 50])
    overwrite: list[Literal["append", "prepend"]] = Field(default_factory=lambda: ["append", "prepend"])
    excluded_rules: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTACK_EXCLUDED))
    template: str = Field(default=MULTISHOT_TEMPLATE, min_length=1)
    per_call: int = Field(default=10, ge=1)
    max_calls: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0)
    max_tokens: int | None = Field(default=None, ge=1)

    @field_validator("n_shots")
    @classmethod
    def _shots(cls, value: list[int]) -> list[int]:
        if any(n < 0 or n > 200 for n in value) or sorted(set(value)) != list(value):
            raise ValueError(f"attacks.n_shots must be ascending, distinct and in 0..200, got {value}")
        return value

    @field_validator("overwrite")
    @classmethod
    def _placements(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"attacks.overwrite must not repeat a placement, got {value}")
        return value

    @field_validator("excluded_rules")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            try:
                check_rule_id(rule, "attacks.excluded_rules")
            except ValueError as exc:
                raise ValueError(str(exc)) from None
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
        rule_judge: the deterministic rule judge that replaces J1 for rule concepts.
    """

    concepts: SuppressionConcepts = Field(default_factory=SuppressionConcepts)
    steering: SteeringEvalParams = Field(default_factory=_suppression_steering)
    texts: SuppressionTextParams = Field(default_factory=SuppressionTextParams)
    attacks: AttackParams = Field(default_factory=AttackParams)
    rule_judge: RuleJudgeParams = Field(default_factory=RuleJudgeParams)

    @field_validator("steering")
    @classmethod
    def _suppress_dataset(cls, value: SteeringEvalParams) -> SteeringEvalParams:
        if value.dataset_name != SUPPRESS_DATASET:
            raise ValueError(
                f"steering.dataset_name must be {SUPPRESS_DATASET!r}, got {value.dataset_name!r}"
            )
        return value
