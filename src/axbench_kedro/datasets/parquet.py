"""``pandas.ParquetDataset`` whose kedro-viz preview survives list-valued columns, saved atomically.

Protocol tables hold list-valued cells (per-token scores, token lists, factor grids). kedro-datasets' preview hands
kedro-viz the cells as NumPy arrays, which JSON cannot encode, so ``kedro viz build --include-previews`` fails on
them. This subclass changes the preview: array and list cells become short text, missing values ``None``. Saves
are atomic (temporary file + rename, ``datasets/atomic.py``): a killed run never leaves a truncated table.

Catalog example::

    latent_scores:
      type: axbench_kedro.datasets.parquet.ParquetDataset
      filepath: data/07_model_output/${globals:setting}/latent_scores.parquet
      versioned: true
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from kedro_datasets.pandas import ParquetDataset as _KedroParquetDataset

from axbench_kedro.datasets.atomic import AtomicSaveMixin

try:  # kedro-viz preview type (a plain dict at runtime)
    from kedro_datasets._typing import TablePreview
except ImportError:  # pragma: no cover - kedro-datasets always ships it here
    TablePreview = dict  # type: ignore[misc,assignment]

__all__ = ["ParquetDataset", "json_safe_cell"]

_MAX_CELL_CHARS = 120


def json_safe_cell(value: Any) -> Any:
    """A JSON-encodable stand-in for one preview cell.

    Example:
        >>> json_safe_cell(np.array([0.5, 1.0]))
        '[0.5, 1.0]'
        >>> json_safe_cell(float("nan")) is None
        True
    """
    if isinstance(value, np.ndarray | list | tuple | dict):
        items = value.tolist() if isinstance(value, np.ndarray) else value
        text = str(items)
        return text if len(text) <= _MAX_CELL_CHARS else text[: _MAX_CELL_CHARS - 1] + "…"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


class ParquetDataset(AtomicSaveMixin, _KedroParquetDataset):
    """``pandas.ParquetDataset`` with a JSON-safe kedro-viz preview and an atomic save (same arguments)."""

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first ``nrows`` rows in pandas ``split`` orientation, every cell JSON-encodable.

        Args:
            nrows: rows shown at most.
        """
        table = super().preview(nrows=nrows)
        table["data"] = [[json_safe_cell(cell) for cell in row] for row in table["data"]]
        table["index"] = [json_safe_cell(i) for i in table["index"]]
        table["columns"] = [str(c) for c in table["columns"]]
        return TablePreview(table)
