"""``params:scaling``: which engine runs the sharded work and how it reaches its workers.

Sharded under ``dask``: training (one concept group per task, :mod:`~axbench_kedro.scaling.training`), latent
scoring of the ``activation``/``text``/``gradient`` methods (runs of the length-sorted batches,
:mod:`~axbench_kedro.scaling.latent`) and steered generation (one generation batch per task,
:mod:`~axbench_kedro.scaling.generation`). Judging, PromptDetection rating and the small nodes stay in the driver
(see :mod:`axbench_kedro.steering.judging`). Each worker loads the target model once; the driver alone writes the
caches and the catalog outputs, so results equal the sequential run's.

Example:
    >>> ScalingParams().engine
    'sequential'
    >>> ScalingParams(engine="dask", scheduler_address="tcp://10.0.0.5:8786").scheduler_address
    'tcp://10.0.0.5:8786'
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from axbench_kedro.config.common import StrictModel

__all__ = ["ScalingParams"]


class ScalingParams(StrictModel):
    """Attributes:
    engine: ``sequential`` (default: every shard in this process, in order) or ``dask`` (shards on Dask
        distributed workers; the same results for the same seed).
    scheduler_address: a running Dask scheduler (``tcp://host:8786``); ``None`` starts a ``LocalCluster`` on
        127.0.0.1 for this run.
    n_workers: worker processes of the ``LocalCluster``; ``None`` = one per visible GPU on a CUDA machine, else 2.
    threads_per_worker: task threads per ``LocalCluster`` worker (1: one shard at a time per worker and GPU).
    retries: Dask retries of a shard whose task raised, and how often it may lose its worker (the
        ``LocalCluster`` scheduler's ``allowed_failures``; a running scheduler at ``scheduler_address`` keeps its
        own ``distributed.scheduler.allowed-failures``).
    connect_timeout_s: how long to wait for ``scheduler_address`` before failing the run.
    """

    engine: Literal["sequential", "dask"] = "sequential"
    scheduler_address: str | None = Field(None, min_length=1)
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    retries: int = Field(2, ge=0)
    connect_timeout_s: float = Field(10.0, gt=0)
