"""Suppression report (protocol §6, §7 item 5): leaderboard, attack table, "suppression score vs n-shot" figure and
the run card's Suppression section.

The suppression leaderboard is the steering leaderboard (:mod:`axbench_kedro.reporting.leaderboard`) built on
``suppression_selection`` / ``suppression_summary`` (``dataset_name`` AlpacaEvalSuppress): per generation the score is
HM(2 − concept, instruction, fluency) [D 24], so its cells read the same way (0–2, higher = better suppression that
still answers fluently). Factor-free methods (every ``best_factor`` missing) are the prompt defence [D 23] and are
labelled so. The attack table and figure read ``attack_summary`` (one row per method × attack × n-shot, plus the
``attack = "none"`` reference row).

Example:
    >>> long = suppression_leaderboard(selection, summary, dataset_name="AlpacaEvalSuppress")  # doctest: +SKIP
    >>> table = attack_table(attack_summary)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from axbench_kedro.reporting import leaderboard as lb
from axbench_kedro.reporting.markdown import MISSING, fmt_number, markdown_table
from axbench_kedro.reporting.plots import _empty, method_colors
from axbench_kedro.reporting.roles import method_label

__all__ = [
    "ATTACK_PLOT_FILE",
    "ATTACK_SUMMARY_COLUMNS",
    "DEFENCE_TAG",
    "NO_ATTACKS",
    "attack_figure",
    "attack_markdown",
    "attack_table",
    "defence_methods",
    "run_card_section",
    "setting_results",
    "suppression_leaderboard",
    "suppression_markdown",
]

ATTACK_PLOT_FILE = "suppression_vs_nshot.png"  # the file name of the catalog entry ``attack_plot``
ATTACK_SUMMARY_COLUMNS = ["method", "attack", "n_shot", "score", "ci_low", "ci_high"]
DEFENCE_TAG = "prompt defence"
PROMPT_KIND = "prompt"
NO_ATTACKS = "no rule concepts attacked"
TITLE = "Suppression leaderboard: suppression score (0–2)"
SCORE_NOTE = (
    "Suppression (protocol §6): the concept is asked for by the rewritten instruction and steered against with "
    "negative factors; per generation the score is HM(2 − concept, instruction, fluency) (0 when any term is 0) "
    "[D 24], so higher = the concept better suppressed in a fluent, on-topic answer. "
    f"*({DEFENCE_TAG})*: the factor-free Prompt defence, no intervention, the avoidance instruction (R2) placed "
    "before the rewritten instruction [D 23]."
)
_ATTACK_ORDER = {"none": 0, "multishot": 1, "append": 2, "prepend": 3}
_OVERWRITE = ("append", "prepend")


def defence_methods(selection: pd.DataFrame) -> list[str]:
    """Factor-free methods of ``suppression_selection`` (every ``best_factor`` missing): the prompt defence."""
    if selection.empty or "best_factor" not in selection.columns or "method" not in selection.columns:
        return []
    factors = pd.to_numeric(selection["best_factor"], errors="coerce")
    return sorted(str(m) for m, f in factors.groupby(selection["method"].astype(str)) if f.isna().all())


def suppression_leaderboard(
    selection: pd.DataFrame,
    summary: pd.DataFrame | None,
    *,
    dataset_name: str | None = "AlpacaEvalSuppress",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 42,
    comparable_kinds: Iterable[str] = ("llm", "rule"),
) -> pd.DataFrame:
    """The long suppression leaderboard: same columns, CIs and ordering as :func:`leaderboard.build_leaderboard`.

    Args:
        selection: ``suppression_selection`` rows of one or more settings, with a ``setting`` column.
        summary: ``suppression_summary`` rows (with ``setting``), for the judge kind and model; may be empty.
        dataset_name: keep only these rows (when the selection has a ``dataset_name`` column).
        n_resamples, confidence, seed: the percentile bootstrap over concepts.
        comparable_kinds: judge kinds comparable with the published numbers.

    Returns:
        ``leaderboard.LONG_COLUMNS``; the prompt defence's ``label`` is ``<method> (prompt defence)``.
    """
    if selection.empty and "test_hm" not in selection.columns:
        return lb.build_leaderboard(pd.DataFrame(columns=["setting", "method", "concept_id", "score"]))
    scores = lb.concept_scores(selection, dataset_name, dataset="suppression_selection")
    if summary is not None and not summary.empty:
        lb.require_columns(summary, ["setting", "method", "judge_kind"], "suppression_summary")
    pairs = scores[["setting", "method"]].drop_duplicates()
    labels = pairs.merge(lb.judge_labels(summary), on=["setting", "method"], how="left")
    defence = set(defence_methods(selection))
    is_defence = labels["method"].isin(defence)
    labels["label"] = labels["label"].astype(object)
    labels.loc[is_defence, "label"] = [f"{m} ({DEFENCE_TAG})" for m in labels.loc[is_defence, "method"]]
    return lb.build_leaderboard(
        scores,
        labels,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        comparable_kinds=comparable_kinds,
    )


# --- attacks -------------------------------------------------------------------------------------------------------


def _attack_rows(attack_summary: pd.DataFrame | None) -> pd.DataFrame:
    """``attack_summary`` checked, with a ``label`` and a column sort key; empty when nothing was attacked."""
    if attack_summary is None or attack_summary.empty:
        return pd.DataFrame(columns=[*ATTACK_SUMMARY_COLUMNS, "kind", "label", "n_concepts", "_order"])
    lb.require_columns(attack_summary, ATTACK_SUMMARY_COLUMNS, "attack_summary")
    frame = attack_summary.copy()
    frame["method"] = frame["method"].astype(str)
    frame["attack"] = frame["attack"].astype(str)
    frame["n_shot"] = pd.to_numeric(frame["n_shot"], errors="coerce").fillna(0).astype("int64")
    for column in ("score", "ci_low", "ci_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if "kind" not in frame.columns:
        frame["kind"] = "steering"
    if "n_concepts" not in frame.columns:
        frame["n_concepts"] = pd.NA
    derived = [_default_label(a, n) for a, n in zip(frame["attack"], frame["n_shot"], strict=True)]
    if "label" in frame.columns:
        frame["label"] = [
            str(given) if isinstance(given, str) and given else d
            for given, d in zip(frame["label"], derived, strict=True)
        ]
    else:
        frame["label"] = derived
    frame["_order"] = [
        (_ATTACK_ORDER.get(a, len(_ATTACK_ORDER)), int(n), a)
        for a, n in zip(frame["attack"], frame["n_shot"], strict=True)
    ]
    return frame


def _default_label(attack: str, n_shot: int) -> str:
    if attack == "none":
        return "no attack"
    if attack == "multishot":
        return f"{int(n_shot)}-shot"
    return f"overwrite ({attack})"


def _method_order(frame: pd.DataFrame) -> list[str]:
    """Methods by their no-attack score (descending), then name; methods without a reference row last."""
    reference = frame[frame["attack"] == "none"].groupby("method")["score"].mean().dropna()

    def key(method: str) -> tuple[int, float, str]:
        return (0, -float(reference[method]), method) if method in reference.index else (1, 0.0, method)

    return sorted(frame["method"].unique(), key=key)


def _display(method: str, kind: object) -> str:
    return f"{method} ({DEFENCE_TAG})" if kind == PROMPT_KIND else method_label(method)


def attack_table(attack_summary: pd.DataFrame | None) -> pd.DataFrame:
    """Rows = methods, columns = attack settings (no attack, each n-shot, overwrite append / prepend).

    Args:
        attack_summary: ``attack_summary`` of one setting (schema: method, kind, attack, n_shot, label, n_concepts,
            score, ci_low, ci_high, ...); ``None`` or empty → an empty table.

    Returns:
        ``method, kind, n_concepts`` then, per attack setting in order, ``<label>``, ``<label>_ci_low``,
        ``<label>_ci_high`` (NaN where a method lacks that attack). ``n_concepts`` is the method's largest count.
    """
    frame = _attack_rows(attack_summary)
    if frame.empty:
        return pd.DataFrame(columns=["method", "kind", "n_concepts"])
    labels = list(dict.fromkeys(frame.sort_values("_order", kind="stable")["label"]))
    rows: list[dict[str, object]] = []
    for method in _method_order(frame):
        part = frame[frame["method"] == method]
        counts = pd.to_numeric(part["n_concepts"], errors="coerce").dropna()
        row: dict[str, object] = {
            "method": method,
            "kind": str(part["kind"].iloc[0]),
            "n_concepts": int(counts.max()) if not counts.empty else pd.NA,
        }
        for label in labels:
            cell = part[part["label"] == label]
            present = not cell.empty
            row[label] = float(cell["score"].iloc[-1]) if present else np.nan
            row[f"{label}_ci_low"] = float(cell["ci_low"].iloc[-1]) if present else np.nan
            row[f"{label}_ci_high"] = float(cell["ci_high"].iloc[-1]) if present else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    table["n_concepts"] = table["n_concepts"].astype("Int64")
    return table


def _attack_labels(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if f"{c}_ci_low" in table.columns]


def attack_markdown(table: pd.DataFrame, *, title: str | None = "Attacks on the rule concepts") -> str:
    """The attack table as Markdown: ``score [ci_low, ci_high]`` per cell, the prompt defence labelled.

    Args:
        table: output of :func:`attack_table`.
        title: a ``###`` heading; ``None`` leaves it out.

    Returns:
        The section (a "no rule concepts attacked" line when the table is empty).
    """
    lines = [f"### {title}", ""] if title else []
    if table.empty:
        return "\n".join([*lines, f"*({NO_ATTACKS})*", ""])
    labels = _attack_labels(table)
    rows = []
    for record in table.to_dict("records"):
        cells = [_display(str(record["method"]), record["kind"]), fmt_number(record["n_concepts"])]
        for label in labels:
            score = record[label]
            cells.append(
                MISSING
                if pd.isna(score)
                else f"{fmt_number(score)} [{fmt_number(record[f'{label}_ci_low'])}, "
                f"{fmt_number(record[f'{label}_ci_high'])}]"
            )
        rows.append(cells)
    lines += [
        "Suppression score (0–2, HM(2 − rule, instruction, fluency), test split) of each method at its selected "
        "suppression factor under each attack; no attack = the same rule concepts without an attack; "
        "[percentile bootstrap CI over concepts].",
        "",
        markdown_table(["method", "concepts", *labels], rows, [False, True] + [True] * len(labels)),
        "",
    ]
    return "\n".join(lines)


def suppression_markdown(
    long: pd.DataFrame,
    attacks: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    plot_file: str = ATTACK_PLOT_FILE,
) -> str:
    """The suppression report: leaderboard (methods × settings), the attack table and a line naming the plot.

    Args:
        long: output of :func:`suppression_leaderboard`.
        attacks: output of :func:`attack_table` (this setting).
        confidence, n_resamples: the bootstrap, for the caption.
        plot_file: the figure's file name (in the same report folder, same version).

    Returns:
        The Markdown document.
    """
    board = lb.leaderboard_markdown(
        long,
        confidence=confidence,
        n_resamples=n_resamples,
        title=TITLE,
        score_note=SCORE_NOTE,
        empty="*(no suppression results)*",
    )
    return "\n".join(
        [
            board,
            attack_markdown(attacks),
            f"Plot: [suppression score vs n-shot](../../{plot_file}/) — `{plot_file}`, written in the same version "
            "folder name as this file.",
            "",
        ]
    )


def attack_figure(attack_summary: pd.DataFrame | None, setting: str = "") -> Figure:
    """Suppression score vs n-shot: one line per method (steering solid, prompt defence dashed), CI band and bars.

    x = n_shot on a symlog axis (0 = no attack); the overwrite attacks are a second panel of markers beside their
    no-attack reference. An empty summary gives a figure saying no rule concept was attacked.
    """
    title = f"Suppression score vs n-shot{f' ({setting})' if setting else ''}"
    frame = _attack_rows(attack_summary)
    if frame.empty:
        return _empty(title, NO_ATTACKS)
    methods = sorted(frame["method"].unique(), key=lambda m: (_kind(frame, m) == PROMPT_KIND, m))
    colors = method_colors(methods)
    shots = frame[frame["attack"].isin(["none", "multishot"])]
    over = frame[frame["attack"].isin(_OVERWRITE)]
    panels = 2 if not over.empty else 1
    fig = Figure(figsize=(7.5 + 3.5 * (panels - 1), 4.4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False, width_ratios=[2, 1][:panels]).ravel()
    left = axes[0]
    for i, method in enumerate(methods):
        part = shots[shots["method"] == method].sort_values("n_shot")
        if part.empty:
            continue
        prompt = _kind(frame, method) == PROMPT_KIND
        x = _dodge(part["n_shot"].to_numpy(dtype=np.float64), i, len(methods))
        if len(part) > 1:
            left.fill_between(
                x, part["ci_low"], part["ci_high"], color=colors[method], alpha=0.12, linewidth=0
            )
        left.errorbar(
            x,
            part["score"],
            yerr=_yerr(part),
            fmt="o",
            linestyle="--" if prompt else "-",
            markerfacecolor="white" if prompt else colors[method],
            color=colors[method],
            capsize=3,
            label=_display(method, _kind(frame, method)),
        )
    ticks = sorted(int(n) for n in shots["n_shot"].unique()) or [0]
    left.set_xscale("symlog", linthresh=1.0)
    left.set_xticks(ticks, ["none" if t == 0 else str(t) for t in ticks])
    left.minorticks_off()
    left.set(
        xlim=(-0.5, max(max(ticks) * 1.6, 1.0) + 1.0),
        ylim=(0, 2),
        xlabel="shots in the many-shot attack (none = no attack)",
        ylabel="suppression score (0–2)",
        title="many-shot attack",
    )
    left.legend(fontsize="small", loc="best")
    if panels == 2:
        _overwrite_panel(axes[1], frame, methods, colors)
    fig.suptitle(title)
    return fig


def _dodge(x: np.ndarray, i: int, n: int, step: float = 0.025) -> np.ndarray:
    """Shift method ``i`` of ``n`` a little along a symlog axis so that equal points stay visible side by side."""
    shift = (i - (n - 1) / 2) * step
    return np.where(x > 0, x * 10.0**shift, shift * 2.0)


def _kind(frame: pd.DataFrame, method: str) -> str:
    return str(frame.loc[frame["method"] == method, "kind"].iloc[0])


def _yerr(part: pd.DataFrame) -> np.ndarray:
    low = (part["score"] - part["ci_low"]).fillna(0.0).clip(lower=0.0)
    high = (part["ci_high"] - part["score"]).fillna(0.0).clip(lower=0.0)
    return np.vstack([low.to_numpy(dtype=np.float64), high.to_numpy(dtype=np.float64)])


def _overwrite_panel(ax: object, frame: pd.DataFrame, methods: list[str], colors: dict) -> None:
    """Markers per method at no attack / overwrite (append) / overwrite (prepend), side by side."""
    parts = frame[frame["attack"].isin(["none", *_OVERWRITE])].sort_values("_order", kind="stable")
    categories = list(dict.fromkeys(parts["label"]))
    width = 0.7 / max(len(methods), 1)
    for i, method in enumerate(methods):
        part = parts[parts["method"] == method]
        if part.empty:
            continue
        prompt = _kind(frame, method) == PROMPT_KIND
        x = np.array([categories.index(label) for label in part["label"]], dtype=np.float64)
        ax.errorbar(  # type: ignore[attr-defined]
            x + (i - (len(methods) - 1) / 2) * width,
            part["score"],
            yerr=_yerr(part),
            fmt="D" if prompt else "s",
            linestyle="none",
            markerfacecolor="white" if prompt else colors[method],
            color=colors[method],
            capsize=3,
        )
    ax.set_xticks(range(len(categories)), categories, rotation=15)  # type: ignore[attr-defined]
    ax.set(ylim=(0, 2), xlim=(-0.6, len(categories) - 0.4), title="overwrite attack")  # type: ignore[attr-defined]


# --- run card ------------------------------------------------------------------------------------------------------

RESULT_NAMES = ("suppression_selection", "suppression_summary", "attack_summary")


def setting_results(
    results: Mapping[str, pd.DataFrame] | None, setting: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One setting's suppression frames out of the ``suppression_results`` dataset (every setting's latest files).

    Args:
        results: ``{name: frame with a setting column}`` plus ``sources`` (``ResultsAcrossSettingsDataset``).
        setting: the setting kept.

    Returns:
        ``(suppression_selection, suppression_summary, attack_summary, sources)`` of ``setting`` (empty frames where
        that setting has no such file).
    """
    found = results or {}

    def pick(name: str) -> pd.DataFrame:
        frame = found.get(name)
        if frame is None or frame.empty or "setting" not in frame.columns:
            return pd.DataFrame(columns=["setting"])
        return frame[frame["setting"].astype(str) == setting].reset_index(drop=True)

    selection, summary, attacks, sources = (pick(n) for n in (*RESULT_NAMES, "sources"))
    return selection, summary, attacks, sources


def run_card_section(
    board: pd.DataFrame | None,
    attacks: pd.DataFrame | None,
    *,
    setting: str,
    plot_file: str = ATTACK_PLOT_FILE,
    sources: pd.DataFrame | None = None,
) -> list[str]:
    """The run card's "Suppression" section for one setting.

    Args:
        board: :func:`suppression_leaderboard` rows of this setting (``None`` / empty: suppression not run).
        attacks: :func:`attack_table` of this setting.
        setting: the current setting.
        plot_file: the "suppression score vs n-shot" file name.
        sources: ``setting, dataset, version`` of the suppression files read (optional).

    Returns:
        Markdown lines.
    """
    lines = ["## Suppression", ""]
    if board is None or board.empty:
        return [
            *lines,
            f"Not run for {setting}: no suppression results were found. Run `kedro run --pipeline suppression` "
            "(protocol §6), then this report again.",
            "",
        ]
    board = board[board["setting"] != lb.AVG] if "setting" in board.columns else board
    rows = [
        [
            _text_label(r),
            fmt_number(r["overall"]),
            f"[{fmt_number(r['ci_low'])}, {fmt_number(r['ci_high'])}]",
            fmt_number(int(r["n_concepts"])),
            str(r.get("judge_kind", MISSING)),
        ]
        for r in board.to_dict("records")
    ]
    lines += [
        "Suppression score (0–2) = mean over concepts of HM(2 − concept, instruction, fluency) at the factor chosen "
        f"on the selection instructions, test instructions [D 24]; *({DEFENCE_TAG})* = the Prompt defence [D 23].",
        "",
        markdown_table(
            ["method", "Score", "CI", "n concepts", "judge"], rows, [False, True, True, True, False]
        ),
        "",
        attack_markdown(attacks if attacks is not None else pd.DataFrame(), title="Attacks"),
        f"Plot: `{plot_file}` (catalog entry `attack_plot`, in this setting's report folder).",
        "",
    ]
    if sources is not None and not sources.empty:
        read = sources[sources["setting"].astype(str) == setting]
        if not read.empty:
            listed = ", ".join(f"{r.dataset} {r.version}" for r in read.itertuples(index=False))
            lines += [f"Read: {listed}.", ""]
    return lines


def _text_label(record: dict[str, object]) -> str:
    label = record.get("label")
    shown = str(label) if isinstance(label, str) and label else str(record["method"])
    return method_label(shown, record.get("role")) if shown == record["method"] else shown
