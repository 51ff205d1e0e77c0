"""Tiny Markdown writers (pipe tables) used by every report; no third-party table formatter needed."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd

__all__ = ["fmt_number", "markdown_table", "frame_to_markdown"]

MISSING = "–"


def fmt_number(value: Any, digits: int = 3) -> str:
    """Format one cell: floats with ``digits`` decimals, NaN/None as an en dash, the rest as ``str``.

    Example:
        >>> fmt_number(0.9165), fmt_number(float("nan")), fmt_number(12)
        ('0.917', '–', '12')
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        if math.isnan(value) or math.isinf(value):
            return MISSING if math.isnan(value) else str(float(value))
        # Round the shortest decimal form half-up (0.9165 → 0.917, as published tables do), not the binary value.
        quantum = Decimal(1).scaleb(-digits)
        rounded = Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP)
        return str(abs(rounded) if rounded == 0 else rounded)
    try:
        if pd.isna(value):
            return MISSING
    except (TypeError, ValueError):
        pass
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align_right: Sequence[bool] | None = None
) -> str:
    """A GitHub pipe table.

    Args:
        header: column titles.
        rows: already formatted cells, one sequence per row.
        align_right: per column, whether to right-align (numbers); default left.

    Returns:
        The table, one line per row, no trailing newline.
    """
    align = list(align_right) if align_right is not None else [False] * len(header)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---:" if right else "---" for right in align) + "|")
    lines.extend("| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def frame_to_markdown(frame: pd.DataFrame, digits: int = 3, right: Collection[str] = ()) -> str:
    """A DataFrame as a pipe table (numbers right-aligned, ``digits`` decimals).

    Args:
        frame: the table; its index is dropped.
        digits: decimals of float cells.
        right: columns right-aligned whatever their dtype (numbers mixed with text such as ``n/a (opt-in)``).

    Returns:
        The Markdown table (``*(no rows)*`` for an empty frame).
    """
    if frame.empty:
        return "*(no rows)*"
    numeric = [
        c in right or (pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]))
        for c in frame
    ]
    rows = [[fmt_number(v, digits) for v in record] for record in frame.itertuples(index=False, name=None)]
    return markdown_table([str(c) for c in frame.columns], rows, numeric)
