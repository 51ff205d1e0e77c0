"""Adapter methods (LoRA, LoReFT, SFT: factor-free, generated inside ``method.adapter(...)``) steer on Dask workers
exactly as in this process: each worker rebuilds the plan's adapter from its artifact. A shard that keeps losing its
worker stops the run with one line naming ``scaling.retries``, and the batches already cached stay cached."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods
from axbench_kedro.pipelines.steering_eval import nodes as steering_nodes
from axbench_kedro.scaling import DaskExecutor
from axbench_kedro.steering.plans import steering_plans
from axbench_kedro.steering.schedule import generate_steering_rows
from methods.pipeline_inputs import LAYER
from methods.synthetic_data import make_concepts_meta, make_train_data
from scaling.lending import Borrowed, needs_dask

pytestmark = [needs_dask, pytest.mark.slow]

ADAPTERS = ["LoRA", "LoReFT", "SFT"]
_FAST = {"epochs": 2, "batch_size": 6, "gradient_accumulation": 1}
# a few real steps with high learning rates, so every adapter changes the sampled tokens; SFT on its first concept
HP = {
    "LoRA": {**_FAST, "lr": 2e-2, "layers": [0, 1, 2]},
    "LoReFT": {**_FAST, "lr": 2e-2, "epochs": 6, "layers": [0, 1, 2]},
    "SFT": {**_FAST, "lr": 3e-3, "max_concepts": 1},
}
STEERING = SteeringEvalParams.model_validate(
    {
        "methods": ADAPTERS,
        "factors": [0.5, 1.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "judge": {"kind": "llm", "model": "gpt-4o-mini"},
        "n_resamples": 20,
    }
)
NO_MAGNITUDES = pd.DataFrame({"concept_id": [], "method": [], "magnitude_base": []})


def _generate(tm, setup: dict[str, Any], cache_path: Path, executor=None, plan_builder=steering_plans):
    cache = SQLiteCache(cache_path, "g")
    try:
        return generate_steering_rows(
            setup["prompts"],
            setup["arts"],
            NO_MAGNITUDES,
            tm,
            cache,
            STEERING,
            layer=LAYER,
            seed=42,
            plan_builder=plan_builder,
            executor=executor,
        )
    finally:
        cache.close()


def _without_adapters(*args: Any, **kwargs: Any) -> list:
    """The plans with every adapter replaced by a no-op (same units and seeds, run in this process)."""
    plans = steering_plans(*args, **kwargs)
    return [
        dataclasses.replace(p, adapter=lambda c: contextlib.nullcontext(), adapter_artifact=None)
        for p in plans
    ]


@pytest.fixture(scope="module")
def setup(tm, tmp_path_factory) -> dict[str, Any]:
    """Adapters trained in this process on two concepts, their prompts, and the sequential generations."""
    concepts = build_concepts(make_train_data(n_concepts=2), make_concepts_meta(2))
    methods = [(get_method(name), dict(HP[name])) for name in ADAPTERS]
    arts, _ = train_methods(tm, concepts, methods, TrainOptions(setting="tiny", layer=LAYER, seed=42))
    assert all(arts[name].ok for name in ADAPTERS)
    meta = make_concepts_meta(2)
    # prompts of different lengths (batches with and without padding)
    texts_ = ["tell me about the sea", "what is a really good board game to play", "describe a city"]
    instructions = pd.DataFrame({"instruction": texts_})
    texts = pd.DataFrame({"concept_id": meta["concept_id"], "text": "Mention the concept in every answer."})
    prompts = steering_nodes.build_steering_prompts(meta, instructions, texts, tm, STEERING)
    out = {"arts": arts, "prompts": prompts}
    out["gens"] = _generate(tm, out, tmp_path_factory.mktemp("sequential") / "gen.sqlite")
    return out


def test_adapter_steering_on_dask_workers_equals_the_sequential_run(
    tm, setup, dask_cluster, tmp_path
) -> None:
    want = setup["gens"]
    assert set(want["method"]) == set(ADAPTERS)
    assert set(want.loc[want["method"] == "SFT", "concept_id"]) == {
        0
    }  # its concept limit travels with the plan
    # the adapters matter: the same units and seeds without them sample other tokens
    plain = _generate(tm, setup, tmp_path / "plain.sqlite", plan_builder=_without_adapters)
    for name in ADAPTERS:
        rows = want["method"] == name
        assert (plain.loc[rows, "steered_generation"] != want.loc[rows, "steered_generation"]).any(), name

    lent = Borrowed(dask_cluster)
    got = _generate(tm, setup, tmp_path / "dask.sqlite", executor=lent)
    assert lent.maps == 1  # every batch ran on the workers (none fell back to this process)
    pd.testing.assert_frame_equal(got, want)


def _die_if_victim(marker_dir: str, fn: Any, *args: Any) -> Any:
    """Every attempt of the victim batch kills its worker (once the other batches are done); the rest run."""
    where, shard = Path(marker_dir), args[-1]
    victim = json.loads((where / "victim.json").read_text())
    (where / f"call-{uuid.uuid4().hex}").write_text(shard.work.keys[0])
    if shard.work.keys[0] != victim["key"]:
        out = fn(*args)
        (where / f"done-{uuid.uuid4().hex}").write_text(shard.work.keys[0])
        return out
    deadline = time.monotonic() + 60
    while len(list(where.glob("done-*"))) < victim["others"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the finished batches reach the driver's cache
    os._exit(1)


class _KillLast(Borrowed):
    """The shared cluster, with the last shard of each ``map`` made a victim that always kills its worker."""

    def __init__(self, inner: Any, marker_dir: Path) -> None:
        super().__init__(inner)
        self.marker_dir = marker_dir

    def map(self, fn, shards, **kwargs):
        self.maps += 1
        victim = {
            "key": shards[-1].work.keys[0],
            "victim_keys": list(shards[-1].work.keys),
            "other_keys": [k for s in shards[:-1] for k in s.work.keys],
            "others": len(shards) - 1,
        }
        (self.marker_dir / "victim.json").write_text(json.dumps(victim))
        return self.inner.map(functools.partial(_die_if_victim, str(self.marker_dir), fn), shards, **kwargs)


def test_a_shard_that_keeps_losing_its_worker_is_one_error_and_keeps_the_cache(
    tm, setup, own_cluster, tmp_path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    cache = tmp_path / "gen.sqlite"
    with pytest.raises(AxbenchDataError) as err:
        _generate(tm, setup, cache, executor=_KillLast(own_cluster, markers))
    message = str(err.value)
    retries = own_cluster.retries
    victim = json.loads((markers / "victim.json").read_text())
    assert "\n" not in message and message.startswith(f"scaling: shard {victim['others']} of _die_if_victim ")
    # after the victim killed both workers, the run's shared input (plans, artifacts) went with them: one line too
    assert f"(scaling.retries = {retries}); finished shards are in the caches" in message
    calls = pd.Series([p.read_text() for p in markers.glob("call-*")]).value_counts()
    assert victim["others"] >= 3 and 2 <= calls[victim["key"]] <= retries + 1
    assert (calls.drop(victim["key"]) == 1).all() and len(calls) == victim["others"] + 1

    store = SQLiteCache(cache, "g")
    try:  # every finished batch is cached, the victim's is not
        assert set(store.get_many(victim["other_keys"])) == set(victim["other_keys"])
        assert not store.get_many(victim["victim_keys"])
    finally:
        store.close()

    # a rerun (on a fresh cluster, as after a crash) ships the missing batch only and ends as the sequential run
    again = tmp_path / "again"
    again.mkdir()
    with DaskExecutor.local(2) as fresh:
        lent = Borrowed(fresh, wrap=lambda fn: functools.partial(_record, str(again), fn))
        pd.testing.assert_frame_equal(_generate(tm, setup, cache, executor=lent), setup["gens"])
    assert [p.read_text() for p in again.glob("call-*")] == [victim["key"]]


def _record(marker_dir: str, fn: Any, *args: Any) -> Any:
    (Path(marker_dir) / f"call-{uuid.uuid4().hex}").write_text(args[-1].work.keys[0])
    return fn(*args)


def _square_or_die(marker_dir: str, x: int) -> int:
    """Shard 3 kills its worker on every attempt, once shards 0–2 are done."""
    where = Path(marker_dir)
    (where / f"call-{uuid.uuid4().hex}").write_text(str(x))
    if x != 3:
        (where / f"done-{x}").write_text("")
        return x * x
    deadline = time.monotonic() + 60
    while len(list(where.glob("done-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the finished shards reach the driver
    os._exit(1)


def test_killed_worker_is_one_error_naming_scaling_retries(own_cluster, tmp_path) -> None:
    # the broadcast input keeps a copy on every worker: nothing drops the spares while a shard waits
    assert not own_cluster.client.amm.running()
    markers = tmp_path / "markers"
    markers.mkdir()
    store = SQLiteCache(tmp_path / "done.sqlite", "t")
    try:
        with pytest.raises(AxbenchDataError) as err:
            own_cluster.map(
                functools.partial(_square_or_die, str(markers)),
                [0, 1, 2, 3],
                on_done=lambda i, r: store.put(str(i), r),
            )
        retries = own_cluster.retries  # the LocalCluster's allowed_failures
        assert str(err.value) == (
            f"scaling: shard 3 of _square_or_die lost its worker {retries + 1} time(s) (scaling.retries = "
            f"{retries}); finished shards are in the caches, so a rerun resumes from there"
        )
        calls = pd.Series([p.read_text() for p in markers.glob("call-*")]).value_counts()
        assert calls.to_dict() == {"3": retries + 1, "0": 1, "1": 1, "2": 1}
        assert store.get_many(["0", "1", "2", "3"]) == {"0": 0, "1": 1, "2": 4}  # what finished stays
    finally:
        store.close()
