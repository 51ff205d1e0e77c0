"""Where the per-concept tensors of a :attr:`~axbench_kedro.methods.base.Method.rows_on_disk` method go while it
trains: each concept's tensors are written to a file the moment the concept finishes, and the trainer keeps only a
:class:`~axbench_kedro.methods.base.RowFile` (path + SHA-256), so memory stays that of one concept.

The file is the training cache's own entry when the cache is on (nothing is written twice, and the artifact folder
hard-links it); with the cache off it goes to a temporary folder (under ``TMPDIR``) that is removed once no artifact
refers to it any more.

Example:
    >>> spool = RowSpool(store)
    >>> held = spool.keep(key, {"sft.w": weights, "train_loss": [0.5]})
    >>> held[ROW_FILE].load()["sft.w"].shape  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from typing import Any

from axbench_kedro.datasets.method_artifacts import ROW_FILE, ArtifactStore

__all__ = ["ROW_FILE", "RowSpool"]


class _TemporaryFolder:
    """A folder removed when the last object referring to this handle is gone (never by an unpickled copy)."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="axbench-rows-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.path, True)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]


class RowSpool:
    """Writes rows to files as they are trained and reads cached ones back without loading their tensors.

    Args:
        store: the training cache (an :class:`ArtifactStore`), or ``None`` when caching is off.
    """

    def __init__(self, store: ArtifactStore | None) -> None:
        self.store = store
        self._folder: _TemporaryFolder | None = None
        self._scratch: ArtifactStore | None = None

    def _target(self) -> tuple[ArtifactStore, Any]:
        if self.store is not None:
            return self.store, None
        if self._scratch is None:
            self._folder = _TemporaryFolder()
            self._scratch = ArtifactStore(self._folder.path)
        return self._scratch, self._folder

    def keep(self, key: str, row: dict[str, Any]) -> dict[str, Any]:
        """Write ``row``'s tensors under ``key`` now; returns its other values plus its ``RowFile`` under
        :data:`ROW_FILE` (the caller drops the tensors)."""
        target, owner = self._target()
        target.put(key, row)
        held = target.get(key, lazy=True)
        if held is None:  # pragma: no cover - put wrote it a moment ago
            raise RuntimeError(f"row {key} vanished from {target.root}")
        if ROW_FILE in held and owner is not None:
            row_file = held[ROW_FILE]
            held[ROW_FILE] = type(row_file)(row_file.path, row_file.sha256, owner)
        return held

    def cached(self, key: str) -> dict[str, Any] | None:
        """The cached row under ``key`` with its tensors left in their file, or ``None``."""
        return None if self.store is None else self.store.get(key, lazy=True)
