"""Prompt: the prompting baseline for steering (§3.9, factor-free; the steering pipeline writes the instruction)
and PromptDetection for detection — an LLM rates the concept's presence in each output with the rubric J1.

PromptDetection's parser (protocol §3.9, §10.3): the text after the last ``Rating:``, its first line, brackets
removed, then ``.strip('"').strip("'").strip("*").strip()`` — no trailing-dot strip; a failure, a non-finite value
(``[[nan]]``, ``[[inf]]``) or a value outside [0, 2] gives −1 [D 29].

Example:
    >>> parse_detection_rating("It fits.\\nRating: [[2]]")
    2.0
    >>> parse_detection_rating("Rating: [[1.5]].")
    -1.0
    >>> parse_detection_rating("Rating: [[nan]]")
    -1.0
"""

from __future__ import annotations

import math

import torch

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptInputs, Method
from axbench_kedro.methods.registry import register

__all__ = ["PARSE_FAILED", "PromptDetectionParams", "PromptMethod", "parse_detection_rating"]

#: PromptDetection's score of an unparsable, non-finite or out-of-range rating (counted per concept and method).
PARSE_FAILED = -1.0


class PromptDetectionParams(StrictModel):
    """Prompt has nothing to train (detection settings live in ``params:latent_eval.prompt_detection``)."""


def parse_detection_rating(reply: str) -> float:
    """PromptDetection rating in [0, 2], or −1 (:data:`PARSE_FAILED`, counted as a parse failure) when the reply
    has no ``Rating:``, the value is not a number, not finite (NaN, ±inf) or outside [0, 2]."""
    if "Rating:" not in reply:
        return PARSE_FAILED
    tail = reply.rsplit("Rating:", 1)[1].strip()
    line = tail.split("\n", 1)[0] if tail else ""
    value = line.replace("[", "").replace("]", "")
    value = value.strip('"').strip("'").strip("*").strip()
    try:
        rating = float(value)
    except ValueError:
        return PARSE_FAILED
    if not math.isfinite(rating):  # `[[nan]]`, `[[inf]]` parse as floats; upstream kept NaN [D 29]
        return PARSE_FAILED
    return rating if 0.0 <= rating <= 2.0 else PARSE_FAILED


@register("Prompt")
class PromptMethod(Method):
    """Prompting baseline: factor-free steering, LLM-rated detection; nothing to train."""

    Params = PromptDetectionParams
    order = 100
    requires = frozenset()
    detection_kind = "llm"
    factor_free = True
    magnitude_source = "unit"

    def train_concept(self, inputs: ConceptInputs, hp: StrictModel) -> dict[str, torch.Tensor]:
        return {}
