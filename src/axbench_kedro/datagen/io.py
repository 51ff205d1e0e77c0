"""Catalog datasets of datagen: the concept list (any format) and protocol-checked parquet tables.

* ``ConceptListDataset``: the catalog's ``concept_list``, any of the three concept-list formats by extension.
* ``ProtocolParquetDataset``: ``pandas.ParquetDataset`` with the §1 schema check on load and save.
* ``SeedPoolsDataset``: the paper's seed instruction pools built from local copies of the upstream datasets.

Concept lists:

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

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.pandas import ParquetDataset

from axbench_kedro.datagen.concepts import ConceptEntry, read_concept_source
from axbench_kedro.datagen.schemas import SCHEMAS, validate_table
from axbench_kedro.datagen.upstream import read_any, seed_pools_from_upstream
from axbench_kedro.errors import AxbenchDataError

__all__ = ["ConceptListDataset", "ProtocolParquetDataset", "ProtocolDataError", "SeedPoolsDataset"]


class ProtocolDataError(AxbenchDataError, DatasetError):
    """A schema error raised by a dataset: Kedro passes ``DatasetError`` subclasses on unchanged (one line)."""


def _checked(frame: pd.DataFrame, schema: str, source: str) -> pd.DataFrame:
    try:
        return validate_table(frame, schema, source)
    except AxbenchDataError as exc:
        raise ProtocolDataError(str(exc)) from None


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


class ProtocolParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` that checks the protocol schema (§1) on every load and save.

    Released AxBench files load unchanged; a missing column, a wrong dtype or a ``concept_id`` with two
    concept texts raises :class:`~axbench_kedro.errors.AxbenchDataError` naming the file and the column. Point
    ``filepath`` at a released ``train/data.parquet`` (``versioned: false``) to use it instead of generating.

    Args:
        schema: ``concepts_meta``, ``train_data``, ``latent_eval_data`` or ``preference_data``.
        **kwargs: passed to ``pandas.ParquetDataset`` (``filepath``, ``versioned``, ...).
    """

    def __init__(self, *, schema: str, **kwargs: Any) -> None:
        if schema not in SCHEMAS:
            raise DatasetError(
                f"ProtocolParquetDataset `schema` must be one of {sorted(SCHEMAS)}, got {schema!r}"
            )
        super().__init__(**kwargs)
        self._schema = schema

    def load(self) -> pd.DataFrame:
        frame = super().load()
        return _checked(frame, self._schema, str(self._get_load_path()))

    def save(self, data: pd.DataFrame) -> None:
        _checked(data, self._schema, str(self._filepath))
        super().save(data)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "schema": self._schema}


class SeedPoolsDataset(AbstractDataset[None, pd.DataFrame]):
    """The paper's seed pools (§2.2) built on load from local copies of the three upstream datasets.

    Catalog example (e.g. ``conf/gemma2_2b_l10/catalog.yml``)::

        seed_instructions:
          type: axbench_kedro.datagen.io.SeedPoolsDataset
          dolly: data/01_raw/upstream/databricks-dolly-15k.jsonl
          gsm8k: data/01_raw/upstream/gsm8k_train.jsonl
          python_code: data/01_raw/upstream/python_code_instructions_18k_alpaca.json

    Args:
        dolly: databricks-dolly-15k (``.jsonl``/``.json``/``.parquet``/``.csv``).
        gsm8k: GSM8K train split.
        python_code: python_code_instructions_18k_alpaca.
        per_split: instructions per split (paper: 1000).
        max_chars: instructions must be shorter than this (paper: 500).
    """

    def __init__(
        self, *, dolly: str, gsm8k: str, python_code: str, per_split: int = 1000, max_chars: int = 500
    ) -> None:
        self._paths = {"dolly": str(dolly), "gsm8k": str(gsm8k), "python_code": str(python_code)}
        self._per_split = int(per_split)
        self._max_chars = int(max_chars)

    def load(self) -> pd.DataFrame:
        try:
            frames = {name: read_any(path) for name, path in self._paths.items()}
            return seed_pools_from_upstream(**frames, per_split=self._per_split, max_chars=self._max_chars)
        except AxbenchDataError as exc:
            raise ProtocolDataError(str(exc)) from None

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError("seed_instructions built from upstream files is read-only")

    def _exists(self) -> bool:
        return all(Path(p).is_file() for p in self._paths.values())

    def _describe(self) -> dict[str, Any]:
        return {**self._paths, "per_split": self._per_split, "max_chars": self._max_chars}
