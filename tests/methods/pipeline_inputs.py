"""Kedro catalogs of MemoryDatasets for the training / latent_eval pipeline tests (tiny model, synthetic data)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import DataCatalog, MemoryDataset

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.methods.dictionary_file import DictionarySource
from axbench_kedro.methods.sae import SAESource
from axbench_kedro.scaling.config import ScalingParams

from .synthetic_data import CONCEPTS, make_concepts_meta, make_preference_data, make_train_data

__all__ = [
    "LAYER",
    "SAE_IDS",
    "DICTIONARY_FOLDERS",
    "KeptMemoryDataset",
    "write_sae",
    "write_dictionary",
    "training_catalog",
]


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


# the default folder of each Dictionary(...) method (conf/base/parameters_training.yml)
DICTIONARY_FOLDERS = ("reft-r1-16k", "diffmean-16k")


def write_dictionary(
    folder, weight: torch.Tensor, concepts: list[str], refs: list[str] | None = None, max_act=None
) -> Path:
    """A dictionary in the released layout (protocol §3.16): ``folder/weight.pt`` (one pickled tensor),
    ``metadata.jsonl`` (concept_id = line index, concept, ref, concept_genres_map) and ``acts.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(weight, folder / "weight.pt")
    refs = refs or ["https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/0"] * len(concepts)
    lines = [
        json.dumps({"concept_id": i, "concept": c, "ref": r, "concept_genres_map": {c: ["text"]}})
        for i, (c, r) in enumerate(zip(concepts, refs, strict=True))
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    max_act = max_act if max_act is not None else [float(i + 1) for i in range(len(concepts))]
    acts = {
        "thresholds": {str(i): 0.0 for i in range(len(concepts))},
        "max_act": {str(i): v for i, v in enumerate(max_act)},
    }
    (folder / "acts.json").write_text(json.dumps(acts), encoding="utf-8")
    return folder


def _tiny_dictionaries(root: Path, d: int) -> str:
    """Both default dictionaries under ``root``: an unrelated row first, then the synthetic concepts (shuffled)."""
    texts = ["an unrelated concept", CONCEPTS[2][0], CONCEPTS[0][0], CONCEPTS[1][0]]
    for k, folder in enumerate(DICTIONARY_FOLDERS):
        if (root / folder).exists():
            continue  # a rerun keeps the files (and the training cache keys)
        weight = torch.randn(len(texts), d, generator=torch.Generator().manual_seed(k))
        write_dictionary(root / folder / f"l{LAYER}", weight, texts)
    return str(root)


def training_catalog(
    tm, sae_path, store_path, params: TrainingParams | None = None, dictionaries: str | None = None
) -> DataCatalog:
    """``dictionaries``: root of the released dictionaries (``None`` = write both tiny ones next to the cache)."""
    if dictionaries is None:
        dictionaries = _tiny_dictionaries(Path(store_path).parent / "dictionaries", tm.d_model)
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
            "released_dictionaries": MemoryDataset(DictionarySource(dictionaries), copy_mode="assign"),
            "training_cache": MemoryDataset(ArtifactStore(store_path), copy_mode="assign"),
            "params:run": MemoryDataset(
                RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"
            ),
            "params:training": MemoryDataset(params or TrainingParams(), copy_mode="assign"),
            "params:scaling": MemoryDataset(ScalingParams(), copy_mode="assign"),
        }
    )


def run_pipeline(pipeline: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run ``pipeline`` on in-memory ``inputs`` (every free input must be given) and return all its outputs."""
    from kedro.runner import SequentialRunner

    missing = sorted(pipeline.inputs() - inputs.keys())
    assert not missing, f"test inputs lack {missing}"
    catalog = DataCatalog(
        {
            **{name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()},
            **{name: KeptMemoryDataset() for name in pipeline.all_outputs()},
        }
    )
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


def run_steering(
    tmp_path: Path,
    *,
    tm: Any,
    concepts_meta: pd.DataFrame,
    artifacts: dict[str, Any],
    max_activations: pd.DataFrame,
    params: Any,
    instructions: list[str],
    run: RunSettings | None = None,
    generator_reply: Callable[[dict], str] = lambda body: "Talk about it.",
    judge_reply: Callable[[dict], str] = lambda body: "Fine.\nRating: [[2]]",
) -> dict[str, Any]:
    """The steering_eval pipeline on in-memory inputs, with loopback generator and judge servers."""
    from axbench_kedro.cache import SQLiteCache
    from axbench_kedro.pipelines.steering_eval import create_pipeline
    from fixtures.fake_openai import FakeOpenAIServer, client_for
    from fixtures.project_catalog import project_llm_prices, project_prompt_templates

    with FakeOpenAIServer(reply_fn=generator_reply) as gen, FakeOpenAIServer(reply_fn=judge_reply) as judge:
        return run_pipeline(
            create_pipeline(),
            {
                "concepts_meta": concepts_meta,
                "steering_instructions": pd.DataFrame({"instruction": instructions}),
                "method_artifacts": artifacts,
                "max_activations": max_activations,
                "target_model": tm,
                "generator_llm": client_for(gen, tmp_path / "llm.sqlite"),
                "judge_llm": client_for(judge, tmp_path / "llm.sqlite"),
                "llm_prices": project_llm_prices(),
                "prompt_templates": project_prompt_templates(),
                "generation_cache": SQLiteCache(tmp_path / "gen.sqlite", "g"),
                "params:steering_eval": params,
                "params:run": run or RunSettings(setting="tiny", layer=LAYER, seed=42),
                "params:scaling": ScalingParams(),
            },
        )


def run_latent(
    tmp_path: Path,
    *,
    tm: Any,
    concepts_meta: pd.DataFrame,
    artifacts: dict[str, Any],
    run: RunSettings | None = None,
) -> dict[str, Any]:
    """The latent_eval pipeline on 3 synthetic concepts (4 positives, 4 negatives, 1 hard negative each), no SAE
    table, no PromptDetection rater, no cache."""
    from axbench_kedro.config.latent_eval import LatentEvalParams
    from axbench_kedro.detection.sae_max_act import SAEMaxActTable
    from axbench_kedro.pipelines.latent_eval import create_pipeline
    from fixtures.project_catalog import project_llm_prices, project_prompt_templates

    from .synthetic_data import make_latent_eval_data

    return run_pipeline(
        create_pipeline(),
        {
            "latent_eval_data": make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1),
            "concepts_meta": concepts_meta,
            "method_artifacts": artifacts,
            "target_model": tm,
            "detection_rater_llm": None,
            "sae_max_act": SAEMaxActTable(None),
            "llm_prices": project_llm_prices(),
            "prompt_templates": project_prompt_templates(),
            "latent_cache": ArtifactStore(tmp_path / "latent_cache"),
            "params:run": run or RunSettings(setting="tiny", layer=LAYER, seed=42),
            "params:latent_eval": LatentEvalParams(use_cache=False),
            "params:scaling": ScalingParams(),
        },
    )
