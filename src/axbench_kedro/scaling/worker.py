"""What a shard does first on a Dask worker: match the driver's CPU threads and get this process's target model.

``load_target_model`` memoizes per ``ModelSpec``, so a worker loads the model once and reuses it for every shard
of every stage (training, latent scoring, generation) that names the same spec.

Example:
    >>> tm = worker_model(job.spec, job.torch_threads)
"""

from __future__ import annotations

import torch

from axbench_kedro.lm.types import ModelSpec, TargetModel

__all__ = ["worker_spec", "worker_model"]


def worker_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` pinned to this worker's GPU on a multi-GPU machine (``LocalCluster`` names workers 0, 1, …)."""
    if not torch.cuda.is_available() or spec.device not in ("auto", "cuda") or torch.cuda.device_count() < 2:
        return spec
    try:
        from distributed import get_worker

        index = int(get_worker().name) % torch.cuda.device_count()
    except (ValueError, TypeError):  # a named worker: use its first visible GPU (CUDA_VISIBLE_DEVICES)
        index = 0
    return spec.model_copy(update={"device": f"cuda:{index}"})


def worker_model(spec: ModelSpec, torch_threads: int | None) -> TargetModel:
    """The target model of ``spec`` in this process (loaded on first use), with ``torch_threads`` CPU threads.

    Dask starts workers with ``OMP_NUM_THREADS=1``; CPU reductions split by thread count, so a worker uses the
    driver's count to round exactly as the sequential run does.
    """
    from axbench_kedro.lm.loading import load_target_model

    if torch_threads and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return load_target_model(worker_spec(spec))
