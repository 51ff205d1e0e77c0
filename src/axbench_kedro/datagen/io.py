"""Catalog datasets of datagen: the concept list (any format) and protocol-checked parquet tables.

* ``ConceptListDataset``: the catalog's ``concept_list``, any of the three concept-list formats by extension.
* ``ProtocolParquetDataset``: ``pandas.ParquetDataset`` with the §1 schema check on load and save.
* ``SeedPoolsDataset``: the paper's seed instruction pools built from local copies of the upstream datasets.
* ``ProvidedTableDataset``: a released ``train/data.parquet`` / ``test/data.parquet`` used instead of generating
  (the catalog's ``provided_train_data`` / ``provided_latent_eval_data``); loads ``None`` when not configured.

Concept lists:

``.json`` loads the raw Neuronpedia export (a list of objects: the node applies the first-description rule
and the source check), ``.csv`` (``concept,url``, header optional) and ``.txt`` (one concept per line) load
as :class:`~axbench_kedro.datagen.concepts.ConceptEntry` lists. Read-only. Files are UTF-8 (a byte-order mark is
dropped); a file that is not UTF-8, holds no concept or is a CSV whose header has no ``concept`` column raises
:class:`ProtocolDataError` naming the file, before anything is generated.

Example (catalog)::

    concept_list:
      type: axbench_kedro.datagen.io.ConceptListDataset
      filepath: data/01_raw/concepts_demo.csv
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.datagen.concepts import (
    ConceptEntry,
    check_not_empty,
    concept_entries,
    parse_concept_csv,
    parse_concept_txt,
    parse_neuronpedia,
)
from axbench_kedro.datagen.schemas import SCHEMAS, validate_table
from axbench_kedro.datagen.upstream import read_any, seed_pools_from_upstream
from axbench_kedro.datasets.parquet import ParquetDataset
from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "ConceptListDataset",
    "ProtocolParquetDataset",
    "ProtocolDataError",
    "SeedPoolsDataset",
    "ProvidedTableDataset",
    "read_table",
    "read_concept_source",
    "read_concept_file",
]


class ProtocolDataError(AxbenchDataError, DatasetError):
    """A data error raised by a dataset (schema, concept list): Kedro passes ``DatasetError`` subclasses on
    unchanged, and the project CLI prints it as one line."""


def _checked(frame: pd.DataFrame, schema: str, source: str) -> pd.DataFrame:
    try:
        return validate_table(frame, schema, source)
    except AxbenchDataError as exc:
        raise ProtocolDataError(str(exc)) from None


_SUFFIXES = (".json", ".csv", ".txt")


def _read_utf8(path: Path) -> str:
    """The file's text; a UTF-8 byte-order mark is dropped, any other encoding is one error naming the file."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise AxbenchDataError(
            f"{path}: not UTF-8 text (byte 0x{byte} at offset {exc.start}); save the concept list as UTF-8"
        ) from None


def read_concept_source(path: str | Path) -> list[dict[str, Any]] | list[ConceptEntry]:
    """Read a concept list file by extension, undigested for JSON.

    ``.json`` gives the decoded Neuronpedia list (checked here, but the first-description rule and the source
    check are applied by :func:`concept_entries`); ``.csv`` (``concept,url``, header optional) and ``.txt`` give
    entries. A UTF-8 byte-order mark is dropped.

    Raises:
        AxbenchDataError: one line naming the file: missing, not UTF-8, invalid JSON, a CSV header without a
            ``concept`` column, no concepts at all, or an unsupported extension.
    """
    path = Path(path)
    if not path.is_file():
        raise AxbenchDataError(f"{path}: concept list not found (catalog entry concept_list)")
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise AxbenchDataError(f"{path}: unsupported concept list type {suffix!r} (use .json, .csv or .txt)")
    text = _read_utf8(path)
    if suffix == ".json":
        try:
            records = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise AxbenchDataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        check_not_empty(parse_neuronpedia(records, str(path)), str(path))
        return records
    entries = parse_concept_csv(text, str(path)) if suffix == ".csv" else parse_concept_txt(text, str(path))
    check_not_empty(entries, str(path))
    return entries


def read_concept_file(path: str | Path, expected_source: str | None = None) -> list[ConceptEntry]:
    """Concept entries of a ``.json`` (Neuronpedia), ``.csv`` (concept,url) or ``.txt`` file."""
    return concept_entries(read_concept_source(path), str(path), expected_source)


class ConceptListDataset(AbstractDataset[None, "list[dict[str, Any]] | list[ConceptEntry]"]):
    """Read a concept list file (see module docstring).

    Args:
        filepath: a ``.json`` Neuronpedia export, a ``.csv`` or a ``.txt`` file.
        metadata: free-form metadata (kedro-viz reads its ``layer`` from it).
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self.metadata = metadata
        self._filepath = PurePosixPath(str(filepath))
        if self._filepath.suffix.lower() not in _SUFFIXES:
            raise DatasetError(f"concept_list: {filepath} must end in one of {_SUFFIXES}")

    def load(self) -> list[dict[str, Any]] | list[ConceptEntry]:
        """The concepts of the file (raw records for ``.json``).

        Raises:
            ProtocolDataError: one line naming the file (missing, not UTF-8, no concepts, a CSV header without a
                ``concept`` column, ...); Kedro passes it on unchanged.
        """
        try:
            return read_concept_source(str(self._filepath))
        except AxbenchDataError as exc:
            raise ProtocolDataError(str(exc)) from None

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
        metadata: free-form metadata (kedro-viz reads its ``layer`` from it).
    """

    def __init__(
        self,
        *,
        dolly: str,
        gsm8k: str,
        python_code: str,
        per_split: int = 1000,
        max_chars: int = 500,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.metadata = metadata
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


def read_table(path: str | Path, kind: str) -> pd.DataFrame:
    """Read a parquet / CSV / JSONL file and validate it as ``kind`` (what :class:`ProvidedTableDataset` loads).

    Raises:
        AxbenchDataError: the file is missing, unreadable or not in the protocol layout (one line naming the
            file and, for layout errors, the column).
    """
    path = Path(path)
    if not path.is_file():
        raise AxbenchDataError(f"{path}: file not found ({kind})")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in {".jsonl", ".json"}:
            frame = pd.read_json(path, lines=suffix == ".jsonl")
        else:
            raise AxbenchDataError(f"{path}: unsupported file type {suffix!r} (use .parquet, .csv or .jsonl)")
    except AxbenchDataError:
        raise
    except Exception as exc:  # pyarrow / parser errors: one readable line
        raise AxbenchDataError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    return validate_table(frame, kind, str(path))


class ProvidedTableDataset(AbstractDataset[None, "pd.DataFrame | None"]):
    """A released (or earlier) protocol table that datagen validates and passes through instead of generating.

    Catalog example (``conf/base/catalog_datagen.yml``; the path is usually set in ``conf/<env>/globals.yml``)::

        provided_train_data:
          type: axbench_kedro.datagen.io.ProvidedTableDataset
          schema: train_data
          filepath: ${globals:provided.train_data,null}

    Args:
        schema: ``train_data`` or ``latent_eval_data`` (protocol §1.2, §1.3).
        filepath: a ``.parquet`` (released layout), ``.csv`` or ``.jsonl`` file; ``None`` or empty = nothing
            provided, ``load()`` returns ``None`` and datagen generates the table.
        metadata: free-form metadata (kedro-viz).

    Raises:
        ProtocolDataError: on load, a missing or unreadable file or a table not in the protocol layout (one line
            naming the file and the column).
    """

    _SCHEMAS = ("train_data", "latent_eval_data")

    def __init__(
        self, *, schema: str, filepath: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        if schema not in self._SCHEMAS:
            raise DatasetError(
                f"ProvidedTableDataset `schema` must be one of {list(self._SCHEMAS)}, got {schema!r}"
            )
        self._schema = schema
        self._filepath = str(filepath) if filepath else None
        self.metadata = metadata

    def load(self) -> pd.DataFrame | None:
        if self._filepath is None:
            return None
        try:
            return read_table(self._filepath, self._schema)
        except AxbenchDataError as exc:
            raise ProtocolDataError(str(exc)) from None

    def save(self, data: pd.DataFrame | None) -> None:
        raise DatasetError(f"provided {self._schema} is read-only (datagen writes its own `{self._schema}`)")

    def _exists(self) -> bool:
        return self._filepath is None or Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"schema": self._schema, "filepath": self._filepath}
