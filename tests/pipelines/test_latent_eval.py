"""``training`` then ``latent_eval`` on a tiny model: scores, metrics, imbalanced set, magnitudes, ROC plot, cache."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.lazy import LazyDataset
from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.datasets.sae_max_act import SAEMaxActDataset
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods import get_method
from axbench_kedro.metrics.detection import METRIC_COLUMNS
from axbench_kedro.pipelines.latent_eval import create_pipeline as latent_pipeline
from axbench_kedro.pipelines.latent_eval.nodes import compute_max_activations
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from axbench_kedro.scaling.config import ScalingParams
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates
from fixtures.tiny_models import make_tiny_target_model
from methods.pipeline_inputs import LAYER, SAE_IDS, KeptMemoryDataset, training_catalog, write_sae
from methods.synthetic_data import CONCEPTS, make_latent_eval_data

SIGNATURES = {c: set(words.split()) for c, words in CONCEPTS}


def make_rater():
    """PromptDetection replies: 2 when a signature word of the concept is in the text, else 0; the first reply is
    unparsable for PromptDetection (trailing dot: no strip) and the second is `[[nan]]` ([D 29]): both score -1."""
    calls = []

    def rate(body: dict) -> str:
        content = body["messages"][-1]["content"]
        concept = next(c for c in SIGNATURES if c in content)
        text = content.split("<<<TEXT", 1)[1].split("TEXT>>>", 1)[0]
        calls.append(text)
        if len(calls) == 1:
            return "Hmm.\nRating: [[1.5]]."
        if len(calls) == 2:
            return "Undecided.\nRating: [[nan]]"
        hit = bool(SIGNATURES[concept] & set(re.findall(r"\w+", text)))
        return f"Looks {'clear' if hit else 'absent'}.\nRating: [[{2 if hit else 0}]]"

    return rate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latent")
    tm = make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)
    catalog = training_catalog(tm, write_sae(tmp / "params.npz"), tmp / "cache")
    SequentialRunner().run(training_pipeline(), catalog)
    return tm, catalog.load("method_artifacts"), catalog.load("concepts_meta"), tmp


def latent_catalog(
    tm, arts, meta, client, cache_path, params: LatentEvalParams, sae_max_act: str | None = None
) -> DataCatalog:
    return DataCatalog(
        {
            "sae_max_act": SAEMaxActDataset(filepath=sae_max_act),
            "latent_eval_data": MemoryDataset(
                make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1)
            ),
            "concepts_meta": MemoryDataset(meta),
            "method_artifacts": MemoryDataset(arts, copy_mode="assign"),
            "target_model": MemoryDataset(tm, copy_mode="assign"),
            "detection_rater_llm": MemoryDataset(client, copy_mode="assign"),
            "llm_prices": MemoryDataset(project_llm_prices(), copy_mode="assign"),
            "prompt_templates": MemoryDataset(project_prompt_templates(), copy_mode="assign"),
            "latent_cache": MemoryDataset(ArtifactStore(cache_path), copy_mode="assign"),
            "params:run": MemoryDataset(
                RunSettings(setting="tiny", layer=LAYER, seed=42), copy_mode="assign"
            ),
            "params:latent_eval": MemoryDataset(params, copy_mode="assign"),
            "params:scaling": MemoryDataset(ScalingParams(), copy_mode="assign"),
            **{
                name: KeptMemoryDataset()
                for name in (
                    "latent_scores",
                    "imbalance_scores",
                    "imbalance_negatives",
                    "imbalance_prompt_scores",
                )
            },
        }
    )


def test_latent_eval_end_to_end(trained) -> None:
    tm, arts, meta, tmp = trained
    params = LatentEvalParams(prompt_detection={"max_new_tokens": 24})
    with FakeOpenAIServer(reply_fn=make_rater()) as server:
        client = client_for(server, tmp / "llm.sqlite")
        catalog = latent_catalog(tm, arts, meta, client, tmp / "latent_cache", params)
        SequentialRunner().run(latent_pipeline(), catalog)
        n_requests = len(server.requests)
    scores = catalog.load("latent_scores")
    metrics = catalog.load("latent_metrics")
    data = make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1)
    methods = TrainingParams().method_names()  # every registered method (a new built-in joins by itself)
    assert {
        "DiffMean",
        "PCA",
        "LAT",
        "Probe",
        "ReFT-r1",
        "SSV",
        "SAE",
        "SAE-A",
        "BoW",
        "Prompt",
        "Random",
    } <= set(methods)
    assert set(scores["method"]) == {m for m in methods if get_method(m).detects}
    assert (scores.groupby("method").size() == len(data)).all()
    assert list(scores.columns[:7]) == ["concept_id", "row_id", "category", "method", "max_act", "max_act_idx",
                                        "max_token"]  # fmt: skip
    assert (scores["max_act"] == scores["max_act"].round(3)).all()
    prompt = scores[scores["method"] == "Prompt"].set_index("row_id")
    assert set(prompt["max_act"]) <= {-1.0, 0.0, 2.0} and (prompt["max_act"] == -1).any()
    assert n_requests == len(data)
    usage = catalog.load("latent_eval_llm_usage")
    assert int(usage["calls"].iloc[0]) == len(data) and int(usage["parse_failures"].iloc[0]) >= 2
    # the template and its hash on every PromptDetection row (and the usage row), null on the other methods
    sha = usage["template_sha256"].iloc[0]
    assert len(sha) == 64 and set(prompt["template_sha256"]) == {sha}
    assert set(prompt["template"]) == {"detect_concept_rating"}
    assert scores.loc[scores["method"] != "Prompt", "template_sha256"].isna().all()
    assert prompt["max_act"].notna().all() and (prompt["max_act"] == -1).sum() >= 2  # `[[nan]]` → −1, not NaN
    prompt_metrics = metrics[metrics["method"] == "Prompt"]
    # counted per concept and method, the non-finite rating with the other parse failures
    assert int(prompt_metrics["n_parse_failures"].sum()) == int(usage["parse_failures"].iloc[0])
    assert (metrics.loc[metrics["method"] != "Prompt", "n_parse_failures"] == 0).all()

    assert set(METRIC_COLUMNS) <= set(metrics.columns)
    assert {"f1_imb", "precision_imb", "recall_imb", "auroc_imb"} <= set(metrics.columns)
    assert len(metrics) == 3 * sum(get_method(m).detects for m in methods)  # LoRA, LoReFT: no detection
    assert metrics["roc_auc"].between(0, 1).all()
    bow = metrics[metrics["method"] == "BoW"]
    assert bow["roc_auc"].mean() > 0.8  # the synthetic concepts are lexical
    assert (
        metrics.loc[metrics["method"] == "Prompt", "f1_imb"].isna().all()
    )  # no LLM call per (negative, concept): opt-in [D 32]
    assert set(metrics.loc[metrics["method"] == "Prompt", "imb_status"]) == {"opt-in"}
    assert set(metrics.loc[metrics["method"] != "Prompt", "imb_status"]) == {"scored"}
    assert catalog.load("imbalance_prompt_scores").empty
    assert metrics.loc[metrics["method"] == "DiffMean", "auroc_imb"].notna().all()
    assert (metrics["n_hard_negative"] == 1).all()

    imb = catalog.load("imbalance_scores")
    pool = catalog.load("imbalance_negatives")
    assert len(pool) == 12  # every negative of the tiny set (fewer than 4 × 100)
    assert len(imb[imb["method"] == "DiffMean"]) == 12 * 3
    own = scores[scores["method"] == "DiffMean"].set_index("row_id")
    for rec in pool.itertuples():
        cid = int(data.loc[rec.source_row_id, "concept_id"])
        mine = imb[
            (imb["method"] == "DiffMean") & (imb["neg_row_id"] == rec.neg_row_id) & (imb["concept_id"] == cid)
        ]
        assert float(mine["max_act"].iloc[0]) == pytest.approx(
            float(own.loc[rec.source_row_id, "max_act"]), abs=1e-3
        )

    mags = catalog.load("max_activations")
    # the rank-1 methods and the Random control
    assert set(mags["method"]) == {
        m for m in methods if get_method(m).steers and not get_method(m).factor_free
    }
    assert {"BoW", "Prompt"}.isdisjoint(mags["method"])
    expected = scores[scores["method"] == "DiffMean"].groupby("concept_id")["max_act"].max()
    got = mags[mags["method"] == "DiffMean"].set_index("concept_id")
    assert np.allclose(got.loc[expected.index, "max_act"], expected)
    unit = mags["method"].map(lambda m: get_method(m).magnitude_source == "unit")  # the RePS family: m = 1
    assert (mags.loc[unit, "magnitude_base"] == 1.0).all() and set(mags.loc[unit, "source"]) <= {"unit"}
    mags = mags[~unit]
    assert ((mags["magnitude_base"] > 0) & ((mags["max_act"] > 0) | (mags["magnitude_base"] == 50.0))).all()
    assert set(mags["source"]) == {"latent_eval"}
    assert isinstance(catalog.load("latent_roc_plot"), Figure)

    # rerun: scores come from the caches (no forward pass, no LLM call)
    with FakeOpenAIServer(reply_fn=make_rater()) as server:
        client = client_for(server, tmp / "llm.sqlite")
        again = latent_catalog(tm, arts, meta, client, tmp / "latent_cache", params)
        SequentialRunner().run(latent_pipeline(), again)
        assert len(server.requests) == 0
    pd.testing.assert_frame_equal(again.load("latent_scores"), scores)


def test_prompt_detection_can_be_excluded(trained) -> None:
    tm, arts, meta, tmp = trained
    params = LatentEvalParams(exclude_methods=["Prompt", "SAE-A"], use_cache=False)
    # The rater as the catalog gives it: a lazy handle around a local client whose model does not exist. Excluding
    # Prompt must never build it (nothing loaded, no error).
    rater = LazyDataset(
        {
            "type": "axbench_kedro.datasets.llm_client.LLMClientDataset",
            "backend": "local",
            "target_model_spec": {"source": "local", "name_or_path": str(tmp / "no-such-model")},
            "cache_path": str(tmp / "unused.sqlite"),
            "top_k": 50,
        }
    ).load()
    catalog = latent_catalog(tm, arts, meta, rater, tmp / "unused", params)
    SequentialRunner().run(latent_pipeline(), catalog)
    assert not rater.loaded and not (tmp / "unused.sqlite").exists()
    scores = catalog.load("latent_scores")
    assert "Prompt" not in set(scores["method"]) and "SAE-A" not in set(scores["method"])
    assert int(catalog.load("latent_eval_llm_usage")["calls"].iloc[0]) == 0


def test_sae_magnitudes_come_from_the_sae_max_act_table(trained) -> None:
    """SAE and SAE-A steer with the table's max_act of the feature they use (§3.7, §3.8); without a table the
    latent-eval rule applies, with the reason recorded [D 13]; a feature the table lacks is an error [D 12]."""
    tm, arts, meta, tmp = trained
    width = 32  # write_sae's width
    values = {f: 10.0 + f / 4 for f in range(width)}
    values[SAE_IDS[1]] = -2.0  # a non-positive table value gets the <= 0 -> 50 rule
    path = tmp / "sae_max_act.csv"
    pd.DataFrame({"sae_id": list(values), "max_act": list(values.values())}).to_csv(path, index=False)
    params = LatentEvalParams(exclude_methods=["Prompt"], use_cache=False)
    catalog = latent_catalog(tm, arts, meta, None, tmp / "unused", params, sae_max_act=str(path))
    SequentialRunner().run(latent_pipeline(), catalog)
    mags = catalog.load("max_activations").set_index(["method", "concept_id"])
    assert arts["SAE"].meta["sae_ids"] == SAE_IDS  # SAE: concepts_meta.sae_id; SAE-A: its AUROC choice
    for name in ("SAE", "SAE-A"):
        art = arts[name]
        for cid, feature in zip(art.concept_ids, art.meta["sae_ids"], strict=True):
            row = mags.loc[(name, cid)]
            assert (row["source"], row["max_act"]) == ("sae_table", values[feature])
            assert row["magnitude_base"] == (values[feature] if values[feature] > 0 else 50.0)
            assert row["source_ref"].startswith(str(path)) and f"{width} rows" in row["source_ref"]
    assert mags.loc[("SAE", 1), "magnitude_base"] == 50.0
    diffmean = mags.loc["DiffMean"]
    assert set(diffmean["source"]) == {"latent_eval"} and set(diffmean["source_ref"]) == {""}

    # No table (the file does not exist): the latent-eval rule, source latent_eval, the reason as the reference
    scores = catalog.load("latent_scores")
    absent = SAEMaxActDataset(filepath=str(tmp / "absent.csv")).load()
    fallback = compute_max_activations(scores, arts, absent).set_index(["method", "concept_id"])
    for name in ("SAE", "SAE-A"):
        expected = scores[scores["method"] == name].groupby("concept_id")["max_act"].max()
        got = fallback.loc[name]
        assert set(got["source"]) == {"latent_eval"}
        assert np.allclose(got.loc[expected.index, "max_act"], expected)
        assert np.allclose(got.loc[expected.index, "magnitude_base"], np.where(expected > 0, expected, 50.0))
        assert all("absent.csv does not exist" in ref for ref in got["source_ref"])

    # A present table without SAE-A's feature of concept 2: one error naming method, concept and feature
    feature = arts["SAE-A"].meta["sae_ids"][2]
    partial = tmp / "partial.jsonl"
    pd.DataFrame({"index": [str(f) for f in values if f != feature], "maxValue": 1.0}).to_json(
        partial, orient="records", lines=True
    )
    table = SAEMaxActDataset(filepath=str(partial)).load()
    with pytest.raises(AxbenchDataError, match=rf"'SAE-A': concept_id 2 -> feature {feature}\b.*\[D 12\]"):
        compute_max_activations(scores, arts, table)
