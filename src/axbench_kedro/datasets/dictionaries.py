"""Catalog entry for the released AxBench dictionaries (protocol §3.16), a folder that may be absent.

``load()`` reads nothing: it returns a :class:`~axbench_kedro.methods.dictionary_file.DictionarySource` whose
dictionaries (``<path>/<folder>/l<L>/weight.pt`` + ``metadata.jsonl`` [+ ``acts.json``]) the ``Dictionary(...)``
methods read when they train; a missing folder skips them with the reason.

Example (catalog):
    released_dictionaries:
      type: axbench_kedro.datasets.dictionaries.ReleasedDictionariesDataset
      path: data/01_raw/dictionaries/${globals:setting}
"""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from axbench_kedro.methods.dictionary_file import DictionarySource

__all__ = ["ReleasedDictionariesDataset"]


class ReleasedDictionariesDataset(AbstractDataset[None, DictionarySource]):
    """A lazily read, optional folder of released dictionaries.

    Args:
        path: the root folder (one sub-folder per dictionary); ``None`` = none for this setting.
    """

    def __init__(self, *, path: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path = path
        self.metadata = metadata

    def load(self) -> DictionarySource:
        return DictionarySource(self._path)

    def save(self, data: None) -> None:
        raise DatasetError("ReleasedDictionariesDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
