"""Catalog dataset handing nodes a persistent :class:`~axbench_kedro.cache.SQLiteCache` (e.g. the generation cache).

Catalog entry::

    generation_cache:
      type: axbench_kedro.datasets.sqlite_cache.SQLiteCacheDataset
      filepath: data/07_model_output/${globals:setting}/generation_cache.sqlite
      table: steered_generations

The node writes into the cache as it works (each batch commits on its own), so an interrupted run keeps what it
finished; the dataset itself is read-only for Kedro.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.cache import SQLiteCache

__all__ = ["SQLiteCacheDataset"]


class SQLiteCacheDataset(AbstractDataset[None, SQLiteCache]):
    """A SQLite key-value cache at ``filepath`` (one open connection per dataset instance).

    Args:
        filepath: database file; parents are created on load.
        table: table name inside the file.
        metadata: free-form metadata (kedro-viz).
    """

    def __init__(self, filepath: str, table: str = "cache", metadata: dict[str, Any] | None = None) -> None:
        if not table.isidentifier():
            raise DatasetError(f"SQLiteCacheDataset `table` must be an identifier, got {table!r}")
        self._filepath = str(filepath)
        self._table = table
        self._cache: SQLiteCache | None = None
        self.metadata = metadata

    def load(self) -> SQLiteCache:
        if self._cache is None:
            self._cache = SQLiteCache(self._filepath, table=self._table)
        return self._cache

    def save(self, data: SQLiteCache) -> None:
        raise DatasetError("SQLiteCacheDataset is read-only: nodes write into the loaded cache directly")

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "table": self._table}
