"""Kedro catalogs of MemoryDatasets for the training / latent_eval pipeline tests (tiny model, synthetic data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from kedro.io import DataCatalog, MemoryDataset

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.methods.sae import SAESource
from axbench_kedro.scaling.config import ScalingParams

from .synthetic_data import make_concepts_meta, make_preference_data, make_train_data

__all__ = ["LAYER", "SAE_IDS", "KeptMemoryDataset", "write_sae", "training_catalog"]


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate outputs after a run."""

    def _release(self) -> None:
        pass


LAYER = 1
SAE_IDS = [3, 7, 11]


def write_sae(path, d: int = 64, width: int = 32) -> str:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        W_enc=rng.normal(0, 0.2, (d, width)).astype(np.float32),
        b_enc=np.zeros(width, np.float32),
        threshold=np.full(width, 0.1, np.float32),
        W_dec=rng.normal(0, 1, (width, d)).astype(np.float32),
        b_dec=np.zeros(d, np.float32),
    )
    return str(path)


def training_catalog(tm, sae_path, store_path, params: TrainingParams | None = None) -> DataCatalog:
    meta = make_concepts_meta(3)
    meta["sae_id"] = pd.Series(SAE_IDS, dtype="int64")
    train = make_train_data(n_concepts=3, n_pos=6, n_pool=6)
    return DataCatalog(
        {
            "train_data": MemoryDataset(train),
            "concepts_meta": MemoryDataset(meta),
            "preference_data": MemoryDataset(make_preference_data(train)),
            "target_model": MemoryDataset(tm, copy_mode="assign"),
            "sae_params": MemoryDataset(SAESource(sae_path), copy_mode="assign"),
            "training_cache": MemoryDataset(ArtifactStore(store_path), copy_mode="assign"),
            "params:run": MemoryDataset(
                RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"
            ),
            "params:training": MemoryDataset(params or TrainingParams(), copy_mode="assign"),
            "params:scaling": MemoryDataset(ScalingParams(), copy_mode="assign"),
        }
    )
