"""Read-only dataset: the results other model settings (Kedro envs) left under their own data folders.

Every environment writes its results to ``data/<layer>/<setting>/...``. The ``reporting`` pipeline takes the current
setting's results through the normal (versioned) catalog entries, so ``--load-versions`` pins them, and takes every
*other* setting's results through this dataset: it globs the setting folder of each configured source and reads it
with Kedro's own versioned ``pandas.ParquetDataset`` / ``pandas.CSVDataset``, so the latest version (or one pinned in
``load_versions``) is resolved by Kedro exactly as ``--load-versions`` resolves it for the current setting.

Why not dataset factories: a factory (``"{setting}.steering_summary"``) needs every dataset name in the pipeline when
it is built, but which settings have results is only known from the data folders at run time (a user may have run
one paper setting, or all four, or a setting of their own). The dynamic part - which setting folders exist - is the
only thing done here; loading and version lookup are Kedro's.

Catalog example (``{setting}`` marks the setting folder)::

    results_across_settings:
      type: axbench_kedro.datasets.results_across_settings.ResultsAcrossSettingsDataset
      current_setting: ${globals:setting}
      sources:
        steering_selection: {filepath: data/08_reporting/{setting}/steering_selection.parquet}
        latent_metrics: {filepath: data/08_reporting/{setting}/latent_metrics.parquet}
      load_versions: {gemma2_2b_l20: {steering_selection: 2025-06-01T10.00.00.000Z}}

``load()`` returns ``{source_name: DataFrame}`` (each frame gains a ``setting`` column and is empty when no other
setting has that result) plus ``"sources"``: one row per file read (``setting, dataset, version, filepath``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from kedro.io.core import VersionNotFoundError
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from axbench_kedro.errors import AxbenchConfigError

try:  # kedro-viz preview type (plain dict at runtime)
    from kedro_datasets._typing import TablePreview
except ImportError:  # pragma: no cover - kedro-datasets always ships it here
    TablePreview = dict  # type: ignore[misc,assignment]

__all__ = ["ResultsAcrossSettingsDataset", "SOURCES_KEY"]

logger = logging.getLogger(__name__)

SOURCES_KEY = "sources"
_PLACEHOLDER = "{setting}"
_READERS: dict[str, type[AbstractVersionedDataset]] = {".parquet": ParquetDataset, ".csv": CSVDataset}
_SOURCE_COLUMNS = ["setting", "dataset", "version", "filepath"]


class ResultsAcrossSettingsDataset(AbstractDataset[None, dict[str, pd.DataFrame]]):
    """Latest (or pinned) results of every setting folder except the current one.

    Args:
        sources: ``{name: {"filepath": template}}`` (or ``{name: template}``); the template holds ``{setting}``
            as one whole path component and ends in ``.parquet`` or ``.csv``. A template path that is a folder
            is read as a Kedro-versioned dataset (``<path>/<timestamp>/<file name>``), a file as unversioned.
        current_setting: the running environment's setting, skipped (its results come through the catalog).
            ``None`` keeps every setting.
        load_versions: optional pins ``{setting: {name: timestamp}}``; unpinned sources load their latest version.
        metadata: free-form metadata (kedro-viz reads ``kedro-viz`` keys from it).

    Raises:
        AxbenchConfigError: a template without exactly one ``{setting}`` component or with an unknown file type.
    """

    def __init__(
        self,
        *,
        sources: dict[str, Any],
        current_setting: str | None = None,
        load_versions: dict[str, dict[str, str]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not sources:
            raise AxbenchConfigError("results_across_settings.sources: at least one source is required")
        self._templates = {name: _template_of(name, spec) for name, spec in sources.items()}
        if SOURCES_KEY in self._templates:
            raise AxbenchConfigError(f"results_across_settings.sources: the name {SOURCES_KEY!r} is reserved")
        self._current = current_setting
        self._pins = {
            str(k): {str(n): str(v) for n, v in (d or {}).items()} for k, d in (load_versions or {}).items()
        }
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "sources": dict(self._templates),
            "current_setting": self._current,
            "load_versions": self._pins,
        }

    def _plan(self) -> list[dict[str, str]]:
        """One record per file to read: ``setting, dataset, version, filepath`` (current setting left out)."""
        records: list[dict[str, str]] = []
        for name, template in self._templates.items():
            for setting, path in _find_settings(template):
                if setting == self._current:
                    continue
                located = _locate(path, self._pins.get(setting, {}).get(name), name=name, setting=setting)
                if located is not None:
                    version, file = located
                    records.append(
                        {"setting": setting, "dataset": name, "version": version, "filepath": str(file)}
                    )
        return records

    def load(self) -> dict[str, pd.DataFrame]:
        """Read every other setting's copy of every source.

        Returns:
            ``{name: frame with a setting column}`` and ``{"sources": files read}``.
        """
        plan = self._plan()
        frames: dict[str, pd.DataFrame] = {}
        for name in self._templates:
            parts = []
            for record in (r for r in plan if r["dataset"] == name):
                frame = _read(record)
                setting = record["setting"]
                if "setting" in frame.columns and not frame["setting"].astype(str).eq(setting).all():
                    logger.warning(
                        "%s: column 'setting' differs from its folder %r; using the folder",
                        record["filepath"],
                        setting,
                    )
                parts.append(frame.assign(setting=setting))
            frames[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"setting": []})
        frames[SOURCES_KEY] = pd.DataFrame(plan, columns=_SOURCE_COLUMNS)
        return frames

    def save(self, data: dict[str, pd.DataFrame]) -> None:
        """Not supported: each setting's own pipelines write its results."""
        raise DatasetError(
            "ResultsAcrossSettingsDataset is read-only; each environment writes its own results"
        )

    def _exists(self) -> bool:
        return True

    def preview(self, nrows: int = 20) -> TablePreview:
        """kedro-viz preview: which settings' results (and versions) the report would read.

        Args:
            nrows: rows shown at most.

        Returns:
            The ``sources`` table in pandas ``split`` orientation.
        """
        frame = pd.DataFrame(self._plan()[:nrows], columns=_SOURCE_COLUMNS)
        return TablePreview(frame.to_dict(orient="split"))


def _template_of(name: str, spec: Any) -> str:
    template = spec.get("filepath") if isinstance(spec, dict) else spec
    if not isinstance(template, str):
        raise AxbenchConfigError(f"results_across_settings.sources.{name}: a 'filepath' string is required")
    parts = Path(template).parts
    if sum(part == _PLACEHOLDER for part in parts) != 1 or template.count(_PLACEHOLDER) != 1:
        raise AxbenchConfigError(
            f"results_across_settings.sources.{name}.filepath must hold '{_PLACEHOLDER}' as one folder name, "
            f"got {template!r}"
        )
    if Path(template).suffix not in _READERS:
        raise AxbenchConfigError(
            f"results_across_settings.sources.{name}.filepath: unsupported file type {Path(template).suffix!r} "
            f"(use one of {sorted(_READERS)})"
        )
    return template


def _find_settings(template: str) -> list[tuple[str, Path]]:
    """``(setting, path)`` for every existing setting folder matching the template, sorted by setting."""
    parts = Path(template).parts
    index = parts.index(_PLACEHOLDER)
    base = Path(*parts[:index]) if index else Path(".")
    if not base.is_dir():
        return []
    found: list[tuple[str, Path]] = []
    for folder in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name):
        path = folder.joinpath(*parts[index + 1 :])
        if path.exists():
            found.append((folder.name, path))
    return found


def _dataset(path: Path, version: Version | None) -> AbstractVersionedDataset:
    return _READERS[path.suffix](filepath=str(path), version=version)


def _locate(path: Path, pinned: str | None, *, name: str, setting: str) -> tuple[str, Path] | None:
    """``(version, file)`` to read for one setting; ``None`` when a versioned folder holds no version yet.

    A folder is a Kedro-versioned dataset: Kedro resolves its latest (or the pinned) version.
    """
    if path.is_file():
        if pinned:
            raise AxbenchConfigError(
                f"results_across_settings.load_versions.{setting}.{name}: {path} is not versioned"
            )
        return ("unversioned", path)
    dataset = _dataset(path, Version(pinned, None))
    try:
        version = dataset.resolve_load_version()
    except VersionNotFoundError:
        return None
    file = Path(dataset._get_load_path())  # noqa: SLF001 - the path Kedro will read, for the sources table
    if pinned and not dataset.exists():
        raise AxbenchConfigError(
            f"results_across_settings.load_versions.{setting}.{name}: version {pinned!r} not found ({file})"
        )
    return (str(version), file)


def _read(record: dict[str, str]) -> pd.DataFrame:
    """Load one planned file through its Kedro dataset."""
    file = Path(record["filepath"])
    if record["version"] == "unversioned":
        dataset = _dataset(file, None)
    else:  # <folder>/<version>/<name>: the versioned dataset at <folder>, pinned to that version
        dataset = _dataset(file.parent.parent, Version(record["version"], None))
    try:
        return dataset.load()
    except Exception as exc:  # noqa: BLE001 - one readable error naming the file
        raise DatasetError(f"results_across_settings: cannot read {file}: {exc}") from exc
