"""Kedro dataset that hands nodes the loaded target model (read-only, loaded once per process).

Catalog entry::

    target_model:
      type: axbench_kedro.datasets.target_model.TargetModelDataset
      spec: ${globals:model}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.lm.loading import load_target_model, validate_spec
from axbench_kedro.lm.types import ModelSpec, TargetModel

__all__ = ["TargetModelDataset"]


class TargetModelDataset(AbstractDataset[TargetModel, TargetModel]):
    """Loads the target model described by ``spec`` (validated at construction, loaded lazily and memoized)."""

    def __init__(self, spec: Mapping[str, Any], metadata: dict[str, Any] | None = None) -> None:
        """Validate ``spec`` (the ``model:`` block of ``globals.yml``) without loading weights.

        Raises:
            pydantic.ValidationError: an unknown key, a wrong type or value (located at ``model.<key>``).
            AxbenchConfigError: missing weights or files, CUDA requested but absent.
        """
        self._spec = ModelSpec.from_config(spec or {})
        validate_spec(self._spec)
        self.metadata = metadata

    @property
    def spec(self) -> ModelSpec:
        """The validated model spec."""
        return self._spec

    def load(self) -> TargetModel:
        return load_target_model(self._spec)

    def save(self, data: TargetModel) -> None:
        raise DatasetError(
            "TargetModelDataset is read-only: the target model is an input, never written by a node"
        )

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return self._spec.model_dump()
