"""``ConceptListDataset``: the catalog's ``concept_list``, any of the three concept-list formats by extension.

``.json`` loads the raw Neuronpedia export (a list of objects: the node applies the first-description rule
and the source check), ``.csv`` (``concept,url``, header optional) and ``.txt`` (one concept per line) load
as :class:`~axbench_kedro.datagen.concepts.ConceptEntry` lists. Read-only.

Example (catalog)::

    concept_list:
      type: axbench_kedro.datagen.io.ConceptListDataset
      filepath: data/01_raw/concepts_demo.csv
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.datagen.concepts import ConceptEntry, read_concept_source

__all__ = ["ConceptListDataset"]

_SUFFIXES = (".json", ".csv", ".txt")


class ConceptListDataset(AbstractDataset[None, "list[dict[str, Any]] | list[ConceptEntry]"]):
    """Read a concept list file (see module docstring).

    Args:
        filepath: a ``.json`` Neuronpedia export, a ``.csv`` or a ``.txt`` file.
    """

    def __init__(self, filepath: str) -> None:
        self._filepath = PurePosixPath(str(filepath))
        if self._filepath.suffix.lower() not in _SUFFIXES:
            raise DatasetError(f"concept_list: {filepath} must end in one of {_SUFFIXES}")

    def load(self) -> list[dict[str, Any]] | list[ConceptEntry]:
        return read_concept_source(str(self._filepath))

    def save(self, data: None) -> None:
        raise DatasetError("concept_list is read-only")

    def _exists(self) -> bool:
        return Path(str(self._filepath)).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
