"""Catalog entry for a GemmaScope SAE ``params.npz`` that may be absent (the embedded default has none).

``load()`` never reads the (multi-GB) arrays: it returns a :class:`~axbench_kedro.methods.sae.SAESource` that the
training node loads, checks against the model, or reports as missing (SAE / SAE-A are then skipped with that
reason).

Example (catalog):
    sae_params:
      type: axbench_kedro.datasets.sae_params.SAEParamsDataset
      filepath: data/01_raw/${globals:setting}/sae/params.npz
"""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from axbench_kedro.methods.sae_file import SAESource

__all__ = ["SAEParamsDataset"]


class SAEParamsDataset(AbstractDataset[None, SAESource]):
    """A lazily loaded, optional GemmaScope ``params.npz``.

    Args:
        filepath: the ``params.npz`` file; ``None`` = no SAE for this setting.
    """

    def __init__(self, *, filepath: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = filepath
        self.metadata = metadata

    def load(self) -> SAESource:
        return SAESource(self._filepath)

    def save(self, data: None) -> None:
        raise DatasetError("SAEParamsDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
