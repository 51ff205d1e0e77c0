"""One summary row per steering method: Overall Score, its parts, win rate, bootstrap CI, the judge record and
where the steering magnitudes came from.

``magnitude_source`` is the ``source`` of the method's ``max_activations`` rows (``latent_eval``, ``sae_table``,
``unit``; ``mixed`` if they differ, null for factor-free methods) and ``magnitude_ref`` their ``source_ref``.
``label`` is the name readers see: a ``sae_table`` method whose magnitudes fell back to the latent-eval rule is
"<method> (AxBench max-act)" [D 13]; every other method keeps its name.

Example:
    >>> summary = steering_summary_frame(steering_selection, judgements, params, run, max_activations)
    >>> log_steering_summary(summary)
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.detection.sae_max_act import FALLBACK_TAG
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.methods.registry import get_method
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.metrics.steering import overall_scores, win_rates

__all__ = [
    "SUMMARY_COLUMNS",
    "log_steering_summary",
    "magnitude_label",
    "method_magnitudes",
    "steering_summary_frame",
]

log = logging.getLogger(__name__)

MIXED = "mixed"

SUMMARY_COLUMNS = [
    "method",
    "label",
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
    "magnitude_source",
    "magnitude_ref",
]


def magnitude_label(method: str, source: str | None) -> str:
    """The name readers see: ``"<method> (AxBench max-act)"`` for a ``sae_table`` method steered with the
    latent-eval fallback [D 13], else ``method`` (an unregistered name keeps its name)."""
    try:
        table_method = get_method(method).magnitude_source == "sae_table"
    except AxbenchConfigError:
        table_method = False
    return f"{method} ({FALLBACK_TAG})" if table_method and source == "latent_eval" else str(method)


def method_magnitudes(max_activations: pd.DataFrame | None) -> pd.DataFrame:
    """Per method: ``magnitude_source`` (the one ``source`` of its rows, or ``mixed``) and ``magnitude_ref`` (its
    distinct non-empty ``source_ref`` values joined by ``; ``; ``""`` when none)."""
    columns = ["method", "magnitude_source", "magnitude_ref"]
    if max_activations is None or max_activations.empty:
        return pd.DataFrame(columns=columns)
    refs = (
        max_activations["source_ref"]
        if "source_ref" in max_activations.columns
        else pd.Series("", index=max_activations.index)
    )
    rows = []
    for method, group in max_activations.assign(source_ref=refs.fillna("")).groupby("method", sort=False):
        sources = group["source"].astype(str).unique().tolist()
        rows.append(
            {
                "method": str(method),
                "magnitude_source": sources[0] if len(sources) == 1 else MIXED,
                "magnitude_ref": "; ".join(r for r in group["source_ref"].astype(str).unique() if r),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def steering_summary_frame(
    steering_selection: pd.DataFrame,
    judgements: pd.DataFrame,
    params: SteeringEvalParams,
    run: RunSettings,
    max_activations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``steering_summary`` rows (``SUMMARY_COLUMNS``) of ``params.dataset_name``.

    Args:
        steering_selection: per-concept scores at the selected factor (``test_hm`` and the components).
        judgements: the judge's rows (``judge_kind``, ``judge_model``, ``parse_ok``, optionally ``replica``).
        params: steering parameters (dataset, win-rate baseline, judge kind, bootstrap settings).
        run: run settings (setting name, bootstrap seed).
        max_activations: the magnitudes steering used (§1.9; ``source``, ``source_ref``): the magnitude columns
            and the label. ``None``: magnitude columns null, labels = method names.
    """
    overall = overall_scores(steering_selection)
    overall = overall[overall["dataset_name"] == params.dataset_name]
    wins = win_rates(steering_selection, baseline=params.winrate_baseline)
    wins = wins.set_index(["method", "dataset_name"])["win_rate"]
    judge_kind = str(judgements["judge_kind"].iloc[0]) if len(judgements) else params.judge.kind
    judge_model = str(judgements["judge_model"].iloc[0]) if len(judgements) else ""
    fresh = judgements[~judgements["replica"]] if "replica" in judgements.columns else judgements
    failures = (~fresh["parse_ok"]).groupby(fresh["method"]).sum()
    magnitudes = method_magnitudes(max_activations).set_index("method")
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
        source = magnitudes["magnitude_source"].get(rec["method"])
        rows.append(
            {
                "method": rec["method"],
                "label": magnitude_label(rec["method"], source),
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
                "magnitude_source": source,
                "magnitude_ref": magnitudes["magnitude_ref"].get(rec["method"]),
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
            rec.get("label") or rec["method"],
            rec["judge_kind"],
            rec["overall"],
            rec["ci_low"],
            rec["ci_high"],
            rec["concept"],
            rec["instruction"],
            rec["fluency"],
            rec["n_concepts"],
        )
