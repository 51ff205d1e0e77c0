"""Parameters of the ``reporting`` pipeline (``params:reporting``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from axbench_kedro.config.common import StrictModel

__all__ = ["ReportingParams"]


class ReportingParams(StrictModel):
    """``params:reporting``: how tables, plots and the run card are built.

    Attributes:
        n_resamples: bootstrap resamples over concepts for the Overall Score CIs (protocol: 1000).
        confidence: central coverage of the percentile bootstrap CI (protocol: 0.95).
        steering_dataset: ``dataset_name`` of ``steering_scores`` rows plotted against the factor.
        suppression_dataset: ``dataset_name`` of the suppression rows (protocol §6) in the suppression report.
        comparable_judge_kinds: judge kinds whose numbers may be set beside AxBench's; any other kind
            (the offline ``proxy`` judge) is labelled non-comparable in every table.
        winrate_opponents: methods every other method is compared with, concept by concept (§5.9).
        roc_grid_points: points of the common FPR grid the mean ROC curve is interpolated on.
        max_listed_concepts: concepts listed by name in the run card (the count is always given).
        settings: which other settings' results join the cross-setting tables: shell patterns matched against the
            setting folder names (``["gemma2_*"]`` keeps the paper settings only); ``None`` = every setting found.
            The current setting is always reported.
        model: the target-model spec of this environment (``${globals:model}``), shown in the run card.
        generator: the generator LLM block (``${globals:generator}``), shown in the run card.
        judge: the judge block (``${globals:judge}``), shown in the run card.
    """

    n_resamples: int = Field(default=1000, ge=1)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    steering_dataset: str = "AlpacaEval"
    suppression_dataset: str = "AlpacaEvalSuppress"
    comparable_judge_kinds: list[str] = Field(default_factory=lambda: ["llm", "rule"])
    winrate_opponents: list[str] = Field(default_factory=list)
    roc_grid_points: int = Field(default=101, ge=2)
    max_listed_concepts: int = Field(default=20, ge=0)
    settings: list[str] | None = None
    model: dict[str, Any] = Field(default_factory=dict)
    generator: dict[str, Any] = Field(default_factory=dict)
    judge: dict[str, Any] = Field(default_factory=dict)
