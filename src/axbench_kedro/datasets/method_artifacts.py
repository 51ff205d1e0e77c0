"""Kedro datasets of the methods: versioned trained artefacts and a content-addressed cache.

* :class:`MethodArtifactsDataset` — versioned; each version is a folder holding ``<method>.safetensors`` (the
  tensors; absent when a method has none) and ``<method>.json`` (metadata: method, setting, layer, d, seed,
  hyperparameters, concept_ids, status, skip_reason, …) plus ``index.json`` (method order). ``load()`` returns
  ``{method: MethodArtifact}``. A method whose rows are files (SFT: a model copy per concept) gets a
  ``<method>.rows/<concept_id>.safetensors`` folder instead, hard-linked from the training cache when possible and
  read one concept at a time.
* :class:`ArtifactStore` / :class:`ArtifactStoreDataset` — an on-disk store keyed by content hash, holding
  per-concept training results and scored frames, so a rerun with unchanged inputs recomputes nothing.

Why one dataset for all methods rather than a dataset factory per method: the method list is a parameter, and a
Kedro pipeline's outputs are fixed before parameters are read; one folder per version also keeps every method of a
run together (the steering pipeline loads them as one consistent set).

Example (catalog):
    method_artifacts:
      type: axbench_kedro.datasets.method_artifacts.MethodArtifactsDataset
      path: data/06_models/${globals:setting}/method_artifacts
      versioned: true
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import torch
from kedro.io.core import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from safetensors.torch import load_file, save_file

from axbench_kedro.methods.base import MethodArtifact, RowFile

__all__ = [
    "ROW_FILE",
    "MethodArtifactsDataset",
    "ArtifactStore",
    "ArtifactStoreDataset",
    "save_artifacts",
    "load_artifacts",
    "file_sha256",
]

ROW_FILE = "__row_file__"  # key of a lazily read entry's RowFile (ArtifactStore.get(lazy=True))


def _safe_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors that own their storage (what safetensors accepts), copying only those that do not:
    a row can be a whole model, and an unconditional copy would hold it twice while it is written."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in tensors.items():
        t = value.detach().cpu().contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.nbytes or t.storage_offset():
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _rows_folder(name: str) -> str:
    return f"{name}.rows"


def _link_or_copy(source: str, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (files in the store and the artifact are never rewritten in place, so a
    link is safe and free); copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def save_artifacts(folder: Path, artifacts: dict[str, MethodArtifact]) -> None:
    """Write ``artifacts`` into ``folder`` (created): one ``.safetensors`` + ``.json`` per method, and for a method
    with row files a ``<method>.rows/`` folder holding ``<concept_id>.safetensors`` per concept."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, art in artifacts.items():
        if "/" in name or name.startswith("."):
            raise DatasetError(f"method name {name!r} cannot be used as a file name")
        if art.tensors:
            save_file(_safe_tensors(art.tensors), str(folder / f"{name}.safetensors"))
        meta = dict(art.meta, method=art.method, fingerprint=art.fingerprint())
        if art.row_files:
            rows = folder / _rows_folder(name)
            rows.mkdir()
            for concept_id, row in art.row_files.items():
                _link_or_copy(row.path, rows / f"{concept_id}.safetensors")
            meta["row_files"] = {str(c): r.sha256 for c, r in art.row_files.items()}
        (folder / f"{name}.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
    (folder / "index.json").write_text(json.dumps({"methods": list(artifacts)}), encoding="utf-8")


def load_artifacts(folder: Path) -> dict[str, MethodArtifact]:
    """Read what :func:`save_artifacts` wrote (method order kept); row files stay on disk until a concept is read."""
    index = folder / "index.json"
    if not index.is_file():
        raise DatasetError(f"{folder} is not a method_artifacts folder (no index.json)")
    out: dict[str, MethodArtifact] = {}
    for name in json.loads(index.read_text(encoding="utf-8"))["methods"]:
        meta = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
        weights = folder / f"{name}.safetensors"
        tensors = load_file(str(weights)) if weights.is_file() else {}
        row_files: dict[int, RowFile] = {}
        for concept_id, sha in meta.pop("row_files", {}).items():
            path = folder / _rows_folder(name) / f"{concept_id}.safetensors"
            if not path.is_file():
                raise DatasetError(f"{path}: row file of {name} concept_id {concept_id} is missing")
            row_files[int(concept_id)] = RowFile(str(path), sha)
        out[name] = MethodArtifact(method=name, tensors=tensors, meta=meta, row_files=row_files)
    return out


class MethodArtifactsDataset(AbstractVersionedDataset[dict[str, MethodArtifact], dict[str, MethodArtifact]]):
    """Versioned folder of trained method artefacts (``{method: MethodArtifact}``).

    Args:
        path: folder; with versioning each save goes to ``path/<version>/<name>/``.
        version: Kedro version (set by the catalog when ``versioned: true``).
        metadata: free-form metadata (ignored).
    """

    def __init__(self, *, path: str, version: Version | None = None, metadata: dict[str, Any] | None = None):
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(Path(path).as_posix()),
            version=version,
            exists_function=os.path.exists,
            glob_function=glob.glob,
        )

    def load(self) -> dict[str, MethodArtifact]:
        return load_artifacts(Path(str(self._get_load_path())))

    def save(self, data: dict[str, MethodArtifact]) -> None:
        target = Path(str(self._get_save_path()))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        try:
            save_artifacts(tmp, data)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).is_dir()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._filepath), "version": self._version}


class ArtifactStore:
    """Content-addressed store: ``key`` → a dict of tensors and JSON-able values, or a set of data frames.

    Writes are atomic (temporary file + rename), so an interrupted run leaves complete entries only.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _base(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, *, lazy: bool = False) -> dict[str, Any] | None:
        """The entry stored under ``key``, or ``None``.

        With ``lazy`` the tensors stay in their file: the entry holds a :class:`RowFile` of it under
        :data:`ROW_FILE` instead (a row of a :attr:`~axbench_kedro.methods.base.Method.rows_on_disk` method).
        """
        base = self._base(key)
        meta = base.with_suffix(".json")
        if not meta.is_file():
            return None
        values: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
        tensor_file = base.with_suffix(".safetensors")
        sha = values.pop("__tensors_sha256__", None)
        if values.pop("__has_tensors__", False):
            if not tensor_file.is_file():
                return None
            if lazy:
                values[ROW_FILE] = RowFile(str(tensor_file), sha or file_sha256(tensor_file))
            else:
                values.update(load_file(str(tensor_file)))
        return values

    def put(self, key: str, values: dict[str, Any]) -> None:
        """Store ``values`` (tensors go to safetensors, with the file's SHA-256 in the JSON; the rest to JSON)."""
        base = self._base(key)
        base.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}
        rest = {k: v for k, v in values.items() if not isinstance(v, torch.Tensor)}
        if tensors:
            digest: list[str] = []

            def write(path: Path) -> None:
                save_file(_safe_tensors(tensors), str(path))
                digest.append(file_sha256(path))

            self._atomic(base.with_suffix(".safetensors"), write)
            rest["__tensors_sha256__"] = digest[0]
        rest["__has_tensors__"] = bool(tensors)
        blob = json.dumps(rest, default=str)
        self._atomic(base.with_suffix(".json"), lambda p: p.write_text(blob, encoding="utf-8"))

    def get_frames(self, key: str) -> dict[str, pd.DataFrame] | None:
        """Frames stored under ``key`` by :meth:`put_frames`, or ``None``."""
        folder = self._base(key).with_suffix(".frames")
        index = folder / "index.json"
        if not index.is_file():
            return None
        names = json.loads(index.read_text(encoding="utf-8"))
        return {n: pd.read_parquet(folder / f"{n}.parquet") for n in names}

    def put_frames(self, key: str, frames: dict[str, pd.DataFrame]) -> None:
        """Store named data frames under ``key``."""
        folder = self._base(key).with_suffix(".frames")
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            self._atomic(folder / f"{name}.parquet", lambda p, f=frame: f.to_parquet(p, index=False))
        self._atomic(
            folder / "index.json", lambda p: p.write_text(json.dumps(list(frames)), encoding="utf-8")
        )

    @staticmethod
    def _atomic(path: Path, write: Any) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class ArtifactStoreDataset(AbstractDataset[None, ArtifactStore]):
    """Catalog handle of an :class:`ArtifactStore` folder (load-only; ``enabled: false`` loads ``None``).

    Args:
        path: the store's folder.
        enabled: ``False`` turns caching off.
    """

    def __init__(self, *, path: str, enabled: bool = True, metadata: dict[str, Any] | None = None) -> None:
        self._path = path
        self._enabled = enabled
        self.metadata = metadata

    def load(self) -> ArtifactStore | None:
        return ArtifactStore(self._path) if self._enabled else None

    def save(self, data: None) -> None:
        raise DatasetError("ArtifactStoreDataset is read-only: nodes write through the store object")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "enabled": self._enabled}
