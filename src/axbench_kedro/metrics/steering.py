"""Steering metrics (protocol §5.6, §5.9): harmonic mean with zero veto, per-split means, factor selection on
the selection split, Score on the test split, Overall Score and win rates.

Frames follow protocol §1.12–§1.14. Every function is pure (frame in, frame out).

Example:
    >>> harmonic_mean(2, 2, 1)
    1.5
    >>> harmonic_mean(2, 1, 0)
    0.0
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "CRITERIA",
    "GENERATION_KEYS",
    "PERPLEXITY_COLUMNS",
    "SCORE_COLUMNS",
    "harmonic_mean",
    "harmonic_means",
    "split_name",
    "generation_scores",
    "steering_scores",
    "select_factors",
    "overall_scores",
    "win_rates",
]

#: Judge criteria combined by the harmonic mean, in protocol order.
CRITERIA: tuple[str, ...] = ("concept", "instruction", "fluency")
#: Columns identifying one generation (protocol §1.11).
GENERATION_KEYS: list[str] = ["dataset_name", "concept_id", "input_id", "factor", "method"]
#: Score columns of ``steering_scores`` (protocol §1.13), keyed by the source column of ``generation_scores``.
SCORE_COLUMNS: dict[str, str] = {
    "hm": "lm_judge_rating",
    "concept": "relevance_concept_ratings",
    "instruction": "relevance_instruction_ratings",
    "fluency": "fluency_ratings",
    "perplexity": "perplexity",
    "perplexity_conditional": "perplexity_conditional",
}
#: Perplexity columns of ``steering_generations`` carried into the scores (protocol §5.9 [D 28]).
PERPLEXITY_COLUMNS: tuple[str, ...] = ("perplexity", "perplexity_conditional")
_SELECTION, _TEST = "selection", "test"
_TIE_TOL = 1e-12


def harmonic_mean(*ratings: float) -> float:
    """Harmonic mean with zero veto: any rating ≤ 0 gives 0.

    Args:
        *ratings: the judge ratings of one generation (usually concept, instruction, fluency).

    Returns:
        ``len(r) / Σ 1/r_i``, or 0.0 when any rating is 0.
    """
    if not ratings:
        raise ValueError("harmonic_mean needs at least one rating")
    if any(r <= 0 for r in ratings):
        return 0.0
    return float(len(ratings) / sum(1.0 / r for r in ratings))


def harmonic_means(ratings: np.ndarray) -> np.ndarray:
    """Row-wise :func:`harmonic_mean` of a ``[N, k]`` array."""
    arr = np.asarray(ratings, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"expected a [N, k] array of ratings, got shape {arr.shape}")
    vetoed = (arr <= 0).any(axis=1)
    with np.errstate(divide="ignore"):
        hm = arr.shape[1] / (1.0 / np.where(vetoed[:, None], 1.0, arr)).sum(axis=1)
    return np.where(vetoed, 0.0, hm)


def split_name(input_id: int | np.ndarray | pd.Series, n_selection: int) -> np.ndarray:
    """``"selection"`` for ``input_id < n_selection`` (paper: ids 0–4), else ``"test"``."""
    ids = np.asarray(input_id)
    return np.where(ids < n_selection, _SELECTION, _TEST)


def generation_scores(
    judgements: pd.DataFrame,
    generations: pd.DataFrame | None = None,
    *,
    criteria: Iterable[str] = CRITERIA,
    inverted: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per generation: the criterion ratings side by side and their harmonic mean.

    Args:
        judgements: long frame, one row per generation × criterion (protocol §1.12).
        generations: optional ``steering_generations``; its ``perplexity`` and ``perplexity_conditional``
            columns are carried over.
        criteria: criteria entering the HM, in order.
        inverted: criteria rated as ``2 − rating`` inside the HM (suppression: ``("concept",)``); the stored
            criterion columns keep the judge's raw rating.

    Returns:
        ``GENERATION_KEYS`` + one column per criterion + ``hm`` (+ ``perplexity``, ``perplexity_conditional``
        when available).
    """
    criteria = list(criteria)
    missing = [c for c in [*GENERATION_KEYS, "criterion", "rating"] if c not in judgements.columns]
    if missing:
        raise AxbenchDataError(f"judgements: missing column(s) {missing}")
    long = judgements.drop_duplicates([*GENERATION_KEYS, "criterion"])
    wide = long.set_index([*GENERATION_KEYS, "criterion"])["rating"].unstack("criterion")
    absent = [c for c in criteria if c not in wide.columns]
    if absent:
        raise AxbenchDataError(f"judgements: no rating for criterion {absent}")
    wide = wide[criteria].reset_index()
    wide.columns.name = None
    wide = wide.dropna(subset=criteria, how="all")
    if wide[criteria].isna().any().any():
        raise AxbenchDataError("judgements: some generations lack a rating for one of " + ", ".join(criteria))
    inv = set(inverted)
    hm_input = np.stack(
        [(2.0 - wide[c].to_numpy()) if c in inv else wide[c].to_numpy() for c in criteria], axis=1
    )
    wide["hm"] = harmonic_means(hm_input)
    carried = [c for c in PERPLEXITY_COLUMNS if generations is not None and c in generations.columns]
    if carried:
        ppl = generations[[*GENERATION_KEYS, *carried]].drop_duplicates(GENERATION_KEYS)
        wide = wide.merge(ppl, on=GENERATION_KEYS, how="left")
    return wide


def steering_scores(gen_scores: pd.DataFrame, *, n_selection: int) -> pd.DataFrame:
    """Per (concept, method, dataset, split, factor) means of the HM and of each criterion (protocol §1.13).

    Args:
        gen_scores: output of :func:`generation_scores`.
        n_selection: instructions with ``input_id < n_selection`` form the selection split, the rest the test split.

    Returns:
        ``concept_id, method, dataset_name, split, factor, n, lm_judge_rating, relevance_concept_ratings,
        relevance_instruction_ratings, fluency_ratings`` (+ ``perplexity``, ``perplexity_conditional``), sorted,
        factors ascending.
    """
    frame = gen_scores.copy()
    frame["split"] = split_name(frame["input_id"], n_selection)
    present = {src: dst for src, dst in SCORE_COLUMNS.items() if src in frame.columns}
    keys = ["concept_id", "method", "dataset_name", "split", "factor"]
    grouped = frame.groupby(keys, dropna=False, sort=True)
    out = grouped[list(present)].mean().rename(columns=present)
    out.insert(0, "n", grouped.size())
    out = out.reset_index()
    out["concept_id"] = out["concept_id"].astype("int64")
    out["n"] = out["n"].astype("int64")
    out["factor"] = out["factor"].astype("float64")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _weighted_mean(frame: pd.DataFrame, column: str) -> float:
    if frame.empty or column not in frame.columns:
        return float("nan")
    weights = frame["n"].to_numpy(dtype=np.float64)
    values = frame[column].to_numpy(dtype=np.float64)
    ok = ~np.isnan(values)
    return float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")


def select_factors(scores: pd.DataFrame, *, factor_free_methods: Iterable[str] = ()) -> pd.DataFrame:
    """Pick the factor on the selection split, report the test split at that factor (protocol §1.14, §5.6).

    ``i* = argmax_i S(selection)`` over factors in ascending order, first maximum on ties; Score = S(test, f_i*),
    never a maximum over the test split. Factor-free methods have no knob: their Score is the mean over all
    their test rows (replicates included), ``best_factor`` is NaN and ``best_index`` −1.

    Args:
        scores: ``steering_scores`` frame.
        factor_free_methods: names of methods without a strength knob (from the method registry).

    Returns:
        ``concept_id, method, dataset_name, best_factor, best_index, selection_hm, test_hm, test_concept,
        test_instruction, test_fluency, test_perplexity, test_perplexity_conditional``.
    """
    free = set(factor_free_methods)
    rows = []
    for (concept_id, method, dataset), group in scores.groupby(
        ["concept_id", "method", "dataset_name"], sort=True, dropna=False
    ):
        sel = group[group["split"] == _SELECTION].sort_values("factor", kind="stable")
        test = group[group["split"] == _TEST]
        if method in free:
            best_factor, best_index, chosen_sel, chosen_test = float("nan"), -1, sel, test
        else:
            if sel.empty:
                raise AxbenchDataError(
                    f"steering_scores: concept {concept_id}, method {method}: no selection rows"
                )
            values = sel["lm_judge_rating"].to_numpy(dtype=np.float64)
            best_index = int(np.flatnonzero(values >= np.nanmax(values) - _TIE_TOL)[0])
            best_factor = float(sel["factor"].iloc[best_index])
            chosen_sel = sel.iloc[[best_index]]
            chosen_test = test[
                np.isclose(test["factor"].to_numpy(dtype=np.float64), best_factor, rtol=0, atol=1e-12)
            ]
            if chosen_test.empty:
                raise AxbenchDataError(
                    f"steering_scores: concept {concept_id}, method {method}: no test rows at factor {best_factor}"
                )
        rows.append(
            {
                "concept_id": int(concept_id),
                "method": method,
                "dataset_name": dataset,
                "best_factor": best_factor,
                "best_index": best_index,
                "selection_hm": _weighted_mean(chosen_sel, "lm_judge_rating"),
                "test_hm": _weighted_mean(chosen_test, "lm_judge_rating"),
                "test_concept": _weighted_mean(chosen_test, "relevance_concept_ratings"),
                "test_instruction": _weighted_mean(chosen_test, "relevance_instruction_ratings"),
                "test_fluency": _weighted_mean(chosen_test, "fluency_ratings"),
                "test_perplexity": _weighted_mean(chosen_test, "perplexity"),
                "test_perplexity_conditional": _weighted_mean(chosen_test, "perplexity_conditional"),
            }
        )
    columns = [
        "concept_id",
        "method",
        "dataset_name",
        "best_factor",
        "best_index",
        "selection_hm",
        "test_hm",
        "test_concept",
        "test_instruction",
        "test_fluency",
        "test_perplexity",
        "test_perplexity_conditional",
    ]
    out = pd.DataFrame(rows, columns=columns)
    return out.astype({"concept_id": "int64", "best_index": "int64", "best_factor": "float64"})


def overall_scores(selection: pd.DataFrame) -> pd.DataFrame:
    """Overall Score per method (and dataset): mean over concepts of the test-split Score.

    Returns:
        ``method, dataset_name, overall, concept, instruction, fluency, perplexity, perplexity_conditional,
        n_concepts`` (a perplexity column the selection lacks, e.g. an older file, is NaN).
    """
    missing = {f"test_{c}": np.nan for c in PERPLEXITY_COLUMNS if f"test_{c}" not in selection.columns}
    selection = selection.assign(**missing) if missing else selection
    grouped = selection.groupby(["method", "dataset_name"], sort=True)
    out = grouped.agg(
        overall=("test_hm", "mean"),
        concept=("test_concept", "mean"),
        instruction=("test_instruction", "mean"),
        fluency=("test_fluency", "mean"),
        perplexity=("test_perplexity", "mean"),
        perplexity_conditional=("test_perplexity_conditional", "mean"),
        n_concepts=("concept_id", "nunique"),
    ).reset_index()
    out["n_concepts"] = out["n_concepts"].astype("int64")
    return out


def win_rates(selection: pd.DataFrame, *, baseline: str, tol: float = 1e-9) -> pd.DataFrame:
    """Per-concept Score comparison of every method against ``baseline`` (protocol §5.9, [D 22]).

    A concept counts when both methods have a Score for it; win rate = (wins + ½ ties) / n.

    Returns:
        ``method, dataset_name, baseline, wins, ties, losses, n, win_rate`` (NaN win rate when n = 0, e.g. the
        baseline was not run).
    """
    rows = []
    for (method, dataset), group in selection.groupby(["method", "dataset_name"], sort=True):
        base = selection[(selection["method"] == baseline) & (selection["dataset_name"] == dataset)]
        paired = group[["concept_id", "test_hm"]].merge(
            base[["concept_id", "test_hm"]], on="concept_id", suffixes=("", "_base")
        )
        paired = paired.dropna(subset=["test_hm", "test_hm_base"])
        diff = paired["test_hm"].to_numpy() - paired["test_hm_base"].to_numpy()
        wins, ties = int((diff > tol).sum()), int((np.abs(diff) <= tol).sum())
        n = len(diff)
        rows.append(
            {
                "method": method,
                "dataset_name": dataset,
                "baseline": baseline,
                "wins": wins,
                "ties": ties,
                "losses": n - wins - ties,
                "n": n,
                "win_rate": (wins + 0.5 * ties) / n if n else float("nan"),
            }
        )
    return pd.DataFrame(
        rows, columns=["method", "dataset_name", "baseline", "wins", "ties", "losses", "n", "win_rate"]
    )
