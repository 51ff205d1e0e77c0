"""The steering stage's LLM ledger: one usage row per stage that called an LLM, and its cost log lines.

Example:
    >>> usage = combine_usage(prompt_usage, judge_usage)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import pandas as pd

from axbench_kedro.llm.ledger import USAGE_COLUMNS

__all__ = ["combine_usage"]

log = logging.getLogger(__name__)


def combine_usage(*usage_frames: pd.DataFrame | None) -> pd.DataFrame:
    """The non-empty usage frames stacked (``USAGE_COLUMNS``); logs each row and the total cost.

    Args:
        usage_frames: usage rows per stage (``None`` or empty frames are left out).
    """
    frames = [f for f in usage_frames if f is not None and len(f)]
    usage = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=USAGE_COLUMNS)
    usage = usage.reindex(columns=USAGE_COLUMNS)
    for rec in usage.to_dict("records"):
        log.info(
            "LLM usage %s (%s): %d calls, %d cache hits, %d input + %d output tokens, $%.4f",
            rec["stage"],
            rec["model"],
            rec["calls"],
            rec["cache_hits"],
            rec["input_tokens"],
            rec["output_tokens"],
            rec["cost_usd"],
        )
    log.info(
        "steering_eval LLM cost: $%.4f in %d calls", float(usage["cost_usd"].sum()), int(usage["calls"].sum())
    )
    return usage
