"""Schema validation of the datagen tables (protocol §1.1–1.4).

Released AxBench parquet files pass unchanged. A missing column, a wrong dtype or one ``concept_id``
carrying two concept texts raises :class:`~axbench_kedro.errors.AxbenchDataError` with one line naming the
file and the column; row counts that differ from the configured sizes only log a warning.

Example:
    >>> validate_table(frame, "train_data", source="train/data.parquet")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import pandas as pd
from pandas.api import types as ptypes

from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "SCHEMAS",
    "CATEGORIES",
    "POOL_CONCEPT",
    "validate_table",
    "unknown_categories",
    "check_counts",
]

logger = logging.getLogger(__name__)

POOL_CONCEPT = "EEEEE"
_ROW = {
    "input": "string",
    "output": "string",
    "output_concept": "string",
    "concept_genre": "string",
    "category": "string",
    "dataset_category": "string",
    "concept_id": "int",
}
SCHEMAS: dict[str, dict[str, str]] = {
    "concepts_meta": {
        "concept_id": "int",
        "concept": "string",
        "ref": "string",
        "sae_id": "int",
        "concept_genres": "list",
    },
    "train_data": dict(_ROW),
    "latent_eval_data": {**_ROW, "sae_link": "string", "sae_id": "int"},
    "preference_data": {
        "input": "string",
        "winning_output": "string",
        "losing_output": "string",
        "output_concept": "string",
        "concept_genre": "string",
        "category": "string",
        "dataset_category": "string",
        "concept_id": "int",
    },
}
CATEGORIES: dict[str, set[str]] = {
    "train_data": {"positive", "negative"},
    "latent_eval_data": {"positive", "negative", "hard negative"},
    "preference_data": {"positive"},
}
_GENRES = {"text", "code", "math"}


def _dtype_ok(series: pd.Series, kind: str) -> bool:
    if kind == "int":
        return ptypes.is_integer_dtype(series.dtype)
    if kind == "string":
        if ptypes.is_string_dtype(series.dtype) and not ptypes.is_object_dtype(series.dtype):
            return True
        return ptypes.is_object_dtype(series.dtype) and all(isinstance(v, str) for v in series.dropna())
    if kind == "list":
        return all(isinstance(v, (list, tuple)) or hasattr(v, "tolist") for v in series)
    raise ValueError(kind)


def validate_table(frame: pd.DataFrame, kind: str, source: str | None = None) -> pd.DataFrame:
    """Check a table against its protocol schema; returns the frame unchanged.

    Args:
        frame: the table.
        kind: ``concepts_meta``, ``train_data``, ``latent_eval_data`` or ``preference_data``.
        source: file name for the error message (defaults to ``kind``).

    Raises:
        AxbenchDataError: one line naming the file and the offending column.
    """
    where = source or kind
    schema = SCHEMAS[kind]
    if not isinstance(frame, pd.DataFrame):
        raise AxbenchDataError(f"{where}: expected a table, got {type(frame).__name__}")
    for column, dtype in schema.items():
        if column not in frame.columns:
            raise AxbenchDataError(f"{where}: column '{column}': missing ({kind} needs {list(schema)})")
        if not _dtype_ok(frame[column], dtype):
            raise AxbenchDataError(
                f"{where}: column '{column}': expected {dtype} values, found dtype {frame[column].dtype}"
            )
    if kind == "concepts_meta":
        dup = frame["concept_id"][frame["concept_id"].duplicated()]
        if len(dup):
            raise AxbenchDataError(f"{where}: column 'concept_id': id {int(dup.iloc[0])} appears twice")
        return frame
    problem = unknown_categories(frame["category"], CATEGORIES[kind])
    if problem:
        raise AxbenchDataError(f"{where}: column 'category': {problem}")
    bad = sorted(set(frame["concept_genre"].astype(str)) - _GENRES)
    if bad:
        raise AxbenchDataError(f"{where}: column 'concept_genre': unexpected values {bad}")
    _check_one_concept_per_id(frame, where)
    return frame


def unknown_categories(values: Iterable[Any], allowed: Collection[str]) -> str | None:
    """Describe the values outside ``allowed`` with their row counts, or ``None`` when there are none.

    Rows are never dropped or relabelled: a caller raises with this text [D 30].

    Example:
        >>> unknown_categories(["positive", "neutral", "neutral", None], {"positive", "negative"})
        "unexpected values <missing> (1 row), 'neutral' (2 rows); allowed: 'negative', 'positive'"
    """
    counts = Counter(
        "<missing>" if _missing(v) else str(v) for v in values if _missing(v) or v not in allowed
    )
    if not counts:
        return None
    parts = [
        f"{v if v == '<missing>' else repr(v)} ({n} row{'s' if n != 1 else ''})"
        for v, n in sorted(counts.items())
    ]
    return f"unexpected values {', '.join(parts)}; allowed: {', '.join(repr(a) for a in sorted(allowed))}"


def _missing(value: Any) -> bool:
    return value is None or (ptypes.is_scalar(value) and bool(pd.isna(value)))


def _check_one_concept_per_id(frame: pd.DataFrame, where: str) -> None:
    # Hard negatives carry "word//meaning" and pool rows "EEEEE": only concept rows define the text.
    rows = frame[(frame["concept_id"] >= 0) & frame["category"].isin(["positive", "negative"])]
    texts = rows.groupby("concept_id")["output_concept"].nunique()
    clash = texts[texts > 1]
    if len(clash):
        cid = int(clash.index[0])
        found = sorted(rows.loc[rows["concept_id"] == cid, "output_concept"].astype(str).unique())[:2]
        raise AxbenchDataError(
            f"{where}: column 'concept_id': id {cid} carries two concept texts {found} (ids must be unique per concept)"
        )


def check_counts(
    frame: pd.DataFrame, kind: str, expected: Mapping[str, int], source: str | None = None
) -> bool:
    """Warn (never fail) when per-concept row counts differ from the configured sizes.

    Args:
        frame: a validated ``train_data`` / ``latent_eval_data`` / ``preference_data`` table.
        kind: its kind (for the message).
        expected: per-concept counts by category, e.g. ``{"positive": 72}``; a ``"pool"`` key checks the
            concept_id −1 rows per genre.
        source: file name for the message.

    Returns:
        ``True`` when every count matched.
    """
    where = source or kind
    ok = True
    concepts = frame[frame["concept_id"] >= 0]
    for category, want in expected.items():
        if category == "pool":
            pool = frame[frame["concept_id"] < 0]
            got = pool.groupby("concept_genre").size().to_dict()
            if got and any(v != want for v in got.values()):
                logger.warning("%s: pool rows per genre %s, configured %d", where, got, want)
                ok = False
            continue
        per = concepts[concepts["category"] == category].groupby("concept_id").size()
        off = per[per != want]
        if len(off):
            logger.warning(
                "%s: %d of %d concepts have a %s count other than %d (e.g. concept %d: %d)",
                where,
                len(off),
                len(per),
                category,
                want,
                int(off.index[0]),
                int(off.iloc[0]),
            )
            ok = False
    return ok
