"""The optional per-feature max-activation table of a setting's SAE (protocol §1.5, §3.7, [D 13]).

SAE and SAE-A steer with m = the max activation Neuronpedia lists for their feature (``maxValue``), read from a
local file instead of the live API: columns ``sae_id`` (int64, the feature index) and ``max_act`` (float64). A
Neuronpedia-style export with ``index`` / ``maxValue`` columns is mapped onto them. No file = no table
(:attr:`SAEMaxActTable.available` is false; the magnitudes then fall back to the latent-eval rule, labelled).
A file that is present but malformed is one error naming the file and the column.

Example:
    >>> table = read_sae_max_act("data/01_raw/gemma2_2b_l10/sae_max_act.csv")  # doctest: +SKIP
    >>> table.value(1234), table.describe()  # doctest: +SKIP
    (31.5, 'data/01_raw/gemma2_2b_l10/sae_max_act.csv (sha256 4f1c0a9e2b7d, 16384 rows)')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from axbench_kedro.errors import AxbenchDataError

__all__ = ["FALLBACK_TAG", "SAE_MAX_ACT_COLUMNS", "SAEMaxActTable", "load_sae_max_act", "read_sae_max_act"]

# Reports call a ``sae_table`` method steered without its table "<method> (AxBench max-act)" [D 13].
FALLBACK_TAG = "AxBench max-act"
SAE_MAX_ACT_COLUMNS = ("sae_id", "max_act")
_NEURONPEDIA_NAMES = {"index": "sae_id", "maxValue": "max_act"}
_SUFFIXES = (".csv", ".parquet", ".jsonl", ".json")
_SHOWN = 5  # offending values quoted in an error


@dataclass(frozen=True, eq=False)
class SAEMaxActTable:
    """What the ``sae_max_act`` catalog entry hands the latent_eval node: a checked table, or none.

    Attributes:
        path: the configured file (``None``: no path configured).
        values: ``max_act`` indexed by ``sae_id``; ``None`` when the file does not exist.
        sha256: SHA-256 of the file's bytes (``""`` without a table).
    """

    path: str | None
    values: pd.Series | None = None
    sha256: str = ""

    @property
    def available(self) -> bool:
        return self.values is not None

    @property
    def missing_reason(self) -> str:
        where = "no path configured" if not self.path else f"{self.path} does not exist"
        return f"no sae_max_act table (catalog entry `sae_max_act`: {where})"

    def describe(self) -> str:
        """``<path> (sha256 <first 12 hex>, <n> rows)``, or the missing reason."""
        if self.values is None:
            return self.missing_reason
        return f"{self.path} (sha256 {self.sha256[:12]}, {len(self.values)} rows)"

    def value(self, feature: int) -> float | None:
        """The feature's ``max_act`` (``None`` when the table has no row for it or there is no table)."""
        if self.values is None or int(feature) not in self.values.index:
            return None
        return float(self.values.loc[int(feature)])


def load_sae_max_act(path: str | Path | None) -> SAEMaxActTable:
    """The table at ``path``, or an unavailable one when no path is configured or the file does not exist.

    Raises:
        AxbenchDataError: the file exists but cannot be read or is malformed (see :func:`read_sae_max_act`).
    """
    if not path or not Path(path).exists():
        return SAEMaxActTable(str(path) if path else None)
    return read_sae_max_act(path)


def read_sae_max_act(path: str | Path) -> SAEMaxActTable:
    """Read and check a ``.csv`` / ``.parquet`` / ``.jsonl`` (or ``.json`` records) max-activation table.

    Raises:
        AxbenchDataError: one line naming the file (and the column): not a file, an unknown suffix, unreadable,
            no rows, a missing column, an ``sae_id`` that is not a whole number ≥ 0, a duplicate ``sae_id``, or a
            ``max_act`` that is not a finite number.
    """
    path = Path(path)
    where = f"sae_max_act: {path}"
    if not path.is_file():
        raise AxbenchDataError(f"{where}: not a file")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise AxbenchDataError(f"{where}: unsupported file type {suffix!r} (use .csv, .parquet or .jsonl)")
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    except Exception as exc:  # parser / pyarrow errors: one readable line
        raise AxbenchDataError(f"{where}: cannot be read ({type(exc).__name__}: {exc})") from exc
    frame = frame.rename(
        columns={k: v for k, v in _NEURONPEDIA_NAMES.items() if k in frame.columns and v not in frame.columns}
    )
    for column in SAE_MAX_ACT_COLUMNS:
        if column not in frame.columns:
            raise AxbenchDataError(
                f"{where}: missing column {column!r} (have {sorted(map(str, frame.columns))}; a Neuronpedia "
                "export's 'index' / 'maxValue' are read as 'sae_id' / 'max_act')"
            )
    if frame.empty:
        raise AxbenchDataError(f"{where}: column 'sae_id': the table has no rows")
    ids = _feature_ids(frame["sae_id"], where)
    values = pd.to_numeric(frame["max_act"], errors="coerce").astype("float64")
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        shown = frame.loc[bad, "max_act"].tolist()[:_SHOWN]
        raise AxbenchDataError(
            f"{where}: column 'max_act': {int(bad.sum())} value(s) not a finite number, e.g. {shown} "
            f"at sae_id {ids[bad].tolist()[:_SHOWN]}"
        )
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise AxbenchDataError(
            f"{where}: column 'sae_id': {len(duplicated)} duplicate id(s), e.g. {duplicated[:_SHOWN]}"
        )
    series = pd.Series(values.to_numpy(), index=pd.Index(ids.to_numpy(), name="sae_id"), name="max_act")
    return SAEMaxActTable(str(path), series, _sha256(path))


def _feature_ids(column: pd.Series, where: str) -> pd.Series:
    """``column`` as int64 feature ids; every entry must be a whole number ≥ 0 (``"12"`` and ``12.0`` count)."""
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    finite = np.isfinite(numbers.to_numpy())
    whole = finite & (numbers.to_numpy() == np.floor(np.where(finite, numbers.to_numpy(), 0.0)))
    bad = ~whole | (numbers.to_numpy() < 0) | column.map(lambda v: isinstance(v, bool)).to_numpy()
    if bad.any():
        shown = column[bad].tolist()[:_SHOWN]
        raise AxbenchDataError(
            f"{where}: column 'sae_id': {int(bad.sum())} value(s) not a feature index (a whole number >= 0), "
            f"e.g. {shown}"
        )
    return numbers.astype("int64")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
