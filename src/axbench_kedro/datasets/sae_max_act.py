"""Catalog entry for the optional Neuronpedia max-activation table of a setting's SAE (protocol §1.5, [D 13]).

``load()`` returns a :class:`~axbench_kedro.detection.sae_max_act.SAEMaxActTable`: the checked table, or — when no
path is configured or the file does not exist — an unavailable one (SAE / SAE-A then steer with the latent-eval
magnitude rule and are labelled "(AxBench max-act)"). A file that exists but is malformed stops the run with one
line naming the file and the column.

Example (catalog):
    sae_max_act:
      type: axbench_kedro.datasets.sae_max_act.SAEMaxActDataset
      filepath: data/01_raw/${globals:setting}/sae_max_act.csv
"""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from axbench_kedro.datagen.io import ProtocolDataError
from axbench_kedro.detection.sae_max_act import SAEMaxActTable, load_sae_max_act
from axbench_kedro.errors import AxbenchDataError

__all__ = ["SAEMaxActDataset"]


class SAEMaxActDataset(AbstractDataset[None, SAEMaxActTable]):
    """An optional ``sae_id, max_act`` table (``.csv``, ``.parquet``, ``.jsonl``).

    Args:
        filepath: the table; ``None`` or a missing file = no table for this setting.
        metadata: free-form metadata (kedro-viz).
    """

    def __init__(self, *, filepath: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = str(filepath) if filepath else None
        self.metadata = metadata

    def load(self) -> SAEMaxActTable:
        try:
            return load_sae_max_act(self._filepath)
        except AxbenchDataError as exc:  # a DatasetError subclass: Kedro passes it on as one line
            raise ProtocolDataError(str(exc)) from None

    def save(self, data: None) -> None:
        raise DatasetError("SAEMaxActDataset is read-only")

    def _exists(self) -> bool:
        return True  # an absent file is a valid state ("no table"), not a missing input

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}
