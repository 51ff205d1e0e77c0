"""Report tables other than the leaderboard (protocol §7): detection, steering components, win rates, judge health.

Each builder takes long frames carrying a ``setting`` column and returns a tidy frame; ``*_markdown`` functions render
them. Means are over concepts (NaNs skipped); ``setting = "Avg"`` rows average the settings that have the method.
Per-method tables carry a ``role`` column (``method`` | ``control``, from the registry) after ``method``; the Markdown
shows controls as ``<name> (control)`` instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from axbench_kedro.detection.summary import IMB_MISSING, IMB_NO_POOL, IMB_OPT_IN, IMB_SCORED, rated_by_llm
from axbench_kedro.methods.registry import detection_reported
from axbench_kedro.metrics.steering import overall_scores
from axbench_kedro.metrics.steering import win_rates as steering_win_rates
from axbench_kedro.reporting.leaderboard import AVG, require_columns
from axbench_kedro.reporting.markdown import frame_to_markdown, markdown_table
from axbench_kedro.reporting.roles import ROLE_COLUMN, control_note, label_methods, with_roles

__all__ = [
    "DETECTION_METRICS",
    "IMB_LABELS",
    "IMB_METRICS",
    "IMB_STATUS",
    "USAGE_COLUMNS",
    "detection_markdown",
    "detection_table",
    "reported_detection_rows",
    "fresh_judgements",
    "judge_health",
    "llm_usage",
    "steering_components",
    "steering_markdown",
    "win_rates",
]

# Balanced metrics first, then the 1:100 ones (§1.15, §4).
DETECTION_METRICS = [
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "overall_accuracy",
    "hardneg_macro_acc",
    "macro_acc",
    "auroc_imb",
    "f1_imb",
    "precision_imb",
    "recall_imb",
]
IMB_METRICS = DETECTION_METRICS[7:]
IMB_STATUS = "imb_status"
# How a table cell reads when a method has no 1:100 metric, by ``imb_status`` (never a bare blank) [D 32].
IMB_LABELS = {IMB_OPT_IN: "n/a (opt-in)", IMB_NO_POOL: "n/a (no negatives)", IMB_MISSING: "n/a (not scored)"}
_IMB_PRIORITY = (IMB_SCORED, IMB_OPT_IN, IMB_NO_POOL, IMB_MISSING)
OPT_IN_NOTE = (
    "*n/a (opt-in)*: PromptDetection rates the 1:100 set only with `latent_eval.prompt_detection_imbalance: true` "
    "(one rating generation per negative and concept; protocol D32)."
)
USAGE_COLUMNS = ["stage", "model", "calls", "cache_hits", "input_tokens", "output_tokens", "cost_usd"]
_COMPONENTS = ["test_hm", "test_concept", "test_instruction", "test_fluency"]


def _with_avg(table: pd.DataFrame, value_columns: list[str], sort_by: str) -> pd.DataFrame:
    """Append per-method Avg rows (mean over settings) and sort methods by their Avg of ``sort_by``."""
    if table.empty:
        return table
    avg = table.groupby("method", sort=True)[value_columns].mean().reset_index().assign(setting=AVG)
    if "n_concepts" in table.columns:
        avg["n_concepts"] = table.groupby("method", sort=True)["n_concepts"].sum().to_numpy()
    out = pd.concat([table, avg[table.columns]], ignore_index=True)
    key = avg.set_index("method")[sort_by]
    order = sorted(key.index, key=lambda m: (-np.nan_to_num(key[m], nan=-np.inf), m))
    out["_rank"] = out["method"].map({m: i for i, m in enumerate(order)})
    out["_avg_last"] = out["setting"] == AVG
    out = out.sort_values(["_rank", "_avg_last", "setting"], kind="stable")
    return out.drop(columns=["_rank", "_avg_last"]).reset_index(drop=True)


def reported_detection_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the rows of methods whose detection repeats another method's (``detection_reported``)."""
    if frame.empty or "method" not in frame.columns:
        return frame
    keep = frame["method"].map(lambda m: detection_reported(str(m)))
    return frame[keep.astype(bool)].reset_index(drop=True)


def detection_table(latent_metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean detection metrics per method and setting (balanced and 1:100), plus Avg rows.

    Args:
        latent_metrics: ``latent_metrics`` rows (§1.15) of one or more settings with a ``setting`` column;
            metric columns other than ``roc_auc`` may be absent (left empty).

    Returns:
        ``method, role, setting, n_concepts`` + ``DETECTION_METRICS`` + ``imb_status`` (why the 1:100 metrics are
        there or empty: ``scored``, ``opt-in`` [D 32], ``no negatives``, ``not scored``); methods sorted by Avg
        ROC AUC.
    """
    require_columns(latent_metrics, ["setting", "concept_id", "method", "roc_auc"], "latent_metrics")
    frame = latent_metrics.astype({"setting": str, "method": str})
    for column in DETECTION_METRICS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    frame[IMB_STATUS] = _imb_status(frame)
    grouped = frame.groupby(["method", "setting"], sort=True)
    table = grouped[DETECTION_METRICS].mean()
    table.insert(0, "n_concepts", grouped["concept_id"].nunique())
    table = _with_avg(table.reset_index(), DETECTION_METRICS, "roc_auc")
    per_setting = grouped[IMB_STATUS].agg(_merge_status)
    per_method = frame.groupby("method")[IMB_STATUS].agg(_merge_status)
    table[IMB_STATUS] = [
        per_method.get(m) if s == AVG else per_setting.get((m, s))
        for m, s in zip(table["method"], table["setting"], strict=True)
    ]
    return with_roles(table)


def _imb_status(frame: pd.DataFrame) -> pd.Series:
    """Each ``latent_metrics`` row's ``imb_status``; rows written before the column existed get one inferred: an
    LLM-rated method without 1:100 values was not opted in (it could not be, then), other rows with values
    ``scored``."""
    status = frame[IMB_STATUS].astype(object) if IMB_STATUS in frame else pd.Series(None, frame.index, object)
    unknown = status.isna()
    if not unknown.any():
        return status
    empty = frame[IMB_METRICS].isna().all(axis=1)
    llm = frame["method"].map({m: rated_by_llm(m) for m in frame["method"].unique()}).astype(bool)
    inferred = np.where(empty & llm, IMB_OPT_IN, np.where(empty, None, IMB_SCORED))
    return status.where(~unknown, pd.Series(inferred, frame.index, object))


def _merge_status(values: Iterable[object]) -> str | None:
    """One status for several rows: ``scored`` when any row was scored (the means skip the others), else the
    first reason in ``_IMB_PRIORITY``."""
    found = {v for v in values if isinstance(v, str)}
    return next((s for s in _IMB_PRIORITY if s in found), min(found) if found else None)


def _imb_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The 1:100 columns for Markdown: a missing value reads ``n/a (<reason>)`` from ``imb_status``."""
    out = table.copy()
    if IMB_STATUS not in out.columns:
        return out
    labels = out[IMB_STATUS].map(IMB_LABELS)
    for column in IMB_METRICS:
        values = out[column].astype(object)
        out[column] = values.where(~(values.isna() & labels.notna()), labels)
    return out


def detection_markdown(table: pd.DataFrame) -> str:
    """Detection report: the ROC AUC grid (methods × settings) then the balanced and 1:100 tables (controls
    labelled ``<name> (control)``)."""
    lines = ["## Concept detection", ""]
    if table.empty:
        return "\n".join([*lines, "*(no detection results)*", ""])
    table = with_roles(table)
    note = control_note(table["method"], table[ROLE_COLUMN])
    table = label_methods(table)
    grid = table.pivot(index="method", columns="setting", values="roc_auc")
    settings = [s for s in sorted(grid.columns) if s != AVG] + [AVG]
    grid = grid.reindex(index=table["method"].drop_duplicates(), columns=settings).reset_index()
    lines += ["Mean ROC AUC over concepts (hard negatives excluded).", "", frame_to_markdown(grid), ""]
    balanced = ["method", "setting", "n_concepts", *DETECTION_METRICS[:7]]
    imbalanced = ["method", "setting", "n_concepts", *IMB_METRICS]
    lines += ["### Balanced set (F1-optimal threshold)", "", frame_to_markdown(table[balanced]), ""]
    lines += [
        "### Imbalanced set (1:100)",
        "",
        frame_to_markdown(_imb_cells(table)[imbalanced], right=IMB_METRICS),
        "",
    ]
    if IMB_STATUS in table.columns and (table[IMB_STATUS] == IMB_OPT_IN).any():
        lines += [OPT_IN_NOTE, ""]
    if note:
        lines += [*note[1:], ""]
    return "\n".join(lines)


def _steering_rows(selection: pd.DataFrame, dataset_name: str | None) -> pd.DataFrame:
    """Validated ``steering_selection`` rows of one steering dataset, optional columns filled with NaN."""
    require_columns(selection, ["setting", "concept_id", "method", *_COMPONENTS], "steering_selection")
    frame = selection.astype({"setting": str, "method": str})
    if "dataset_name" not in frame.columns:
        frame = frame.assign(dataset_name=dataset_name or "")
    elif dataset_name is not None:
        frame = frame[frame["dataset_name"] == dataset_name]
    for column in ("test_perplexity", "test_perplexity_conditional"):
        if column not in frame.columns:
            frame = frame.assign(**{column: np.nan})
    return frame


def steering_components(selection: pd.DataFrame, dataset_name: str | None = None) -> pd.DataFrame:
    """Score, concept, instruction and fluency means at the selected factor (test split) per method and setting.

    Args:
        selection: ``steering_selection`` rows (§1.14) with a ``setting`` column.
        dataset_name: keep only rows of this ``dataset_name`` (e.g. ``AlpacaEval``); ``None`` keeps all.

    Returns:
        ``method, role, setting, n_concepts, score, concept, instruction, fluency, perplexity,
        perplexity_conditional`` plus Avg rows,
        methods sorted by Avg score.
    """
    frame = _steering_rows(selection, dataset_name)
    columns = [
        "method",
        "setting",
        "n_concepts",
        "score",
        "concept",
        "instruction",
        "fluency",
        "perplexity",
        "perplexity_conditional",
    ]
    parts = [
        overall_scores(group).assign(setting=setting).rename(columns={"overall": "score"})
        for setting, group in frame.groupby("setting", sort=True)
    ]
    if not parts:
        return with_roles(pd.DataFrame(columns=columns))
    table = pd.concat(parts, ignore_index=True)[columns]
    return with_roles(_with_avg(table, columns[3:], "score"))


def win_rates(
    selection: pd.DataFrame, opponents: Iterable[str], dataset_name: str | None = None
) -> pd.DataFrame:
    """Concept-by-concept win rates of every method against each opponent (§5.9), per setting.

    A win is a strictly higher Score on the same concept; win rate = (wins + ½ ties) / n over shared concepts
    (``metrics.steering.win_rates``). Opponents absent from a setting are skipped.

    Args:
        selection: ``steering_selection`` rows with a ``setting`` column.
        opponents: method names to compare against (e.g. ``Prompt``, ``SAE``).
        dataset_name: keep only rows of this ``dataset_name``; ``None`` keeps all.

    Returns:
        ``setting, method, role, opponent, wins, ties, losses, n, win_rate`` (the opponent's own row left out).
    """
    columns = ["setting", "method", "opponent", "wins", "ties", "losses", "n", "win_rate"]
    frame = _steering_rows(selection, dataset_name)
    parts = []
    for setting, group in frame.groupby("setting", sort=True):
        present = set(group["method"])
        for opponent in opponents:
            if opponent not in present:
                continue
            rates = steering_win_rates(group, baseline=opponent)
            rates = rates[(rates["method"] != opponent) & (rates["n"] > 0)]
            parts.append(rates.rename(columns={"baseline": "opponent"}).assign(setting=setting))
    if not parts:
        return with_roles(pd.DataFrame(columns=columns))
    return with_roles(pd.concat(parts, ignore_index=True)[columns])


def fresh_judgements(judgements: pd.DataFrame) -> pd.DataFrame:
    """Judgements without the ``replica`` rows (copies of one reply reused for other factors), when flagged."""
    if "replica" not in judgements.columns:
        return judgements
    return judgements[~judgements["replica"].fillna(False).astype(bool)]


def judge_health(judgements: pd.DataFrame) -> pd.DataFrame:
    """Judge replies per method and criterion: count, parse failures (scored 0, §5.5) and mean rating.

    Args:
        judgements: ``judgements`` rows (§1.12); rows flagged ``replica`` (a factor-free generation standing in
            for another factor of the grid) are counted once, through their original.

    Returns:
        ``method, role, criterion, judge_kind, n, parse_failures, failure_rate, mean_rating``.
    """
    require_columns(judgements, ["method", "criterion", "rating", "parse_ok"], "judgements")
    judgements = fresh_judgements(judgements)
    frame = judgements.assign(
        failed=~judgements["parse_ok"].astype(bool),
        judge_kind=judgements["judge_kind"].astype(str) if "judge_kind" in judgements else "unknown",
    )
    grouped = frame.groupby(["method", "criterion", "judge_kind"], sort=True)
    table = pd.DataFrame(
        {
            "n": grouped.size(),
            "parse_failures": grouped["failed"].sum().astype("int64"),
            "mean_rating": grouped["rating"].mean(),
        }
    ).reset_index()
    table.insert(len(table.columns) - 1, "failure_rate", table["parse_failures"] / table["n"].clip(lower=1))
    return with_roles(table)


def llm_usage(*usage_frames: pd.DataFrame | None) -> pd.DataFrame:
    """Concatenate the LLM cost ledgers (one frame per pipeline) and append a total row.

    Args:
        usage_frames: frames with ``USAGE_COLUMNS``; ``None`` or empty ones are skipped.

    Returns:
        One row per (stage, model) + a ``total`` row.
    """
    parts = []
    for frame in usage_frames:
        if frame is None or frame.empty:
            continue
        require_columns(frame, USAGE_COLUMNS, "llm_usage")
        parts.append(frame[USAGE_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=USAGE_COLUMNS)
    usage = pd.concat(parts, ignore_index=True)
    usage = usage.groupby(["stage", "model"], sort=False, as_index=False)[USAGE_COLUMNS[2:]].sum()
    total = pd.DataFrame([{"stage": "total", "model": "", **{c: usage[c].sum() for c in USAGE_COLUMNS[2:]}}])
    return pd.concat([usage, total[USAGE_COLUMNS]], ignore_index=True)


def steering_markdown(
    components: pd.DataFrame, rates: pd.DataFrame, health: pd.DataFrame, usage: pd.DataFrame
) -> str:
    """Steering details: components at the selected factor, win rates, judge health and LLM cost (controls labelled
    ``<name> (control)``)."""
    shown = [with_roles(frame) for frame in (components, rates, health)]
    note = control_note(
        [m for f in shown if "method" in f.columns for m in f["method"]],
        [r for f in shown if "method" in f.columns for r in f[ROLE_COLUMN]],
    )
    components, rates, health = (label_methods(frame) for frame in shown)
    lines = [
        "## Steering details",
        "",
        "### Concept / instruction / fluency at the selected factor (test split)",
        "",
        frame_to_markdown(components),
        "",
        "`perplexity`: upstream's, of the chat prompt + generation with the markup stripped (the generation alone for "
        "Prompt); `perplexity_conditional`: of the generation given the unsteered prompt (protocol §5.9, D28).",
        "",
        "### Win rates (per concept, (wins + ½ ties) / n)",
        "",
        frame_to_markdown(rates),
        "",
        "### Judge health (unparsable replies score 0 and are counted)",
        "",
        frame_to_markdown(health),
        "",
        "### LLM calls and cost",
        "",
        frame_to_markdown(usage, digits=4)
        if not usage.empty
        else markdown_table(["stage"], [["(no LLM calls)"]]),
        "",
    ]
    if note:
        lines += [*note[1:], ""]
    return "\n".join(lines)
