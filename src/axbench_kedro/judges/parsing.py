"""Parsing of judge replies into 0–2 ratings (protocol §5.5, rule ``axbench-v1``).

PromptDetection's variant (no trailing-dot strip, −1 on failure) lives with the method, in
:mod:`axbench_kedro.methods.prompt`.

Example:
    >>> parse_rating("The concept is clear.\\nRating: [[2]]")
    ParsedRating(rating=2.0, ok=True)
    >>> parse_rating("Rating: 2/2")
    ParsedRating(rating=0.0, ok=False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "PARSE_RULE",
    "RATING_MARKER",
    "ParsedRating",
    "parse_rating",
]

#: Version string stored with every judgement parsed by :func:`parse_rating`.
PARSE_RULE = "axbench-v1"
#: The label a judge reply must contain before its rating.
RATING_MARKER = "Rating:"
_MIN_RATING, _MAX_RATING = 0.0, 2.0


@dataclass(frozen=True)
class ParsedRating:
    """A parsed rating; ``ok`` is False when the 0 came from the fallback (counted in reports)."""

    rating: float
    ok: bool


_FAILED = ParsedRating(0.0, False)


def _tail_after_last_marker(text: str) -> str | None:
    """First line of the text after the last ``Rating:`` (stripped), or None without a marker."""
    if RATING_MARKER not in text:
        return None
    tail = text.rsplit(RATING_MARKER, 1)[1].strip()
    return tail.split("\n", 1)[0]


def _to_rating(candidate: str) -> float | None:
    """Float in [0, 2] or None (parse error, NaN, ±inf or out of range)."""
    try:
        value = float(candidate)
    except ValueError:
        return None
    if not math.isfinite(value):  # `[[nan]]` parses as a float: 0, counted [D 29]
        return None
    if not _MIN_RATING <= value <= _MAX_RATING:
        return None
    return value


def parse_rating(text: str | None) -> ParsedRating:
    """Parse a judge reply with the ``axbench-v1`` rule.

    The text after the last ``Rating:`` is stripped, cut to its first line, freed of every ``[`` and ``]``, then
    stripped one step after another of trailing dots, double quotes, single quotes, asterisks and whitespace.
    A missing marker, a non-number, a non-finite value (``[[nan]]``) or a value outside [0, 2] gives 0 with
    ``ok=False``.

    Args:
        text: the raw judge completion (None counts as empty).

    Returns:
        The rating and whether it was parsed (False = fallback 0).
    """
    line = _tail_after_last_marker(text or "")
    if line is None:
        return _FAILED
    candidate = line.replace("[", "").replace("]", "")
    candidate = candidate.rstrip(".").strip('"').strip("'").strip("*").strip()
    value = _to_rating(candidate)
    return _FAILED if value is None else ParsedRating(value, True)
