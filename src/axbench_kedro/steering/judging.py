"""Judging steered generations with the configured judge, and reporting its unparsable replies.

Judging stays in the driver process under ``scaling.engine: dask`` too (only training, latent scoring and
generation are sharded). The LLM judge is I/O-bound: its async client already keeps many calls in flight, the
provider's rate limit is per key (more processes do not raise it), the LLM cache and ledger live in this process,
and a worker killed after its calls were billed but before its replies were gathered would have them retried and
billed twice. The rule and proxy judges are cheap next to generation (the proxy judge's fluency is the
``perplexity_conditional`` generation already measured). Judgements are a function of the generations, so equal
generations from the two engines give equal judgements.

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
