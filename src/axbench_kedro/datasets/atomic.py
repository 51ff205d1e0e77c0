"""Atomic saves for kedro-datasets' file datasets: write a temporary file beside the target, then ``os.replace``.

kedro-datasets opens the target path itself and writes into it, so a run killed in the middle of a save leaves a
truncated file under the final name (for a versioned dataset: the newest version, which the next run would load).
:class:`AtomicSaveMixin` points the parent's save at a hidden temporary file in the same folder and renames it onto
the target once complete: a reader sees the old file, the new one, or none, never half of one. Remote filesystems
(``s3://`` ...) publish objects whole already and keep the parent's behaviour.

Catalog example::

    training_summary:
      type: axbench_kedro.datasets.atomic.CSVDataset
      filepath: data/08_reporting/${globals:setting}/training_summary.csv
      versioned: true
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.text import TextDataset as _TextDataset

__all__ = ["AtomicSaveMixin", "CSVDataset", "JSONDataset", "MatplotlibDataset", "TextDataset"]

_LOCAL_PROTOCOLS = ("file", "local")


class AtomicSaveMixin:
    """Mixin for an fsspec-based kedro-datasets class whose ``save`` writes to ``self._get_save_path()``."""

    _atomic_tmp: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._atomic_tmp is not None:
            return self._atomic_tmp
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        # The parent's own save, without Kedro's wrapper (this method is wrapped already: versions resolve once).
        parent = super().save  # type: ignore[misc]
        raw = getattr(parent, "__wrapped__", None)
        write = parent if raw is None else lambda value: raw(self, value)
        if getattr(self, "_protocol", "file") not in _LOCAL_PROTOCOLS:
            write(data)
            return
        target = self._get_save_path()
        if Path(str(target)).is_dir():  # a folder of plots: nothing to rename onto
            write(data)
            return
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._atomic_tmp = tmp
        try:
            write(data)
            os.replace(str(tmp), str(target))
        finally:
            self._atomic_tmp = None
            if os.path.isdir(str(tmp)):  # a list or dict of plots writes a folder
                shutil.rmtree(str(tmp), ignore_errors=True)
            elif os.path.lexists(str(tmp)):
                os.unlink(str(tmp))


class CSVDataset(AtomicSaveMixin, _CSVDataset):
    """``pandas.CSVDataset`` with an atomic save (same arguments)."""


class JSONDataset(AtomicSaveMixin, _JSONDataset):
    """``json.JSONDataset`` with an atomic save (same arguments)."""


class TextDataset(AtomicSaveMixin, _TextDataset):
    """``text.TextDataset`` with an atomic save (same arguments)."""


class MatplotlibDataset(AtomicSaveMixin, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` with an atomic save of a single figure (same arguments)."""
