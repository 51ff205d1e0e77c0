"""The suppression pipeline's generation (suppression grid and attacks) on a Dask LocalCluster equals the sequential
run: the same batches, seeds and cache keys as steering (protocol §6 outputs unchanged by the engine)."""

from __future__ import annotations

import pandas as pd
import pytest

from axbench_kedro.scaling import ScalingParams
from axbench_kedro.scaling.executor import LazyExecutor
from fixtures.fake_openai import FakeOpenAIServer
from pipelines.test_suppression import _generator_reply, _judge_reply, _params, _run
from scaling.lending import Borrowed, needs_dask

pytestmark = [needs_dask, pytest.mark.slow]

GENERATED = ["suppression_generations", "attack_generations"]


def test_suppression_and_attack_generation_on_dask_equal_the_sequential_run(
    tm, dask_cluster, tmp_path, monkeypatch
) -> None:
    params = _params()
    with FakeOpenAIServer(reply_fn=_generator_reply) as gen, FakeOpenAIServer(reply_fn=_judge_reply) as judge:
        sequential = _run(tm, tmp_path / "sequential", gen, judge, params)
        lent = Borrowed(dask_cluster)
        monkeypatch.setattr(LazyExecutor, "for_model", staticmethod(lambda params, tm: lent))
        sharded = _run(tm, tmp_path / "dask", gen, judge, params, ScalingParams(engine="dask"))
    attack_settings = sequential.load("attack_prompts")[["attack", "n_shot"]].drop_duplicates()
    assert len(attack_settings) >= 2
    assert lent.maps == 1 + len(attack_settings)  # the suppression grid, then one map per attack setting
    for name in GENERATED:
        expected, got = sequential.load(name), sharded.load(name)
        assert len(expected) > 0 and {"DiffMean", "RePS", "Prompt"} <= set(expected["method"])
        pd.testing.assert_frame_equal(got, expected, obj=name)
    pd.testing.assert_frame_equal(sharded.load("attack_summary"), sequential.load("attack_summary"))
