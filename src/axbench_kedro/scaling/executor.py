"""One small interface for running independent shards: in this process, or on Dask distributed workers.

A shard is any picklable value; ``fn`` a module-level function (Dask ships both to a worker process). What every
shard needs (a model spec, artifacts) goes in ``common``: ``fn(common, shard)`` is called, and Dask ships
``common`` to each worker once instead of once per shard. Results come back in shard order whatever order the
workers finish in; ``on_done`` sees each result as soon as it is in, so callers can persist finished shards
before the last one ends. A gathered result is released on the cluster at once, so a worker that dies later
never makes Dask recompute a finished shard.

Example:
    >>> with make_executor(ScalingParams(engine="dask", n_workers=2), gpu=False) as ex:
    ...     ex.map(square, [1, 2, 3])
    [1, 4, 9]
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.scaling.config import ScalingParams

__all__ = ["ShardExecutor", "SequentialExecutor", "DaskExecutor", "LazyExecutor", "make_executor"]

log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")

_NO_COMMON: Any = object()


class ShardExecutor(ABC):
    """Runs ``fn`` on every shard; a context manager that releases its workers on exit."""

    #: ``True`` when shards leave this process (callers then ship what a worker needs with the shard).
    distributed: bool = False

    @property
    def n_workers(self) -> int:
        """Workers that run shards at the same time (callers size their shards with it)."""
        return 1

    @abstractmethod
    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[S],
        *,
        common: Any = _NO_COMMON,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``[fn(s) for s in shards]`` (``fn(common, s)`` when ``common`` is given), in shard order;
        ``on_done(index, result)`` as each shard finishes."""

    def close(self) -> None:  # noqa: B027 (optional hook: most executors hold nothing)
        """Release workers (nothing to do by default)."""

    def __enter__(self) -> ShardExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SequentialExecutor(ShardExecutor):
    """Every shard in this process, one after the other (the default engine)."""

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[S],
        *,
        common: Any = _NO_COMMON,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        out: list[R] = []
        for i, shard in enumerate(shards):
            out.append(fn(shard) if common is _NO_COMMON else fn(common, shard))
            if on_done is not None:
                on_done(i, out[-1])
        return out


class DaskExecutor(ShardExecutor):
    """Shards as Dask distributed tasks (``resources`` such as ``{"GPU": 1}`` per task).

    ``retries`` is Dask's per-task ``retries`` (a shard that raised runs again); a shard whose worker died is
    rescheduled by the scheduler up to its ``allowed_failures`` times, which :meth:`local` sets to ``retries``
    (a running scheduler keeps its own ``distributed.scheduler.allowed-failures``).

    Build it with :meth:`connect` (a running scheduler) or :meth:`local` (a ``LocalCluster`` owned by this
    executor and closed with it).
    """

    distributed = True

    def __init__(
        self,
        client: Any,
        *,
        retries: int = 2,
        resources: dict[str, float] | None = None,
        cluster: Any = None,
    ) -> None:
        self.client, self.retries, self.resources, self._cluster = client, retries, resources, cluster

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        resources: dict[str, float] | None = None,
    ) -> DaskExecutor:
        """A client of the scheduler at ``address``.

        Raises:
            AxbenchConfigError: the scheduler cannot be reached within ``timeout_s`` (names
                ``scaling.scheduler_address``).
        """
        from distributed import Client

        try:
            client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AxbenchConfigError(
                f"scaling.scheduler_address: no Dask scheduler reachable at {address!r} within "
                f"{timeout_s:g} s ({reason})"
            ) from None
        return cls(client, retries=retries, resources=resources)

    @classmethod
    def local(
        cls,
        n_workers: int,
        *,
        threads_per_worker: int = 1,
        retries: int = 2,
        gpu: bool = False,
    ) -> DaskExecutor:
        """A ``LocalCluster`` of ``n_workers`` processes on 127.0.0.1 (each worker offers ``GPU=1`` when ``gpu``);
        a shard may lose its worker ``retries`` times and still be rescheduled."""
        from distributed import Client, LocalCluster

        resources = {"GPU": 1} if gpu else None
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # a free port: several runs may share the machine
            resources=resources,
            # Dask's `retries` covers a raising task only; worker deaths count against allowed_failures
            scheduler_kwargs={"allowed_failures": retries},
        )
        client = Client(cluster, set_as_default=False)
        # the Active Memory Manager drops the broadcast copies of `common` that no waiting shard needs, so a
        # worker death could take the last copy with it and cancel every retry
        client.amm.stop()
        return cls(client, retries=retries, resources=resources, cluster=cluster)

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[S],
        *,
        common: Any = _NO_COMMON,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        from distributed import KilledWorker, as_completed
        from distributed.client import FutureCancelledError

        run = uuid.uuid4().hex[:8]
        name = getattr(getattr(fn, "func", fn), "__name__", "shard")
        # broadcast: a copy on every worker, so a dying worker loses no input (unless an external scheduler's
        # Active Memory Manager drops the spare copies; `local` stops it); hash=False: tokenizing a large
        # `common` (artifacts, vectors) would cost more than shipping it
        lead = () if common is _NO_COMMON else (self.client.scatter(common, hash=False, broadcast=True),)
        futures = [
            self.client.submit(
                fn,
                *lead,
                shard,
                key=f"{name}-{run}-{i}",
                pure=False,
                retries=self.retries,
                resources=self.resources,
            )
            for i, shard in enumerate(shards)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(shards)
        try:
            for future in as_completed(futures, loop=self.client.loop):
                i = index[future.key]
                try:
                    out[i] = future.result()
                except KilledWorker as exc:
                    allowed = int(exc.allowed_failures)
                    limit = (
                        f"scaling.retries = {self.retries}"
                        if allowed == self.retries
                        else f"the scheduler's allowed-failures = {allowed}; scaling.retries = {self.retries}"
                    )
                    raise AxbenchDataError(
                        f"scaling: shard {i} of {name} lost its worker {allowed + 1} time(s) ({limit}); "
                        "finished shards are in the caches, so a rerun resumes from there"
                    ) from None
                except FutureCancelledError:
                    # not cancelled by us (that happens after the loop): the scattered `common` went with the
                    # last workers holding it, after shards died on each of them
                    raise AxbenchDataError(
                        f"scaling: shard {i} of {name} lost its input when the workers holding it died while "
                        f"shards kept losing their worker (scaling.retries = {self.retries}); finished shards are "
                        "in the caches, so a rerun resumes from there"
                    ) from None
                future.release()  # the cluster forgets it: a later worker death cannot recompute it
                if on_done is not None:
                    on_done(i, out[i])
        finally:
            self.client.cancel([f for f in futures if not f.done()])
            for f in lead:
                f.release()
        return out

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


class LazyExecutor(ShardExecutor):
    """The executor ``params`` asks for, started on the first :meth:`map` (a fully cached rerun starts no cluster).

    Raises:
        AxbenchConfigError: from the first ``map``, when ``scaling.scheduler_address`` cannot be reached.
    """

    def __init__(self, params: ScalingParams, *, gpu: bool) -> None:
        self.params, self.gpu, self._inner = params, gpu, None
        self.distributed = params.engine != "sequential"

    @classmethod
    def for_model(cls, params: ScalingParams | None, tm: Any) -> LazyExecutor:
        """The executor of the run's ``scaling`` parameters (``None``: sequential) for target model ``tm``: its
        shards ask for a GPU when the model is on CUDA."""
        return cls(params or ScalingParams(), gpu=tm.device.type == "cuda")

    def _started(self) -> ShardExecutor:
        if self._inner is None:
            self._inner = make_executor(self.params, gpu=self.gpu)
        return self._inner

    @property
    def n_workers(self) -> int:
        return self._started().n_workers

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[S],
        *,
        common: Any = _NO_COMMON,
        on_done: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        return self._started().map(fn, shards, common=common, on_done=on_done)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_executor(params: ScalingParams, *, gpu: bool) -> ShardExecutor:
    """The executor ``params`` asks for; ``gpu`` = the target model runs on CUDA (tasks then need ``GPU=1``).

    Raises:
        AxbenchConfigError: ``scaling.scheduler_address`` cannot be reached.
    """
    if params.engine == "sequential":
        return SequentialExecutor()
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise AxbenchConfigError(
            "scaling.engine: dask needs Dask distributed (pip install -e '.[scale]')"
        ) from None
    if params.scheduler_address is not None:
        log.info("scaling: connecting to the Dask scheduler at %s", params.scheduler_address)
        return DaskExecutor.connect(
            params.scheduler_address,
            timeout_s=params.connect_timeout_s,
            retries=params.retries,
            resources={"GPU": 1} if gpu else None,
        )
    n = params.n_workers or (max(1, _gpu_count()) if gpu else 2)
    log.info("scaling: starting a Dask LocalCluster of %d worker(s) on 127.0.0.1", n)
    return DaskExecutor.local(
        n, threads_per_worker=params.threads_per_worker, retries=params.retries, gpu=gpu
    )
