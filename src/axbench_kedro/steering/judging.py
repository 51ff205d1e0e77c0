"""Judging steered generations with the configured judge, and reporting its unparsable replies.

Example:
    >>> judgements, usage = judge_generations(generations, prompts, params.judge, resources)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import pandas as pd

from axbench_kedro.config.steering_eval import JudgeParams
from axbench_kedro.judges.base import JudgeResources, build_judge

__all__ = ["STAGE", "judge_generations", "log_parse_failures"]

log = logging.getLogger(__name__)

STAGE = "steering_eval.judge"
"""The ``stage`` of the usage row."""


def judge_generations(
    steering_generations: pd.DataFrame,
    steering_prompts: pd.DataFrame,
    config: JudgeParams,
    resources: JudgeResources,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``judgements`` (protocol §1.12) from the judge ``config.kind``, and the judge's LLM usage.

    Unparsable replies (rated 0) of fresh judgements are logged per method and criterion.

    Args:
        steering_generations: the generations to rate.
        steering_prompts: their prompts (instruction and concept).
        config: ``steering_eval.judge``.
        resources: what the judge may need (LLM client or factory, target model, seed, templates, prices).
    """
    judge = build_judge(config, resources)
    judgements = judge.judge(steering_generations, steering_prompts)
    log_parse_failures(judgements, judge.kind)
    return judgements, judge.usage_frame(STAGE)


def log_parse_failures(judgements: pd.DataFrame, kind: str) -> None:
    """Log the unparsable replies (rated 0) of fresh judgements (``replica`` rows left out) per method and criterion."""
    failures = judgements[~judgements["parse_ok"].astype(bool) & ~judgements["replica"].astype(bool)]
    if len(failures):
        counts = failures.groupby(["method", "criterion"]).size().to_dict()
        log.warning("judge %s: %d unparsable replies rated 0: %s", kind, len(failures), counts)
