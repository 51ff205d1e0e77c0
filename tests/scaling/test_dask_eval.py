"""training → latent_eval → steering_eval on a Dask LocalCluster (2 worker processes on 127.0.0.1) equals the
sequential run; a worker killed during a generation shard loses and duplicates nothing."""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.detection.rows import empty_scores
from axbench_kedro.detection.sae_max_act import SAEMaxActTable
from axbench_kedro.pipelines.latent_eval import nodes as latent_nodes
from axbench_kedro.pipelines.steering_eval import nodes as steering_nodes
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from axbench_kedro.pipelines.training import nodes as training_nodes
from axbench_kedro.scaling import ScalingParams
from axbench_kedro.scaling.executor import LazyExecutor
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates
from methods.pipeline_inputs import LAYER, training_catalog
from methods.synthetic_data import make_latent_eval_data
from scaling.lending import Borrowed, needs_dask

pytestmark = [needs_dask, pytest.mark.slow]

RUN = RunSettings(setting="tiny", layer=LAYER, seed=42)
DASK = ScalingParams(engine="dask")
LATENT = LatentEvalParams(batch_size=4, use_cache=False, keep_token_acts=True, imbalance_factor=2)
STEERING = SteeringEvalParams.model_validate(
    {
        "methods": ["DiffMean", "Prompt"],
        "factors": [0.5, 1.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "judge": {"kind": "llm", "model": "gpt-4o-mini"},
        "n_resamples": 20,
    }
)


def _crash_first_shard(marker_dir: str, fn: Any, *args: Any) -> Any:
    """Record the call; the first shard of the run (whichever worker starts it) kills its worker process."""
    shard = args[-1]
    calls = Path(marker_dir)
    (calls / f"call-{uuid.uuid4().hex}").write_text(shard.work.keys[0])
    try:
        fd = os.open(calls / "crashed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return fn(*args)
    os.write(fd, shard.work.keys[0].encode())
    os.close(fd)
    os._exit(1)


def _train(tm, where: Path, scaling: ScalingParams):
    # DiffMean only: the LM-objective methods on Dask are covered by test_dask_training.py
    params = TrainingParams(methods=["DiffMean"], concept_group_size=1)
    catalog = training_catalog(tm, str(where / "no_sae.npz"), where / "train_cache", params)
    catalog["params:scaling"] = MemoryDataset(scaling, copy_mode="assign")
    SequentialRunner().run(training_pipeline(), catalog)
    return catalog.load("method_artifacts"), catalog.load("concepts_meta")


def _latent(tm, arts, scaling: ScalingParams):
    data = make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1)
    pool = latent_nodes.sample_imbalance_negatives(data, RUN, LATENT)
    return latent_nodes.score_model_methods(data, pool, arts, tm, None, RUN, LATENT, scaling)


def _prompts(tm, meta: pd.DataFrame) -> pd.DataFrame:
    instructions = pd.DataFrame({"instruction": [f"tell me about the {w}" for w in ("sea", "city", "moon")]})
    texts = pd.DataFrame({"concept_id": meta["concept_id"], "text": "Mention the concept in every answer."})
    return steering_nodes.build_steering_prompts(meta, instructions, texts, tm, STEERING)


def _generate(tm, prompts, arts, mags, cache_path: Path, scaling: ScalingParams) -> pd.DataFrame:
    cache = SQLiteCache(cache_path, "g")
    return steering_nodes.generate_steering(prompts, arts, mags, tm, cache, STEERING, RUN, scaling)


def _judge(tm, gens, prompts, llm_path: Path) -> pd.DataFrame:
    with FakeOpenAIServer(
        reply_fn=lambda body: f"Ok.\nRating: [[{len(body['messages'][-1]['content']) % 3}]]"
    ) as srv:
        judgements, _ = steering_nodes.judge_steering(
            gens,
            prompts,
            client_for(srv, llm_path),
            project_llm_prices(),
            project_prompt_templates(),
            tm,
            STEERING,
            RUN,
        )
    return judgements


@pytest.fixture(scope="module")
def sequential(tm, tmp_path_factory):
    """The sequential run's artifacts, latent scores, prompts, magnitudes, generations and judgements."""
    where = tmp_path_factory.mktemp("sequential")
    arts, meta = _train(tm, where, ScalingParams())
    scores, imbalance = _latent(tm, arts, ScalingParams())
    mags = latent_nodes.compute_max_activations(
        latent_nodes.merge_latent_scores(scores, empty_scores()), arts, SAEMaxActTable(None)
    )
    prompts = _prompts(tm, meta)
    gens = _generate(tm, prompts, arts, mags, where / "gen.sqlite", ScalingParams())
    return {
        "arts": arts,
        "scores": scores,
        "imbalance": imbalance,
        "mags": mags,
        "prompts": prompts,
        "gens": gens,
        "judgements": _judge(tm, gens, prompts, where / "llm.sqlite"),
    }


def _lend(monkeypatch, cluster, wrap: Any = None) -> Borrowed:
    lent = Borrowed(cluster, wrap)
    monkeypatch.setattr(training_nodes, "make_executor", lambda params, gpu: lent)
    monkeypatch.setattr(LazyExecutor, "for_model", staticmethod(lambda params, tm: lent))
    return lent


def test_dask_training_latent_and_steering_equal_the_sequential_run(
    tm, sequential, dask_cluster, tmp_path, monkeypatch
) -> None:
    lent = _lend(monkeypatch, dask_cluster)
    arts, meta = _train(tm, tmp_path, DASK)
    for name, art in sequential["arts"].items():
        assert set(arts[name].tensors) == set(art.tensors) and art.tensors
        for key, value in art.tensors.items():
            assert torch.equal(arts[name].tensors[key], value), (name, key)
    trained = lent.maps

    scores, imbalance = _latent(tm, arts, DASK)
    assert lent.maps == trained + 1  # the scoring ran as shards
    assert set(scores["method"]) == {"DiffMean"} and len(imbalance) > 0
    pd.testing.assert_frame_equal(scores, sequential["scores"])
    pd.testing.assert_frame_equal(imbalance, sequential["imbalance"])

    gens = _generate(tm, sequential["prompts"], arts, sequential["mags"], tmp_path / "gen.sqlite", DASK)
    assert lent.maps == trained + 2
    assert set(gens["method"]) == {"DiffMean", "Prompt"}
    assert gens["perplexity_conditional"].notna().any()
    pd.testing.assert_frame_equal(gens, sequential["gens"])
    judgements = _judge(tm, gens, sequential["prompts"], tmp_path / "llm.sqlite")
    pd.testing.assert_frame_equal(judgements, sequential["judgements"])

    # every batch reached the driver's cache: a rerun ships nothing
    again = _generate(tm, sequential["prompts"], arts, sequential["mags"], tmp_path / "gen.sqlite", DASK)
    assert lent.maps == trained + 2
    pd.testing.assert_frame_equal(again, sequential["gens"])


def test_a_worker_killed_during_a_shard_loses_and_duplicates_nothing(
    tm, sequential, own_cluster, tmp_path, monkeypatch
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    _lend(monkeypatch, own_cluster, wrap=lambda fn: functools.partial(_crash_first_shard, str(markers), fn))
    cache = tmp_path / "gen.sqlite"
    gens = _generate(tm, sequential["prompts"], sequential["arts"], sequential["mags"], cache, DASK)
    pd.testing.assert_frame_equal(gens, sequential["gens"])

    killed = (markers / "crashed").read_text()
    calls = pd.Series([p.read_text() for p in markers.glob("call-*")]).value_counts()
    assert calls[killed] == 2  # the killed attempt, then Dask's retry on a live worker
    assert (calls.drop(killed) == 1).all()  # no finished shard ran twice
    assert not gens.duplicated(["method", "concept_id", "input_id", "factor"]).any()
    # one cache entry per generation unit (the factor-free Prompt generates once per instruction)
    prompt = gens["method"] == "Prompt"
    n_units = int((~prompt).sum()) + len(gens[prompt].drop_duplicates(["concept_id", "input_id"]))
    store = SQLiteCache(cache, "g")
    try:
        assert len(store) == n_units
    finally:
        store.close()
