"""Steered generation as shards on Dask workers, with the sequential run's generations.

The unit of work is the sequential schedule's own batch (:func:`axbench_kedro.steering.schedule.generate_plans`
cuts every plan's units into length-sorted batches that mix concepts). A batch's seed is a hash of its units and
each row samples from its own seeded generator, so a batch generated on any worker yields the same tokens as in
the sequential run; sharding by concept instead would change the batches and with them the seeds. The cache is
keyed per batch too, so a shard that finished is in the cache and is never sent again: the driver asks the cache
first and ships only the missing batches, and it alone writes the SQLite cache, one transaction per batch as each
comes back (workers never open it).

Per worker process the target model is loaded once per ``ModelSpec`` (:mod:`axbench_kedro.scaling.worker`); the
plans (steering vectors, adapter artifacts) reach each worker once per run (the executor's ``common``). Adapter
methods get their ``adapter`` rebuilt on the worker from :attr:`~axbench_kedro.steering.plans.MethodPlan.
adapter_artifact`; a plan without one runs in this process.

Example:
    >>> frame = generate_plans(plans, prompts, tm, cache, params, layer=9, seed=42, executor=dask_executor)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.lm.types import ModelSpec, TargetModel
from axbench_kedro.scaling.executor import ShardExecutor
from axbench_kedro.scaling.worker import worker_model
from axbench_kedro.steering.plans import MethodPlan
from axbench_kedro.steering.schedule import BatchResult, BatchWork, _Runtime, run_batch

__all__ = ["GenerationJob", "GenerationShard", "generation_shard", "generate_batches_sharded"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationJob:
    """What every shard of one generation run shares (shipped to each worker once).

    Attributes:
        spec: the target model.
        torch_threads: the driver's torch CPU threads (the worker rounds as the driver does).
        params: steering parameters (sampling, perplexity).
        layer: steered block.
        plans: the run's plans, without their driver-only callables (``strength_fn``; ``adapter`` is rebuilt).
    """

    spec: ModelSpec
    torch_threads: int | None
    params: SteeringEvalParams
    layer: int
    plans: tuple[MethodPlan, ...]


@dataclass(frozen=True)
class GenerationShard:
    """One batch: what to do (``work``) and its units (rows of the plan's units frame, original index)."""

    work: BatchWork
    units: pd.DataFrame


def _shippable(plan: MethodPlan) -> MethodPlan:
    # strengths are already in the units; adapters are rebuilt on the worker from their artifact
    return dataclasses.replace(plan, strength_fn=None, adapter=None)


def _runtime(tm: TargetModel, params: SteeringEvalParams, layer: int) -> _Runtime:
    from axbench_kedro.lm.generation import row_seed, sample_generate
    from axbench_kedro.lm.scoring import perplexities, sequence_perplexities
    from axbench_kedro.lm.steering import steered_generate

    return _Runtime(
        tm, params, layer, steered_generate, sample_generate, perplexities, sequence_perplexities, row_seed
    )


def generation_shard(job: GenerationJob, shard: GenerationShard) -> BatchResult:
    """Generate one batch on this process's copy of the target model (the Dask task)."""
    tm = worker_model(job.spec, job.torch_threads)
    plan = job.plans[shard.work.plan_index]
    if plan.adapter_artifact is not None:
        from axbench_kedro.methods.registry import get_method

        method, artifact = get_method(plan.method), plan.adapter_artifact
        plan = dataclasses.replace(plan, adapter=lambda c: method.adapter(artifact, tm, c))
    return run_batch(_runtime(tm, job.params, job.layer), plan, shard.units, shard.work)


def generate_batches_sharded(
    executor: ShardExecutor,
    work: Sequence[BatchWork],
    planned: Sequence[tuple[MethodPlan, pd.DataFrame, pd.DataFrame]],
    tm: TargetModel,
    params: SteeringEvalParams,
    layer: int,
    on_done: Callable[[int, BatchResult], None],
) -> None:
    """Run ``work`` on ``executor``; ``on_done(i, result)`` in this process as each batch comes back.

    Batches of a plan whose adapter cannot be rebuilt on a worker (no ``adapter_artifact``) run here.
    """
    local = [i for i, w in enumerate(work) if _needs_driver(planned[w.plan_index][0])]
    remote = [i for i in range(len(work)) if i not in set(local)]
    job = GenerationJob(
        spec=tm.spec,
        torch_threads=torch.get_num_threads(),
        params=params,
        layer=int(layer),
        plans=tuple(_shippable(p) for p, _, _ in planned),
    )
    shards = [GenerationShard(work[i], planned[work[i].plan_index][1].loc[work[i].batch]) for i in remote]
    log.info("steering generation: %d batch(es) on Dask, %d in this process", len(shards), len(local))
    if shards:
        executor.map(generation_shard, shards, common=job, on_done=lambda k, out: on_done(remote[k], out))
    if local:
        rt = _runtime(tm, params, layer)
        for i in local:
            plan, units, _ = planned[work[i].plan_index]
            on_done(i, run_batch(rt, plan, units, work[i]))


def _needs_driver(plan: MethodPlan) -> bool:
    return plan.adapter is not None and plan.adapter_artifact is None
