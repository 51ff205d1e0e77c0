"""Kedro dataset that hands nodes the loaded target model (read-only, loaded once per process).

Catalog entry::

    target_model:
      type: axbench_kedro.datasets.target_model.TargetModelDataset
      spec: ${globals:model}
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.loading import load_target_model, validate_spec
from axbench_kedro.lm.types import ModelSpec, TargetModel

__all__ = ["TargetModelDataset", "spec_from_dict"]

_FIELDS = tuple(f.name for f in fields(ModelSpec))


def spec_from_dict(spec: dict[str, Any] | ModelSpec) -> ModelSpec:
    """Build a ``ModelSpec`` from a ``model:`` config block; unknown or mistyped keys name ``model.<key>``."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, dict):
        raise AxbenchConfigError(
            f"model: expected a mapping with keys {', '.join(_FIELDS)}, got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - set(_FIELDS))
    if unknown:
        raise AxbenchConfigError(f"model.{unknown[0]}: unknown key (allowed: {', '.join(_FIELDS)})")
    for key in ("source", "name_or_path", "dtype", "device"):
        if key in spec and not isinstance(spec[key], str):
            raise AxbenchConfigError(f"model.{key}: must be a string, got {spec[key]!r}")
    for key in ("gguf_file", "cache_dir"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise AxbenchConfigError(f"model.{key}: must be a string or null, got {spec[key]!r}")
    return ModelSpec(**spec)


class TargetModelDataset(AbstractDataset[TargetModel, TargetModel]):
    """Loads the target model described by ``spec`` (validated at construction, loaded lazily and memoized)."""

    def __init__(self, spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        self._spec = spec_from_dict(spec or {})
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
        return {f: getattr(self._spec, f) for f in _FIELDS}
