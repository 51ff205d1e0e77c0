"""Training concept groups as shards on Dask workers, with the sequential run's results.

A shard is one concept group of :func:`axbench_kedro.methods.trainer.train_methods` (the same
``concept_group_size`` chunks of the same pending concepts), trained on a worker by the same
``_train_group`` code. What else a group's numbers depend on is the genre pools the sequential run computed in
*earlier* groups (their forward pass batched the pool with that group's positives): each shard lists those passes
and the worker replays each one once (per worker and run) before training, so every pool tensor is bit-for-bit
the one the sequential run used. When the cache left concepts with different pending methods, the order of those
passes is not worth reconstructing: :func:`train_groups_sharded` declines and the caller trains in-process.

Per worker process: the target model is loaded once per ``ModelSpec`` (``load_target_model`` memoizes it), and
the replayed pools, the LM tail and the SAE are kept for the current run (one run at a time per worker).

Example:
    >>> with make_executor(ScalingParams(engine="dask"), gpu=False) as ex:
    ...     artifacts, summary = train_methods(tm, concepts, methods, opts, executor=ex)
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from axbench_kedro.lm.types import ModelSpec, TargetModel
from axbench_kedro.methods.base import ConceptData, Method, PreferenceData
from axbench_kedro.methods.row_spool import RowSpool
from axbench_kedro.methods.sae_file import SAESource
from axbench_kedro.methods.trainer import TrainOptions, _Resources, _train_group, held_row
from axbench_kedro.scaling.executor import ShardExecutor
from axbench_kedro.scaling.worker import worker_model

__all__ = [
    "TrainJob",
    "PoolPass",
    "TrainShard",
    "ShardResult",
    "plan_shards",
    "train_shard",
    "train_groups_sharded",
]

log = logging.getLogger(__name__)

_FORWARD = frozenset({"activations", "lm_objective"})


@dataclass(frozen=True)
class TrainJob:
    """What every shard of one training run shares.

    Attributes:
        run_id: identifies the run (a worker keeps its replayed pools for one run at a time).
        spec: the target model (every worker loads it once).
        opts: the run's training options.
        methods: ``(method name, hyperparameters)`` of the methods to train.
        sae_path: the SAE file when a method needs it (read by each worker).
        torch_threads: the driver's torch CPU threads; workers use as many (Dask starts them with
            ``OMP_NUM_THREADS=1``), because CPU reductions split by thread count and the rounding would differ.
    """

    run_id: str
    spec: ModelSpec
    opts: TrainOptions
    methods: tuple[tuple[str, Any], ...]
    sae_path: str | None = None
    torch_threads: int | None = None


@dataclass(frozen=True)
class PoolPass:
    """A forward pass of the sequential run that computed genre pools: group ``group``'s positives + ``genres``."""

    group: int
    concepts: tuple[ConceptData, ...]
    genres: tuple[str, ...]


@dataclass(frozen=True)
class TrainShard:
    """One concept group.

    Attributes:
        index: the group's position in the sequential order.
        concepts: the group's concepts.
        pending: per method name, the positions in ``concepts`` to train.
        pool_passes: the earlier passes whose pools this group reads.
        known_genres: this group's genres whose pools the sequential run held before the group.
        preferences: the group's preference pairs (RePS family), by concept id.
    """

    index: int
    concepts: tuple[ConceptData, ...]
    pending: dict[str, tuple[int, ...]]
    pool_passes: tuple[PoolPass, ...] = ()
    known_genres: tuple[str, ...] = ()
    preferences: dict[int, PreferenceData] | None = None


@dataclass
class ShardResult:
    """Rows trained by a shard (``{method: [row per pending position]}``, CPU tensors) and its seconds."""

    rows: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]
    shared_seconds: dict[str, float]


def plan_shards(
    concepts: Sequence[ConceptData],
    groups: Sequence[Sequence[int]],
    runnable: Sequence[tuple[Method, Any]],
    results: Mapping[str, Sequence[Any]],
    preferences: Mapping[int, PreferenceData] | None = None,
) -> list[TrainShard] | None:
    """The shards of ``groups``, or ``None`` when the groups' pending methods differ (then train in-process).

    With one pending set for every concept, the sequential run computes a genre's pool in the first group holding
    the genre (if a pending method runs the model), in one pass with that group's positives: that is the pass a
    later shard replays.
    """
    pending_sets = {
        frozenset(m.name for m, _ in runnable if results[m.name][i] is None) for g in groups for i in g
    }
    if len(pending_sets) != 1:
        return None
    (pending_names,) = pending_sets
    forward = any(_FORWARD & m.requires for m, _ in runnable if m.name in pending_names)
    first_pass: dict[str, int] = {}
    passes: list[PoolPass] = []
    for k, group in enumerate(groups):
        new = [g for g in dict.fromkeys(concepts[i].genre for i in group) if g not in first_pass]
        for g in new:
            first_pass[g] = k
        passes.append(PoolPass(k, tuple(concepts[i] for i in group), tuple(new)))
    shards: list[TrainShard] = []
    for k, group in enumerate(groups):
        genres = list(dict.fromkeys(concepts[i].genre for i in group))
        known = tuple(g for g in genres if first_pass[g] < k) if forward else ()
        needed = sorted({first_pass[g] for g in known})
        shards.append(
            TrainShard(
                index=k,
                concepts=tuple(concepts[i] for i in group),
                pending={
                    m.name: tuple(p for p, i in enumerate(group) if results[m.name][i] is None)
                    for m, _ in runnable
                },
                pool_passes=tuple(passes[j] for j in needed),
                known_genres=known,
                preferences={concepts[i].concept_id: preferences[concepts[i].concept_id] for i in group}
                if preferences is not None and all(concepts[i].concept_id in preferences for i in group)
                else None,
            )
        )
    return shards


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to(v, device) for v in obj)
    return obj


class _WorkerState:
    """One run's reusable pieces in a worker process (replaced when another run's shard arrives)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.lock = threading.Lock()
        self.pools: dict[str, Any] = {}
        self.pool_lm: dict[str, Any] = {}
        self.done_passes: set[int] = set()
        self.tail: Any = None
        self.sae: Any = None


_STATE: dict[str, _WorkerState] = {}
_STATE_LOCK = threading.Lock()


def _state(run_id: str) -> _WorkerState:
    with _STATE_LOCK:
        if "current" not in _STATE or _STATE["current"].run_id != run_id:
            _STATE["current"] = _WorkerState(run_id)
        return _STATE["current"]


def train_shard(job: TrainJob, shard: TrainShard) -> ShardResult:
    """Train one concept group on this process's copy of the target model (the Dask task)."""
    from axbench_kedro.methods.registry import get_method

    tm = worker_model(job.spec, job.torch_threads)
    state = _state(job.run_id)
    runnable = [(get_method(name), hp) for name, hp in job.methods]
    active = [(m, hp) for m, hp in runnable if shard.pending.get(m.name)]
    needs = set().union(*(m.requires for m, _ in active))
    sae_params = None
    if "sae" in needs and job.sae_path is not None:
        with state.lock:
            if state.sae is None:
                state.sae = SAESource(job.sae_path).load(tm.d_model, job.opts.sae_width).to(tm.device)
        sae_params = state.sae
    res = _Resources(tm, job.opts, sae_params)
    with state.lock:
        for p in shard.pool_passes:
            if p.group not in state.done_passes:
                scratch = _Resources(tm, job.opts, None)
                scratch.prefetch(list(p.concepts), genres=list(p.genres))
                state.pools.update(scratch.pool_acts)
                res.seconds["activations"] += scratch.seconds["activations"]
                state.done_passes.add(p.group)
        res.pool_acts = {g: state.pools[g] for g in shard.known_genres}
        res.pool_lm = {g: state.pool_lm[g] for g in shard.known_genres if g in state.pool_lm}
        res._tail = state.tail
    n = len(shard.concepts)
    results: dict[str, list[Any]] = {
        m.name: [None if p in shard.pending[m.name] else {} for p in range(n)] for m, _ in runnable
    }
    seconds = {m.name: 0.0 for m, _ in runnable}
    _train_group(
        list(shard.concepts),
        list(range(n)),
        runnable,
        results,
        {},
        seconds,
        res,
        None,
        sae_params,
        job.opts,
        shard.preferences,
    )
    with state.lock:
        state.pool_lm.update(res.pool_lm)
        state.tail = state.tail or res._tail
    rows = {
        name: [_to(results[name][p], torch.device("cpu")) for p in todo]
        for name, todo in shard.pending.items()
    }
    return ShardResult(rows, seconds, res.seconds)


def train_groups_sharded(
    executor: ShardExecutor,
    tm: TargetModel,
    concepts: Sequence[ConceptData],
    groups: Sequence[Sequence[int]],
    runnable: Sequence[tuple[Method, Any]],
    results: dict[str, list[Any]],
    keys: Mapping[str, Sequence[str]],
    seconds: dict[str, float],
    store: Any,
    sae: SAESource | None,
    opts: TrainOptions,
    preferences: Mapping[int, PreferenceData] | None = None,
    spool: RowSpool | None = None,
) -> dict[str, float] | None:
    """Train ``groups`` as shards on ``executor``, filling ``results`` (and ``store``; ``spool`` for the rows that
    go to disk) as each shard finishes.

    Returns:
        the shared seconds (activations, LM cache, …) summed over the shards, or ``None`` when the groups cannot
        be sharded with identical results (see :func:`plan_shards`); nothing has run then.
    """
    shards = plan_shards(concepts, groups, runnable, results, preferences)
    if shards is None:
        log.warning(
            "training: concepts differ in their pending methods (a partial cache or a method's concept limit); "
            "training this run in-process"
        )
        return None
    job = TrainJob(
        run_id=uuid.uuid4().hex,
        spec=tm.spec,
        opts=opts,
        methods=tuple((m.name, hp) for m, hp in runnable),
        torch_threads=torch.get_num_threads(),
        sae_path=os.path.abspath(sae.path) if sae is not None and sae.available and sae.path else None,
    )
    shared: dict[str, float] = {}
    bar = tqdm(total=sum(len(g) for g in groups), desc="training concepts (dask)", unit="concept")

    by_name = {m.name: m for m, _ in runnable}

    def done(k: int, out: ShardResult) -> None:
        for name, rows in out.rows.items():
            method = by_name[name]
            for p, row in zip(shards[k].pending[name], rows, strict=True):
                i = groups[k][p]
                row = row if method.rows_on_disk else _to(row, tm.device)
                results[name][i] = held_row(method, keys[name], i, row, store, spool)
        for name, value in out.seconds.items():
            seconds[name] += value
        for name, value in out.shared_seconds.items():
            shared[name] = shared.get(name, 0.0) + value
        bar.update(len(groups[k]))

    with bar:
        executor.map(functools.partial(train_shard, job), shards, on_done=done)
    return shared
