"""The run card's PromptDetection section: who rated (model, backend, sampling, template hash) and whether the 1:100
set was rated (opt-in, with its size and estimate) [D 32].

It reads ``latent_eval_llm_usage``: the balanced-set row (stage ``latent_eval``) and, when opted in, the pool row
(stage ``latent_eval_imbalance``), each with the rater columns PromptDetection writes.

Example:
    >>> lines = detection_rater_section(latent_eval_llm_usage)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from axbench_kedro.detection.prompt_detection import IMBALANCE_STAGE, STAGE
from axbench_kedro.reporting.markdown import markdown_table

__all__ = ["detection_rater_section"]

_FIELDS = (
    ("rater_model", "model"),
    ("rater_backend", "backend"),
    ("prompt_style", "prompt format"),
    ("temperature", "temperature"),
    ("top_k", "top-k"),
    ("max_new_tokens", "max new tokens"),
    ("batch_size", "batch size"),
    ("template", "template"),
    ("template_sha256", "template SHA-256"),
    ("n_ratings", "ratings (balanced set)"),
    ("parse_failures", "unparsable ratings (scored -1)"),
)


def _text(value: Any) -> str:
    """A cell: ``n/a`` for missing values, whole floats (a CSV round trip) as integers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def detection_rater_section(usage: pd.DataFrame | None) -> list[str]:
    """Markdown lines of the run card's "Detection rater (PromptDetection)" section.

    Args:
        usage: ``latent_eval_llm_usage`` (``None`` or without rater columns: PromptDetection did not run).

    Returns:
        The heading, a field/value table (rater settings, then the 1:100 set: its size, cached share, maximum
        generated tokens and estimate, or "not rated (opt-in)") and a blank line.
    """
    lines = ["## Detection rater (PromptDetection)", ""]
    if usage is None or usage.empty or "rater_model" not in usage.columns:
        return [*lines, "n/a (PromptDetection did not rate: excluded, or no ratings recorded)", ""]
    balanced = usage[usage["stage"] == STAGE]
    pool = usage[usage["stage"] == IMBALANCE_STAGE]
    first = (balanced if len(balanced) else usage).iloc[0]
    rows = [[label, _text(first.get(column))] for column, label in _FIELDS if column in usage.columns]
    if len(pool):
        rec = pool.iloc[0]
        rows += [
            [
                "1:100 set",
                f"{_text(rec.get('n_ratings'))} ratings ({_text(rec.get('n_cached'))} cached), up to "
                f"{_text(rec.get('max_generated_tokens'))} generated tokens",
            ],
            ["1:100 estimate (logged before rating)", _text(rec.get("estimate"))],
            ["1:100 unparsable ratings (scored -1)", _text(rec.get("parse_failures"))],
        ]
    else:
        rows.append(
            ["1:100 set", "not rated (opt-in: `latent_eval.prompt_detection_imbalance` is off; protocol D32)"]
        )
    return [*lines, markdown_table(["field", "value"], rows), ""]
