"""Rough budget lines for a large batch of LLM ratings: an API rater's cost bound and a readable duration.

Example:
    >>> format_duration(5400)
    '1.5 h'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from axbench_kedro.llm.ledger import PriceTable

__all__ = ["CHARS_PER_TOKEN", "api_cost_estimate", "format_duration"]

CHARS_PER_TOKEN = 4.0
"""Characters per token assumed for prompts of an API model whose tokenizer is not at hand (English text)."""


def format_duration(seconds: float) -> str:
    """``seconds`` as ``s``, ``min``, ``h`` or ``d`` with one decimal (two significant units are never needed)."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def api_cost_estimate(
    model: str, llm_prices: Mapping[str, Any] | None, prompt_chars: int, max_output_tokens: int
) -> str:
    """An upper-bound cost line for ratings by an API model: prompts at ~4 characters per token, every reply at
    its token cap, priced with ``llm_prices``.

    Args:
        model: the rater's model id.
        llm_prices: what the ``llm_prices`` catalog dataset loads (``None``: unknown price).
        prompt_chars: characters of the prompts still to send.
        max_output_tokens: generated tokens at most (replies × cap).

    Returns:
        e.g. ``"estimated cost at most $12.34 (~3000000 input tokens at ~4 chars/token, 2048000 output tokens at
        most; gpt-4o-mini in llm_prices)"``, or a line saying the model has no price.
    """
    input_tokens = int(prompt_chars / CHARS_PER_TOKEN)
    price = PriceTable.from_config(llm_prices).lookup(model) if llm_prices is not None else None
    sizes = (
        f"~{input_tokens} input tokens at ~{CHARS_PER_TOKEN:g} chars/token, "
        f"{max_output_tokens} output tokens at most"
    )
    if price is None:
        return f"cost unknown: {model} has no entry in llm_prices ({sizes})"
    cost = price.cost(input_tokens, max_output_tokens)
    return f"estimated cost at most ${cost:.2f} ({sizes}; {model} in llm_prices)"
