"""One summary row per steering method: Overall Score, its parts, win rate, bootstrap CI and the judge record.

Example:
    >>> summary = steering_summary_frame(steering_selection, judgements, params, run)
    >>> log_steering_summary(summary)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.metrics.steering import overall_scores, win_rates

__all__ = ["SUMMARY_COLUMNS", "steering_summary_frame", "log_steering_summary"]

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "method",
    "setting",
    "judge_kind",
    "judge_model",
    "overall",
    "concept",
    "instruction",
    "fluency",
    "perplexity",
    "perplexity_conditional",
    "winrate_vs_prompt",
    "n_concepts",
    "parse_failures",
    "ci_low",
    "ci_high",
    "dataset_name",
]


def steering_summary_frame(
    steering_selection: pd.DataFrame,
    judgements: pd.DataFrame,
    params: SteeringEvalParams,
    run: RunSettings,
) -> pd.DataFrame:
    """``steering_summary`` rows (``SUMMARY_COLUMNS``) of ``params.dataset_name``.

    Args:
        steering_selection: per-concept scores at the selected factor (``test_hm`` and the components).
        judgements: the judge's rows (``judge_kind``, ``judge_model``, ``parse_ok``, optionally ``replica``).
        params: steering parameters (dataset, win-rate baseline, judge kind, bootstrap settings).
        run: run settings (setting name, bootstrap seed).
    """
    overall = overall_scores(steering_selection)
    overall = overall[overall["dataset_name"] == params.dataset_name]
    wins = win_rates(steering_selection, baseline=params.winrate_baseline)
    wins = wins.set_index(["method", "dataset_name"])["win_rate"]
    judge_kind = str(judgements["judge_kind"].iloc[0]) if len(judgements) else params.judge.kind
    judge_model = str(judgements["judge_model"].iloc[0]) if len(judgements) else ""
    fresh = judgements[~judgements["replica"]] if "replica" in judgements.columns else judgements
    failures = (~fresh["parse_ok"]).groupby(fresh["method"]).sum()
    rows = []
    for rec in overall.to_dict("records"):
        scores = steering_selection.loc[
            (steering_selection["method"] == rec["method"])
            & (steering_selection["dataset_name"] == rec["dataset_name"]),
            "test_hm",
        ]
        low, high = bootstrap_ci(
            scores.to_numpy(), n_resamples=params.n_resamples, confidence=params.confidence, seed=run.seed
        )
        rows.append(
            {
                "method": rec["method"],
                "setting": run.setting,
                "judge_kind": judge_kind,
                "judge_model": judge_model,
                "overall": rec["overall"],
                "concept": rec["concept"],
                "instruction": rec["instruction"],
                "fluency": rec["fluency"],
                "perplexity": rec["perplexity"],
                "perplexity_conditional": rec["perplexity_conditional"],
                "winrate_vs_prompt": float(wins.get((rec["method"], rec["dataset_name"]), np.nan)),
                "n_concepts": int(rec["n_concepts"]),
                "parse_failures": int(failures.get(rec["method"], 0)),
                "ci_low": low,
                "ci_high": high,
                "dataset_name": rec["dataset_name"],
            }
        )
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return out.astype({"n_concepts": "int64", "parse_failures": "int64"})


def log_steering_summary(summary: pd.DataFrame) -> None:
    """Log one line per method of a ``steering_summary`` frame (Overall Score, CI and its parts)."""
    for rec in summary.to_dict("records"):
        log.info(
            "steering %s (%s judge): Overall %.3f, CI %.3f-%.3f (concept %.2f, instruction %.2f, fluency %.2f) "
            "over %d concepts",
            rec["method"],
            rec["judge_kind"],
            rec["overall"],
            rec["ci_low"],
            rec["ci_high"],
            rec["concept"],
            rec["instruction"],
            rec["fluency"],
            rec["n_concepts"],
        )
