"""Helpers of the scaling tests: the Dask skip mark and an executor that lends the shared cluster to a node."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from axbench_kedro.scaling import DaskExecutor, ShardExecutor

needs_dask = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the `scale` extra (Dask distributed) is not installed",
)


class Borrowed(ShardExecutor):
    """The shared cluster lent to one node (not closed with it); counts ``map`` calls, can wrap the shard fn."""

    distributed = True

    def __init__(self, inner: DaskExecutor, wrap: Any = None) -> None:
        self.inner, self.wrap, self.maps = inner, wrap, 0

    @property
    def n_workers(self) -> int:
        return self.inner.n_workers

    def map(self, fn, shards, **kwargs):
        self.maps += 1
        return self.inner.map(fn if self.wrap is None else self.wrap(fn), shards, **kwargs)
