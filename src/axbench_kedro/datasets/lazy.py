"""Catalog dataset that defers building and loading another dataset until a node actually uses it.

Kedro loads every node input before the node runs. A node that needs an LLM client only in some configurations
(the steering judge: ``kind: llm`` yes, ``kind: proxy`` no) takes the lazy handle instead, so a proxy run never
builds the client and never asks for an API key.

Catalog entry::

    judge_llm:
      type: axbench_kedro.datasets.lazy.LazyDataset
      dataset:
        type: axbench_kedro.datasets.llm_client.LLMClientDataset
        backend: ${globals:judge.backend}
        model: ${globals:judge.model}
        credentials: openai

Example:
    >>> handle = catalog.load("judge_llm")   # nothing built yet
    >>> client = handle()                     # builds the inner dataset and loads it (once)
"""

from __future__ import annotations

import threading
from typing import Any

from kedro.io import AbstractDataset, DatasetError

__all__ = ["LazyDataset", "LazyHandle"]


class LazyHandle:
    """Zero-argument callable returning the inner dataset's data, built and loaded on the first call."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self._name = name
        self._config = dict(config)
        self._lock = threading.Lock()
        self._loaded = False
        self._data: Any = None

    def __call__(self) -> Any:
        with self._lock:
            if not self._loaded:
                dataset = AbstractDataset.from_config(self._name, dict(self._config))
                self._data = dataset.load()
                self._loaded = True
            return self._data

    @property
    def loaded(self) -> bool:
        """Whether the inner dataset was loaded."""
        return self._loaded

    def __repr__(self) -> str:
        return f"LazyHandle({self._name!r}, type={self._config.get('type')!r}, loaded={self._loaded})"


class LazyDataset(AbstractDataset[None, LazyHandle]):
    """Wraps a dataset config; ``load()`` returns a :class:`LazyHandle` (same handle every time).

    Args:
        dataset: the inner dataset's catalog config (must have ``type``); credentials inside it are resolved by
            Kedro as usual.
        metadata: free-form metadata (kedro-viz).
    """

    def __init__(self, dataset: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        if not isinstance(dataset, dict) or "type" not in dataset:
            raise DatasetError("LazyDataset `dataset` must be a dataset config with a `type`")
        self._config = dict(dataset)
        self._handle = LazyHandle(f"lazy:{dataset['type']}", self._config)
        self.metadata = metadata

    def load(self) -> LazyHandle:
        return self._handle

    def validate(self) -> None:
        """Build the inner dataset (not load it) and run its own ``validate()``, e.g. a credentials check."""
        inner = AbstractDataset.from_config(f"lazy:{self._config['type']}", dict(self._config))
        check = getattr(inner, "validate", None)
        if callable(check):
            check()

    def save(self, data: LazyHandle) -> None:
        raise DatasetError("LazyDataset is read-only")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"type": self._config.get("type")}  # never the credentials
