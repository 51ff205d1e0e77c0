"""One Dask LocalCluster (2 worker processes on 127.0.0.1) and one on-disk tiny model for every scaling test:
a cluster start and the workers' imports and model load cost seconds, so they are paid once."""

from __future__ import annotations

import pytest

from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.types import ModelSpec
from axbench_kedro.scaling import DaskExecutor
from fixtures.tiny_models import make_tiny_target_model


@pytest.fixture(scope="session")
def dask_cluster():
    with DaskExecutor.local(2) as ex:
        yield ex


@pytest.fixture()
def own_cluster():
    """A cluster of the test's own, for every test that kills workers: it must not leave the shared one short of
    a worker (a nanny restarting under load has been seen to close for good)."""
    with DaskExecutor.local(2) as ex:
        yield ex


@pytest.fixture(scope="session")
def tm(tmp_path_factory):
    """A tiny random Gemma saved to disk and loaded by path, as every Dask worker loads it."""
    where = tmp_path_factory.mktemp("tiny_model")
    tiny = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)
    tiny.model.save_pretrained(where)
    tiny.tokenizer.save_pretrained(where)
    return load_target_model(
        ModelSpec(source="local", name_or_path=str(where), dtype="float32", device="cpu")
    )
