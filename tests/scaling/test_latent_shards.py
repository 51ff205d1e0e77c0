"""Latent-scoring shards (runs of the sequential pass's batches) give the sequential scores, in-process: the
planning and the reassembly, checked without a cluster."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.detection.model_scores import score_model_outputs
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.pipelines.latent_eval.nodes import sample_imbalance_negatives
from axbench_kedro.scaling import SequentialExecutor
from axbench_kedro.scaling.latent import plan_latent_shards, score_model_outputs_sharded
from fixtures.tiny_models import make_tiny_target_model
from methods.synthetic_data import make_latent_eval_data

LAYER = 1


class _Workers(SequentialExecutor):
    """In-process, but sized as if it had ``n`` workers (so the rows are cut into more shards)."""

    def __init__(self, n: int) -> None:
        self.n = n

    @property
    def n_workers(self) -> int:
        return self.n


def _diffmean(d: int) -> dict[str, MethodArtifact]:
    w = torch.randn(3, d, generator=torch.Generator().manual_seed(0))
    meta = {"status": "ok", "layer": LAYER, "concept_ids": [0, 1, 2], "method": "DiffMean", "d": d}
    return {"DiffMean": MethodArtifact("DiffMean", {"weight": w, "bias": torch.zeros(3)}, meta)}


@pytest.mark.parametrize("workers", [1, 3])
def test_sharded_latent_scores_equal_the_single_pass(workers: int) -> None:
    tm = make_tiny_target_model("gemma3", n_layers=2, hidden=32, seed=1)
    data = make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1)
    params = LatentEvalParams(batch_size=4, keep_token_acts=True, imbalance_factor=2, use_cache=False)
    pool = sample_imbalance_negatives(data, RunSettings(setting="tiny", layer=LAYER, seed=42), params)
    arts = _diffmean(tm.d_model)

    shards = plan_latent_shards(data, pool, tm, params, 4 * workers)
    assert 1 < len(shards) <= 4 * workers
    assert sorted(r for s in shards for r in s.rows) == list(range(len(data)))  # every row once
    assert sum(len(s.pool) for s in shards) == len(pool)
    assert any(s.data["concept_id"].nunique() > 1 for s in shards)  # batches mix concepts, as in one pass

    want_scores, want_pool = score_model_outputs(data, pool, arts, tm, LAYER, params)
    got_scores, got_pool = score_model_outputs_sharded(_Workers(workers), data, pool, arts, tm, LAYER, params)
    pd.testing.assert_frame_equal(got_scores, want_scores)
    pd.testing.assert_frame_equal(got_pool, want_pool)
