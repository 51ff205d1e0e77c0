"""The steering leaderboard (protocol §5.6, §5.8, §1.16): Overall Score per method and setting, bootstrap CIs, Avg.

Long form (§1.16): one row per (method, setting) plus one ``setting = "Avg"`` row per method holding the mean of the
method's Overall Scores over the settings that have it. Wide form: rows = methods sorted by Avg, columns = settings.
Both carry the method's ``role`` (``method`` | ``control``, from the registry); the Markdown labels controls
``<name> (control)``. Both also carry the ``label`` and ``magnitude_source`` of ``steering_summary`` (the long form
also ``magnitude_ref``): a method steered with the AxBench max-act fallback [D 13] is shown as its label
("SAE (AxBench max-act)"), or, when only some settings fell back, its cells there are marked. A method steered on a
subset of the concepts (SAE (filtered): the kept ones) gets its ``subset_baseline`` scored on the same subset beside it.

Example:
    >>> scores = concept_scores(selection_with_setting)  # doctest: +SKIP
    >>> long = build_leaderboard(scores, judge_labels(summary), n_resamples=1000, confidence=0.95, seed=42)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from axbench_kedro.detection.sae_max_act import FALLBACK_TAG
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods.registry import subset_baseline
from axbench_kedro.metrics.bootstrap import bootstrap_ci, bootstrap_means
from axbench_kedro.reporting.markdown import MISSING, fmt_number, markdown_table
from axbench_kedro.reporting.roles import ROLE_COLUMN, control_note, method_label, role_of

__all__ = [
    "AVG",
    "LONG_COLUMNS",
    "UNKNOWN_JUDGE",
    "build_leaderboard",
    "concept_scores",
    "judge_labels",
    "leaderboard_markdown",
    "leaderboard_wide",
    "require_columns",
    "subset_name",
    "with_subset_baselines",
]

AVG = "Avg"
FALLBACK_NOTE = (
    f"*({FALLBACK_TAG})*: an SAE method steered with the latent-eval magnitude rule (max over the latent-eval rows, "
    "≤ 0 → 50) because its setting had no `sae_max_act` table (Neuronpedia max activations); protocol D13."
)
UNKNOWN_JUDGE = "unknown"
MIXED_JUDGE = "mixed"
MIXED_SOURCE = "mixed"
LONG_COLUMNS = [
    "method",
    "role",
    "setting",
    "overall",
    "ci_low",
    "ci_high",
    "n_concepts",
    "judge_kind",
    "judge_model",
    "comparable",
    "label",
    "magnitude_source",
    "magnitude_ref",
]
MAGNITUDE_LABEL_COLUMNS = ["label", "magnitude_source", "magnitude_ref"]


def require_columns(frame: pd.DataFrame, columns: Iterable[str], dataset: str) -> None:
    """Raise one clear error when ``frame`` lacks a protocol column.

    Raises:
        AxbenchDataError: naming the dataset and the first missing column.
    """
    for column in columns:
        if column not in frame.columns:
            raise AxbenchDataError(
                f"{dataset}: missing column {column!r} (have {sorted(map(str, frame.columns))})"
            )


def concept_scores(
    selection: pd.DataFrame, dataset_name: str | None = None, dataset: str = "steering_selection"
) -> pd.DataFrame:
    """Per-concept Scores (``test_hm``, §1.14) of every setting.

    Args:
        selection: ``steering_selection`` rows of one or more settings, with a ``setting`` column.
        dataset_name: keep only rows of this ``dataset_name`` (when the column exists); ``None`` keeps all.
        dataset: name used in error messages.

    Returns:
        ``setting, method, concept_id, score`` (rows with a missing Score dropped).
    """
    require_columns(selection, ["setting", "concept_id", "method", "test_hm"], dataset)
    if dataset_name is not None and "dataset_name" in selection.columns:
        selection = selection[selection["dataset_name"] == dataset_name]
    scores = selection[["setting", "method", "concept_id", "test_hm"]].rename(columns={"test_hm": "score"})
    scores = scores.astype({"setting": str, "method": str})
    scores["score"] = pd.to_numeric(scores["score"], errors="coerce")
    return scores.dropna(subset=["score"]).reset_index(drop=True)


def subset_name(baseline: str, method: str) -> str:
    """Leaderboard name of ``baseline`` scored on ``method``'s concepts, e.g. ``SAE (on SAE-filtered concepts)``."""
    return f"{baseline} (on {method} concepts)"


def with_subset_baselines(
    scores: pd.DataFrame, labels: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Add, per method with a ``subset_baseline`` (SAE (filtered) → SAE, protocol §3.15) and setting, the baseline's
    Scores on exactly that method's concepts under :func:`subset_name`, with the baseline's judge labels.

    Args:
        scores: ``concept_scores`` output.
        labels: ``judge_labels`` output (or ``None``).

    Returns:
        ``(scores, labels)`` with the added rows (unchanged when no method has a baseline present in the setting).
    """
    extra_scores, extra_labels = [], []
    for (setting, method), cell in scores.groupby(["setting", "method"], sort=True):
        baseline = subset_baseline(str(method))
        if baseline is None:
            continue
        base = scores[(scores["setting"] == setting) & (scores["method"] == baseline)]
        base = base[base["concept_id"].isin(set(cell["concept_id"]))]
        if base.empty:
            continue
        name = subset_name(baseline, str(method))
        extra_scores.append(base.assign(method=name))
        if labels is not None and not labels.empty:
            mine = labels[(labels["setting"] == setting) & (labels["method"] == baseline)]
            extra_labels.append(mine.assign(method=name, label=name))
    if not extra_scores:
        return scores, labels
    scores = pd.concat([scores, *extra_scores], ignore_index=True)
    if extra_labels:
        labels = pd.concat([labels, *extra_labels], ignore_index=True)
    return scores, labels


def judge_labels(summary: pd.DataFrame | None) -> pd.DataFrame:
    """Judge kind and model, display label and magnitude source per (setting, method) from ``steering_summary`` rows
    (with a ``setting`` column).

    Returns:
        ``setting, method, judge_kind, judge_model, label, magnitude_source, magnitude_ref`` (empty when no summary
        is given; a summary written before a column existed gives nulls there).
    """
    columns = ["setting", "method", "judge_kind", "judge_model", *MAGNITUDE_LABEL_COLUMNS]
    if summary is None or summary.empty:
        return pd.DataFrame(columns=columns)
    require_columns(summary, ["setting", "method", "judge_kind"], "steering_summary")
    absent = {c: pd.Series(pd.NA, index=summary.index) for c in columns if c not in summary.columns}
    labels = summary.assign(**absent)[columns].astype({"setting": str, "method": str})
    return labels.drop_duplicates(["setting", "method"], keep="last").reset_index(drop=True)


def build_leaderboard(
    scores: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
    comparable_kinds: Iterable[str] = ("llm", "rule"),
) -> pd.DataFrame:
    """Overall Score per (method, setting) with percentile bootstrap CIs over concepts, plus the Avg rows.

    A setting's CI resamples its concepts with ``seed``. The Avg CI resamples every setting of the method
    independently (the k-th of the method's settings, in name order, with ``seed + k``) and averages the
    resample means, so a method with one setting gets exactly that setting's interval.

    Args:
        scores: ``setting, method, concept_id, score`` (see ``concept_scores``).
        labels: ``setting, method, judge_kind, judge_model`` and optionally ``label, magnitude_source,
            magnitude_ref`` (see ``judge_labels``); a missing judge → ``unknown``, a missing label → the method.
        n_resamples: bootstrap resamples (protocol: 1000).
        confidence: CI coverage (protocol: 0.95).
        seed: the run seed.
        comparable_kinds: judge kinds whose numbers are comparable with AxBench's.

    Returns:
        The long leaderboard (``LONG_COLUMNS``; ``role`` = the method's registered role), methods sorted by Avg
        (descending, then name), each method's settings in name order followed by its Avg row. The Avg row's
        ``label`` / ``magnitude_source`` are the settings' common value (label: else the method name; source: else
        ``mixed``), its ``magnitude_ref`` is null.
    """
    comparable_set = set(comparable_kinds)
    labels = (
        labels
        if labels is not None
        else pd.DataFrame(columns=["setting", "method", "judge_kind", "judge_model"])
    )
    label_map = {(r.setting, r.method): (r.judge_kind, r.judge_model) for r in labels.itertuples(index=False)}
    extra_map = {
        (str(r["setting"]), str(r["method"])): {c: _text(r.get(c)) for c in MAGNITUDE_LABEL_COLUMNS}
        for r in labels.to_dict("records")
    }
    tail = (1.0 - confidence) / 2.0 * 100.0
    rows: list[dict[str, object]] = []
    for method, group in scores.groupby("method", sort=True):
        role = role_of(str(method))
        per_setting: list[dict[str, object]] = []
        resampled: list[np.ndarray] = []
        for k, (setting, cell) in enumerate(group.groupby("setting", sort=True)):
            values = cell["score"].to_numpy(dtype=np.float64)
            low, high = bootstrap_ci(values, n_resamples=n_resamples, confidence=confidence, seed=seed)
            resampled.append(bootstrap_means(values, n_resamples=n_resamples, seed=seed + k))
            kind, model = label_map.get((setting, method), (UNKNOWN_JUDGE, None))
            kind = UNKNOWN_JUDGE if pd.isna(kind) else str(kind)
            per_setting.append(
                {
                    "method": method,
                    "role": role,
                    "setting": setting,
                    "overall": float(values.mean()),
                    "ci_low": low,
                    "ci_high": high,
                    "n_concepts": int(values.size),
                    "judge_kind": kind,
                    "judge_model": None if model is None or pd.isna(model) else str(model),
                    "comparable": kind in comparable_set,
                    **_magnitude_cells(extra_map.get((str(setting), str(method)), {}), str(method)),
                }
            )
        avg_low, avg_high = np.percentile(np.mean(np.vstack(resampled), axis=0), [tail, 100.0 - tail])
        kinds = {str(r["judge_kind"]) for r in per_setting}
        models = {r["judge_model"] for r in per_setting if r["judge_model"] is not None}
        per_setting.append(
            {
                "method": method,
                "role": role,
                "setting": AVG,
                "overall": float(np.mean([r["overall"] for r in per_setting])),
                "ci_low": float(avg_low),
                "ci_high": float(avg_high),
                "n_concepts": int(sum(int(r["n_concepts"]) for r in per_setting)),
                "judge_kind": kinds.pop() if len(kinds) == 1 else MIXED_JUDGE,
                "judge_model": models.pop() if len(models) == 1 else (None if not models else MIXED_JUDGE),
                "comparable": all(bool(r["comparable"]) for r in per_setting),
                **_avg_magnitude_cells(per_setting, str(method)),
            }
        )
        rows.extend(per_setting)
    long = pd.DataFrame(rows, columns=LONG_COLUMNS)
    if long.empty:
        return long.astype({"overall": float, "ci_low": float, "ci_high": float, "n_concepts": "int64"})
    avg = long[long["setting"] == AVG].set_index("method")["overall"]
    order = sorted(avg.index, key=lambda m: (-avg[m], m))
    long["_rank"] = long["method"].map({m: i for i, m in enumerate(order)})
    long["_avg_last"] = long["setting"] == AVG
    long = long.sort_values(["_rank", "_avg_last", "setting"], kind="stable").drop(
        columns=["_rank", "_avg_last"]
    )
    return long.reset_index(drop=True)


def _text(value: object) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _magnitude_cells(extra: dict[str, str | None], method: str) -> dict[str, str | None]:
    return {
        "label": extra.get("label") or method,
        "magnitude_source": extra.get("magnitude_source"),
        "magnitude_ref": extra.get("magnitude_ref"),
    }


def _avg_magnitude_cells(per_setting: list[dict[str, object]], method: str) -> dict[str, str | None]:
    labels = {str(r["label"]) for r in per_setting}
    sources = {r["magnitude_source"] for r in per_setting if r["magnitude_source"] is not None}
    return {
        "label": labels.pop() if len(labels) == 1 else method,
        "magnitude_source": (sources.pop() if len(sources) == 1 else MIXED_SOURCE) if sources else None,
        "magnitude_ref": None,
    }


def _settings_of(long: pd.DataFrame) -> list[str]:
    return sorted(s for s in long["setting"].unique() if s != AVG)


def _label(cells: pd.DataFrame, method: str, setting: str = AVG) -> str:
    """The method's display label in ``setting`` (a leaderboard without labels: the method name)."""
    if "label" in cells.columns and setting in cells.index:
        value = _text(cells.loc[setting, "label"])
        if value:
            return value
    return method


def _role(cells: pd.DataFrame, method: str) -> str:
    """The method's role from its leaderboard rows (a leaderboard written before roles existed: the registry)."""
    if ROLE_COLUMN in cells.columns and pd.notna(cells[ROLE_COLUMN].iloc[0]):
        return str(cells[ROLE_COLUMN].iloc[0])
    return role_of(method)


def leaderboard_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Rows = methods (Avg order), columns = each setting's Overall, CI and n, then Avg and its CI.

    Args:
        long: output of ``build_leaderboard``.

    Returns:
        ``method, role, judge_kind, comparable, label, magnitude_source, <s>, <s>_ci_low, <s>_ci_high, <s>_n, ...,
        Avg, Avg_ci_low, Avg_ci_high`` (label and magnitude source of the Avg row).
    """
    settings = _settings_of(long)
    columns = ["method", ROLE_COLUMN, "judge_kind", "comparable", "label", "magnitude_source"]
    for setting in [*settings, AVG]:
        columns += [setting, f"{setting}_ci_low", f"{setting}_ci_high"] + (
            [f"{setting}_n"] if setting != AVG else []
        )
    rows: list[dict[str, object]] = []
    for method in long["method"].drop_duplicates():
        cells = long[long["method"] == method].set_index("setting")
        row: dict[str, object] = {
            "method": method,
            ROLE_COLUMN: _role(cells, str(method)),
            "judge_kind": cells.loc[AVG, "judge_kind"],
            "comparable": bool(cells.loc[AVG, "comparable"]),
            "label": _label(cells, str(method)),
            "magnitude_source": _text(cells.get("magnitude_source", pd.Series(dtype=object)).get(AVG)),
        }
        for setting in [*settings, AVG]:
            present = setting in cells.index
            row[setting] = cells.loc[setting, "overall"] if present else np.nan
            row[f"{setting}_ci_low"] = cells.loc[setting, "ci_low"] if present else np.nan
            row[f"{setting}_ci_high"] = cells.loc[setting, "ci_high"] if present else np.nan
            if setting != AVG:
                row[f"{setting}_n"] = int(cells.loc[setting, "n_concepts"]) if present else pd.NA
        rows.append(row)
    wide = pd.DataFrame(rows, columns=columns)
    for setting in settings:
        wide[f"{setting}_n"] = wide[f"{setting}_n"].astype("Int64")
    return wide


def leaderboard_markdown(
    long: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    title: str = "Steering leaderboard: Overall Score (0–2)",
    score_note: str = "",
    empty: str = "*(no steering results)*",
) -> str:
    """The AxBench-style leaderboard as Markdown: ``overall [ci_low, ci_high]`` per cell, non-comparable cells marked,
    controls labelled ``<name> (control)``, methods shown by their ``label`` (e.g. "SAE (AxBench max-act)" [D 13]);
    a cell whose setting's label differs from the row's is marked ‡.

    Args:
        long: output of ``build_leaderboard``.
        confidence: CI coverage, for the caption.
        n_resamples: bootstrap resamples, for the caption.
        title: the section title (the suppression leaderboard reuses this table).
        score_note: a sentence put before the caption (e.g. what the per-generation score is).
        empty: the line shown when ``long`` has no rows.

    Returns:
        A Markdown section (title, caption, table, notes).
    """
    pct = f"{confidence * 100:g} %"
    lines = [
        f"## {title}",
        "",
        f"{score_note + ' ' if score_note else ''}"
        "Cell = mean over concepts of the per-concept Score (factor chosen on the selection instructions, scored on "
        "the held-out test instructions; paper: 0–4 / 5–9) "
        f"[{pct} percentile bootstrap CI, {n_resamples} resamples over concepts]. Avg = mean over the settings that "
        "have the method. Rows sorted by Avg.",
        "",
    ]
    if long.empty:
        return "\n".join([*lines, empty, ""])
    settings = _settings_of(long)
    max_n = {s: int(long.loc[long["setting"] == s, "n_concepts"].max()) for s in settings}
    rows: list[list[str]] = []
    flagged = False
    variants: list[str] = []
    methods = list(long["method"].drop_duplicates())
    roles: list[str] = []
    shown_labels: list[str] = []
    for method in methods:
        cells = long[long["method"] == method].set_index("setting")
        roles.append(_role(cells, str(method)))
        row_label = _label(cells, str(method))
        shown_labels.append(row_label)
        row = [method_label(row_label, roles[-1]), str(cells.loc[AVG, "judge_kind"])]
        for setting in [*settings, AVG]:
            if setting not in cells.index:
                row.append(MISSING)
                continue
            cell = cells.loc[setting]
            text = (
                f"{fmt_number(cell['overall'])} [{fmt_number(cell['ci_low'])}, {fmt_number(cell['ci_high'])}]"
            )
            if setting != AVG and int(cell["n_concepts"]) < max_n[setting]:
                text += f" (n={int(cell['n_concepts'])})"
            if not bool(cell["comparable"]):
                text += " †"
                flagged = True
            if setting != AVG and _label(cells, str(method), setting) != row_label:
                text += " ‡"
                variants.append(f"{_label(cells, str(method), setting)} in {setting}")
            row.append(text)
        rows.append(row)
    rows.append(["concepts", "", *[str(max_n[s]) for s in settings], ""])
    lines.append(
        markdown_table(
            ["method", "judge", *settings, AVG], rows, [False, False] + [True] * (len(settings) + 1)
        )
    )
    if flagged:
        lines += [
            "",
            "† Judged by a non-comparable judge (e.g. the offline `proxy` judge) or a mix of judges: not comparable "
            "with AxBench's published numbers.",
        ]
    if variants:
        lines += ["", f"‡ Variant in that setting: {'; '.join(variants)}."]
    if any(f"({FALLBACK_TAG})" in label for label in [*shown_labels, *variants]):
        lines += ["", FALLBACK_NOTE]
    lines += control_note(methods, roles)
    return "\n".join([*lines, ""])
