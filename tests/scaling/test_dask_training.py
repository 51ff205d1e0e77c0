"""Training on a Dask LocalCluster (2 worker processes on 127.0.0.1) gives the sequential run's artifacts; the
executor's contract; the scaling configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner
from pydantic import ValidationError

from axbench_kedro.config.training import TrainingParams
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import build_concepts
from axbench_kedro.pipelines.training import create_pipeline
from axbench_kedro.pipelines.training import nodes as training_nodes
from axbench_kedro.scaling import ScalingParams, SequentialExecutor, make_executor
from axbench_kedro.scaling.training import plan_shards
from methods.pipeline_inputs import training_catalog, write_sae
from methods.synthetic_data import make_concepts_meta, make_train_data
from scaling.lending import Borrowed, needs_dask

_METHODS = ["DiffMean", "ReFT-r1", "SSV", "SAE"]


def _two_genres(catalog) -> None:
    """Concept 1 becomes a ``code`` concept with its own pool, so shards read pools of two genres."""
    train = catalog.load("train_data")
    meta = catalog.load("concepts_meta")
    code_pool = train[train["concept_id"] == -1].copy()
    code_pool["output"] = code_pool["output"].str.replace("the", "python", n=1)
    code_pool["concept_genre"] = "code"
    train.loc[train["concept_id"] == 1, "concept_genre"] = "code"
    meta["concept_genres"] = [["text"], ["code"], ["text"]]
    catalog["train_data"] = MemoryDataset(pd.concat([train, code_pool], ignore_index=True))
    catalog["concepts_meta"] = MemoryDataset(meta)


def _run(tm, tmp_path: Path, scaling: ScalingParams, store: str, lent: Borrowed | None = None):
    params = TrainingParams(methods=_METHODS, concept_group_size=1)
    sae = tmp_path / "params.npz"  # written once: its mtime is part of the SAE's cache key
    catalog = training_catalog(tm, str(sae) if sae.exists() else write_sae(sae), tmp_path / store, params)
    _two_genres(catalog)
    catalog["params:scaling"] = MemoryDataset(scaling, copy_mode="assign")
    with pytest.MonkeyPatch.context() as mp:
        if lent is not None:  # the session's cluster instead of a LocalCluster per run
            mp.setattr(training_nodes, "make_executor", lambda params, gpu: lent)
        SequentialRunner().run(create_pipeline(), catalog)
    return catalog.load("method_artifacts"), catalog.load("training_summary").set_index("method")


@needs_dask
def test_dask_training_equals_sequential_and_fills_the_cache(tm, dask_cluster, tmp_path) -> None:
    seq, _ = _run(tm, tmp_path, ScalingParams(), "seq_cache")
    lent = Borrowed(dask_cluster)
    dask, summary = _run(tm, tmp_path, ScalingParams(engine="dask", n_workers=2), "dask_cache", lent)
    assert lent.maps == 1
    assert list(dask) == _METHODS
    for name in _METHODS:
        assert dask[name].ok and dask[name].concept_ids == [0, 1, 2]
        assert set(dask[name].tensors) == set(seq[name].tensors) and dask[name].tensors
        for key, value in seq[name].tensors.items():
            assert torch.equal(dask[name].tensors[key], value), (name, key)
        assert dask[name].meta == seq[name].meta
    assert (summary.loc[_METHODS, "cached_concepts"] == 0).all()
    # every shard's rows reached the per-concept cache: an in-process rerun trains nothing
    again, summary2 = _run(tm, tmp_path, ScalingParams(), "dask_cache")
    assert (summary2.loc[_METHODS, "cached_concepts"] == 3).all()
    for name in _METHODS:
        for key, value in seq[name].tensors.items():
            assert torch.equal(again[name].tensors[key], value)


def _power(exponent: int, x: int) -> int:
    return x**exponent


def _slow_square(x: int) -> int:
    time.sleep(0.3 if x == 0 else 0.0)  # the first shard finishes last
    return x * x


@needs_dask
def test_dask_executor_keeps_shard_order(dask_cluster) -> None:
    seen: list[tuple[int, int]] = []
    out = dask_cluster.map(_slow_square, [0, 1, 2, 3], on_done=lambda i, r: seen.append((i, r)))
    assert out == [0, 1, 4, 9]
    assert sorted(seen) == [(0, 0), (1, 1), (2, 4), (3, 9)]
    assert SequentialExecutor().map(_slow_square, [3, 2]) == [9, 4]
    # `common` reaches every shard (shipped once per worker under Dask)
    assert dask_cluster.map(_power, [1, 2, 3], common=3) == [1, 8, 27]
    assert SequentialExecutor().map(_power, [2], common=2) == [4]


@needs_dask
def test_unreachable_scheduler_is_one_config_error() -> None:
    params = ScalingParams(engine="dask", scheduler_address="tcp://127.0.0.1:1", connect_timeout_s=1)
    with pytest.raises(AxbenchConfigError) as err:
        make_executor(params, gpu=False)
    message = str(err.value)
    assert message.startswith("scaling.scheduler_address:") and "tcp://127.0.0.1:1" in message
    assert "\n" not in message


def test_base_parameters_select_the_sequential_engine() -> None:
    conf = Path(__file__).resolve().parents[2] / "conf" / "base" / "parameters.yml"
    block = ScalingParams(**yaml.safe_load(conf.read_text())["scaling"])
    assert block.engine == "sequential" and block.scheduler_address is None
    assert isinstance(make_executor(block, gpu=False), SequentialExecutor)
    with pytest.raises(ValidationError):
        ScalingParams(engine="spark")


def test_groups_with_different_pending_methods_are_not_sharded() -> None:
    concepts = build_concepts(make_train_data(n_concepts=2), make_concepts_meta(2))
    runnable = [(get_method("DiffMean"), None), (get_method("SSV"), None)]
    # DiffMean of concept 0 came from the cache, SSV did not: the passes the groups share would differ
    mixed = {"DiffMean": [{}, None], "SSV": [None, None]}
    assert plan_shards(concepts, [[0], [1]], runnable, mixed) is None
    uniform = {"DiffMean": [None, None], "SSV": [None, None]}
    shards = plan_shards(concepts, [[0], [1]], runnable, uniform)
    assert [s.index for s in shards] == [0, 1]
    assert shards[0].pool_passes == () and shards[0].known_genres == ()
    assert [p.group for p in shards[1].pool_passes] == [0] and shards[1].known_genres == ("text",)
    assert shards[1].pool_passes[0].genres == ("text",)
