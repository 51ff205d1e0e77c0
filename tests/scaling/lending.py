"""Helpers of the scaling tests: the Dask skip mark and an executor that lends the shared cluster to a node."""

from __future__ import annotations

import importlib.util
import time
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


def all_workers_up(executor: DaskExecutor, n: int = 2, timeout_s: float = 180) -> None:
    """Wait until the nannies have restarted every worker a test killed (slow on a loaded 2-core machine), so a
    test starts with the whole cluster: a shard that kills its worker then always has a live one holding its input."""
    executor.client.wait_for_workers(n, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while len(executor.client.scheduler_info()["workers"]) < n and time.monotonic() < deadline:
        time.sleep(0.1)
