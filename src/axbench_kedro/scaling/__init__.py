"""Scale-out: shards of the heavy work on an executor (in-process or Dask distributed), same results either way."""

from axbench_kedro.scaling.config import ScalingParams
from axbench_kedro.scaling.executor import DaskExecutor, SequentialExecutor, ShardExecutor, make_executor

__all__ = ["ScalingParams", "ShardExecutor", "SequentialExecutor", "DaskExecutor", "make_executor"]
