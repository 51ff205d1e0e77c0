"""One-pass detection scoring, the imbalanced pool, PromptDetection parsing and the artefact datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.datasets.method_artifacts import ArtifactStore, MethodArtifactsDataset
from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.chat import chat_prefix_length, format_detect
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.prompt import parse_detection_rating
from axbench_kedro.methods.scoring import EncoderBank, score_rows
from axbench_kedro.pipelines.latent_eval.nodes import sample_imbalance_negatives
from fixtures.tiny_models import make_tiny_target_model

from .synthetic_data import make_latent_eval_data

LAYER = 1


def _artifacts(d: int, n: int, seed: int = 0) -> dict[str, MethodArtifact]:
    gen = torch.Generator().manual_seed(seed)
    meta = {"concept_ids": list(range(n)), "layer": LAYER}
    arts = {
        name: MethodArtifact(
            name, {"weight": torch.randn(n, d, generator=gen), "bias": torch.zeros(n)}, dict(meta)
        )
        for name in ("DiffMean", "ReFT-r1", "SSV")
    }
    w_enc = torch.randn(d, n, generator=gen)
    arts["SAE"] = MethodArtifact(
        "SAE",
        {
            "W_enc": w_enc,
            "b_enc": torch.randn(n, generator=gen),
            "threshold": torch.rand(n, generator=gen),
            "W_dec": torch.randn(n, d, generator=gen),
            "b_dec": torch.zeros(d),
        },  # fmt: skip
        dict(meta),
    )
    return arts


def test_one_pass_equals_per_method_scoring_and_the_hand_computation() -> None:
    tm = make_tiny_target_model("gemma2", n_layers=2, hidden=64, seed=3)
    data = make_latent_eval_data(n_concepts=3)
    texts = [format_detect(tm.tokenizer, i, o) for i, o in zip(data["input"], data["output"], strict=True)]
    cids = data["concept_id"].tolist()
    arts = _artifacts(tm.d_model, 3)
    pool = [1, 5, 9]
    together = score_rows(tm, texts, cids, EncoderBank.from_artifacts(arts), LAYER, 4, full_rows=pool,
                          keep_token_acts=True)  # fmt: skip
    for j, name in enumerate(arts):
        alone = score_rows(
            tm, texts, cids, EncoderBank.from_artifacts({name: arts[name]}), LAYER, 3, full_rows=pool
        )
        assert np.allclose(together.max_act[:, j], alone.max_act[:, 0], atol=1e-4)
        assert (together.max_idx[:, j] == alone.max_idx[:, 0]).all()
        for r in pool:
            k = EncoderBank.from_artifacts(arts)
            assert np.allclose(
                together.full[r][k.offsets[name] : k.offsets[name] + 3], alone.full[r], atol=1e-4
            )
    # by hand for DiffMean (linear) on row 0: max over positions >= P of h_t . w_c
    p = chat_prefix_length(tm.tokenizer)
    enc = encode(tm, [texts[0]])
    with torch.no_grad():
        h = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], LAYER)[0]
    s = h[p:] @ arts["DiffMean"].tensors["weight"][cids[0]]
    assert together.max_act[0, 0] == pytest.approx(float(s.max()), abs=1e-4)
    assert together.max_idx[0, 0] == int(torch.argmax(s))
    assert len(together.tokens[0]) == together.acts[0].shape[0] == h.shape[0] - p
    # pool rows against every concept: column of its own concept equals its own score
    for r in pool:
        assert together.full[r][cids[r]] == pytest.approx(together.max_act[r, 0], abs=1e-5)


def test_imbalanced_pool_has_100_negatives_per_positive() -> None:
    data = make_latent_eval_data(n_concepts=3, n_pos=2, n_neg=80, n_hard=1)  # 240 negatives, 2 positives each
    params = LatentEvalParams()
    pool = sample_imbalance_negatives(data, RunSettings(setting="s", layer=1, seed=42), params)
    assert len(pool) == 200
    assert (data.loc[pool["source_row_id"], "category"] == "negative").all()
    assert (pool["output_concept"] == "EEEEE").all() and pool["source_row_id"].is_unique
    again = sample_imbalance_negatives(data, RunSettings(setting="s", layer=1, seed=42), params)
    assert again.equals(pool)
    other = sample_imbalance_negatives(data, RunSettings(setting="s", layer=1, seed=7), params)
    assert not other["source_row_id"].equals(pool["source_row_id"])
    small = sample_imbalance_negatives(
        make_latent_eval_data(), RunSettings(setting="s", layer=1, seed=1), params
    )
    assert len(small) == 12  # fewer than 4 x 100 exist: all of them


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("The text is about cars.\nRating: [[2]]", 2.0),
        ("Rating: [[1.5]].", -1.0),
        ("Rating: [[1.5]]", 1.5),
        ("**Rating:** [[2]]", 2.0),
        ('Rating: "1"', 1.0),
        ("Rating: [[0]] then Rating: [[1]]", 1.0),
        ("Rating: [[3]]", -1.0),
        ("no rating here", -1.0),
        ("", -1.0),
        # §10.3 / [D 29]: every non-finite parsed value is the failure value −1 (upstream kept NaN)
        ("Rating: [[nan]]", -1.0),
        ("Rating: [[NaN]]", -1.0),
        ("Rating: [[inf]]", -1.0),
        ("Rating: [[-inf]]", -1.0),
        ('Rating: "Infinity"', -1.0),
    ],
)
def test_prompt_detection_parser(reply: str, rating: float) -> None:
    assert parse_detection_rating(reply) == rating


def test_artifacts_dataset_round_trip_with_versions(tmp_path) -> None:
    from kedro.io.core import Version

    arts = _artifacts(8, 2)
    arts["SAE-A"] = MethodArtifact(
        "SAE-A", {}, {"status": "skipped", "skip_reason": "no SAE", "concept_ids": [0, 1]}
    )
    ds = MethodArtifactsDataset(
        path=str(tmp_path / "method_artifacts"), version=Version(None, "2026-01-01T00.00.00.000Z")
    )
    ds.save(arts)
    loaded = MethodArtifactsDataset(
        path=str(tmp_path / "method_artifacts"), version=Version(None, None)
    ).load()
    assert list(loaded) == list(arts)
    for name, art in arts.items():
        for key, t in art.tensors.items():
            assert torch.equal(loaded[name].tensors[key], t)
    assert not loaded["SAE-A"].ok and loaded["SAE-A"].skip_reason == "no SAE"
    assert loaded["DiffMean"].meta["fingerprint"] == arts["DiffMean"].fingerprint()
    assert all(loaded[n].fingerprint() == arts[n].fingerprint() for n in arts)  # stable through the disk
    assert (
        tmp_path / "method_artifacts" / "2026-01-01T00.00.00.000Z" / "method_artifacts" / "DiffMean.json"
    ).is_file()


def test_artifact_store_frames_and_rows(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.get("ab" * 32) is None
    store.put("ab" * 32, {"weight": torch.ones(3), "vocabulary": ["a", "b"]})
    got = store.get("ab" * 32)
    assert torch.equal(got["weight"], torch.ones(3)) and got["vocabulary"] == ["a", "b"]
    frame = pd.DataFrame({"x": [1, 2]})
    store.put_frames("cd" * 32, {"f": frame})
    assert store.get_frames("cd" * 32)["f"].equals(frame)
