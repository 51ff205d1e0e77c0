"""PromptDetection is rated by the target model (protocol §3.9) and joins the 1:100 set only when opted in [D 32].

The rater comes from the project's own ``detection_rater_llm`` catalog entry (tiny random Gemma as the target model)
or, for the API path, from the fake OpenAI server.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.runner import SequentialRunner

from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.datasets.lazy import LazyDataset
from axbench_kedro.detection.summary import latent_metrics_frame
from axbench_kedro.llm.templates import pick_template
from axbench_kedro.lm import loading
from axbench_kedro.pipelines.latent_eval import create_pipeline as latent_pipeline
from axbench_kedro.settings import CONFIG_LOADER_ARGS
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import ROOT, project_prompt_templates
from methods.synthetic_data import CONCEPTS, make_latent_eval_data
from pipelines.test_latent_eval import latent_catalog, trained  # noqa: F401 (module fixture)

IMB = ["f1_imb", "precision_imb", "recall_imb", "auroc_imb"]
DATA = make_latent_eval_data(n_concepts=3, n_pos=4, n_neg=4, n_hard=1)
N_NEG, N_CONCEPTS = int((DATA["category"] == "negative").sum()), 3


def rater_entry(env: str) -> dict:
    """The project's ``detection_rater_llm`` catalog config as ``kedro run --env env`` resolves it."""
    loader = OmegaConfigLoader(str(ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["catalog"]["detection_rater_llm"]


def tiny_rater(entry: dict, tm, cache_path) -> LazyDataset:
    """The catalog entry pointed at the tiny model (memoized as if the ``target_model`` dataset had loaded it)."""
    inner = {**entry["dataset"], "target_model_spec": tm.spec.model_dump(), "cache_path": str(cache_path)}
    return LazyDataset(inner, metadata=entry.get("metadata"))


@pytest.fixture()
def loaded_once(trained, monkeypatch):  # noqa: F811
    """The tiny target model as the process's loaded model; any real load (a second copy) fails the test."""
    tm = trained[0]
    monkeypatch.setitem(loading._LOADED, tm.spec, tm)

    def no_second_load(*args, **kwargs):
        raise AssertionError("the target model was loaded a second time")

    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_second_load)
    return tm


@pytest.mark.parametrize(("env", "batch"), [("gemma2_2b_l10", 256), ("gemma2_9b_l31", 128), ("demo", 32)])
def test_rater_catalog_entry_is_the_target_model(env: str, batch: int) -> None:
    entry = rater_entry(env)
    model = OmegaConfigLoader(str(ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})["globals"]
    inner = entry["dataset"]
    assert entry["type"] == "axbench_kedro.datasets.lazy.LazyDataset"
    assert entry["metadata"]["kedro-viz"]["layer"] == "raw"
    assert inner["type"] == "axbench_kedro.datasets.llm_client.LLMClientDataset"
    assert (inner["backend"], inner["top_k"], inner["prompt_style"]) == ("local", 50, "auto")
    assert inner["local_batch_size"] == batch
    assert inner["target_model_spec"] == model["model"]  # the run's own target model


def test_rater_reuses_the_loaded_model_with_top_k_50(loaded_once, tmp_path) -> None:
    handle = tiny_rater(rater_entry("gemma2_2b_l10"), loaded_once, tmp_path / "llm.sqlite").load()
    client = handle()
    assert client.backend.tm is loaded_once  # the memoized model, not a second copy
    assert (client.backend.top_k, client.backend.max_batch_size, client.backend_name) == (50, 256, "local")


LOGGER = "axbench_kedro.detection.prompt_detection"


class EventLog(logging.Handler):
    """Appends ``("log", message, snapshot())`` to ``events`` for each warning of PromptDetection's logger."""

    def __init__(self, events: list, snapshot=lambda: None) -> None:
        super().__init__(level=logging.WARNING)
        self.events, self.snapshot = events, snapshot

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(("log", record.getMessage(), self.snapshot()))


def test_local_rater_on_the_imbalanced_set(trained, loaded_once, tmp_path) -> None:  # noqa: F811
    tm, arts, meta, _ = trained
    params = LatentEvalParams(
        use_cache=False,
        prompt_detection_imbalance=True,
        prompt_detection={
            "template": "detect_concept_rating_base",
            "reply_prefix": "Rating: [[",
            "max_new_tokens": 3,
        },
    )
    handle = tiny_rater(rater_entry("demo"), tm, tmp_path / "llm.sqlite").load()
    client = handle()
    events: list = []
    original = client.backend.complete

    async def recorded(requests):
        events.append(("call", len(requests), None))
        return await original(requests)

    client.backend.complete = recorded
    handler = EventLog(events)
    logging.getLogger(LOGGER).addHandler(handler)
    try:
        catalog = latent_catalog(tm, arts, meta, handle, tmp_path / "latent_cache", params)
        SequentialRunner().run(latent_pipeline(), catalog)
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)

    n_ratings = N_NEG * N_CONCEPTS
    logs = [i for i, (kind, msg, _) in enumerate(events) if kind == "log" and "1:100 set" in msg]
    calls = [i for i, (kind, _, _) in enumerate(events) if kind == "call"]
    head = events[logs[0]][1]
    # announced before any rating call: ratings, maximum generated tokens; then a time estimate after one warm-up
    assert logs[0] < calls[0]
    assert f"{n_ratings} ratings ({N_NEG} negatives x {N_CONCEPTS} concepts; 0 cached" in head
    assert f"up to {n_ratings * 3} generated tokens (3 per rating)" in head
    estimate = events[logs[1]][1]
    assert "estimated time for the remaining" in estimate
    assert [i for i in calls if i < logs[1]] == [calls[0]] and events[calls[0]][1] == 32  # one warm-up batch

    pool = catalog.load("imbalance_prompt_scores")
    assert len(pool) == n_ratings and set(pool["method"]) == {"Prompt"}
    assert sorted(pool.groupby("concept_id").size()) == [N_NEG] * N_CONCEPTS
    usage = catalog.load("latent_eval_llm_usage").set_index("stage")
    row = usage.loc["latent_eval_imbalance"]
    assert (row["n_ratings"], row["max_generated_tokens"], row["top_k"]) == (n_ratings, n_ratings * 3, 50)
    assert row["estimate"] == estimate.split("1:100 set: ", 1)[1]
    bal = usage.loc["latent_eval"]
    settings = (bal["rater_backend"], bal["temperature"], bal["top_k"], bal["max_new_tokens"])
    assert settings == ("local", 1.0, 50, 3)  # T and the cap from params, top-k 50 from the catalog entry
    template = pick_template(project_prompt_templates(), "detect_concept_rating_base", "test")
    assert (bal["template"], bal["template_sha256"]) == (template.name, template.sha256)
    scores = catalog.load("latent_scores")
    prompt = scores[scores["method"] == "Prompt"]
    assert set(prompt["template_sha256"]) == {bal["template_sha256"]}
    assert set(prompt["rater_model"]) == {tm.name}

    # a pool row rated against its own concept is the balanced request itself: the same rating
    negs = catalog.load("imbalance_negatives")
    own = prompt.set_index("row_id")["max_act"]
    for rec in negs.itertuples():
        cid = int(DATA.loc[rec.source_row_id, "concept_id"])
        mine = pool[(pool["neg_row_id"] == rec.neg_row_id) & (pool["concept_id"] == cid)]["max_act"]
        assert float(mine.iloc[0]) == float(own.loc[rec.source_row_id])
    metrics = catalog.load("latent_metrics")
    mine = metrics[metrics["method"] == "Prompt"]
    assert np.isfinite(mine[IMB].to_numpy(dtype=float)).all() and set(mine["imb_status"]) == {"scored"}


def _signature_rater(body: dict) -> str:
    content = body["messages"][-1]["content"]
    concept = next(c for c, _ in CONCEPTS if c in content)
    text = content.split("<<<TEXT", 1)[1].split("TEXT>>>", 1)[0]
    hit = bool(set(dict(CONCEPTS)[concept].split()) & set(re.findall(r"\w+", text)))
    return f"Rating: [[{2 if hit else 0}]]"


def test_api_rater_on_the_imbalanced_set_is_priced_first(trained, tmp_path) -> None:  # noqa: F811
    tm, arts, meta, _ = trained
    params = LatentEvalParams(use_cache=False, prompt_detection_imbalance=True)
    events: list = []
    with FakeOpenAIServer(reply_fn=_signature_rater) as server:
        handler = EventLog(events, snapshot=lambda: len(server.requests))
        logging.getLogger(LOGGER).addHandler(handler)
        try:
            client = client_for(server, tmp_path / "llm.sqlite")
            catalog = latent_catalog(tm, arts, meta, client, tmp_path / "latent_cache", params)
            SequentialRunner().run(latent_pipeline(), catalog)
            n_requests = len(server.requests)
        finally:
            logging.getLogger(LOGGER).removeHandler(handler)
    n_ratings = N_NEG * N_CONCEPTS
    _, head, requests_then = next(e for e in events if "1:100 set" in e[1])
    assert requests_then == 0  # logged before the first request reached the server
    assert "estimated cost at most $" in head and "gpt-4o-mini in llm_prices" in head
    # every (negative, concept) pair once; the pairs of a negative and its own concept are the balanced requests
    assert n_requests == n_ratings + len(DATA) - N_NEG
    pool = catalog.load("imbalance_prompt_scores")
    assert len(pool) == n_ratings and set(pool["max_act"]) == {0.0}  # no signature word in any negative
    metrics = catalog.load("latent_metrics")
    mine = metrics[metrics["method"] == "Prompt"]
    assert (mine[IMB].to_numpy(dtype=float) == 1.0).all()  # positives 2, every pool negative 0
    usage = catalog.load("latent_eval_llm_usage").set_index("stage")
    assert usage.loc["latent_eval_imbalance", "estimate"].startswith("estimated cost at most $")
    assert pd.isna(usage.loc["latent_eval", "top_k"])  # an API rater has no top-k


def test_imb_status_says_why_metrics_are_missing() -> None:
    scores = pd.DataFrame(
        {
            "concept_id": [0] * 4,
            "row_id": range(4),
            "category": ["positive", "negative"] * 2,
            "method": ["Prompt", "Prompt", "DiffMean", "DiffMean"],
            "max_act": [2.0, 0.0, 1.0, 0.0],
        }
    )
    pool = pd.DataFrame(
        {"neg_row_id": [0, 1], "concept_id": [0, 0], "method": "DiffMean", "max_act": [0.5, 0.1]}
    )
    off = latent_metrics_frame(scores, pool, 2).set_index("method")
    assert (off.loc["Prompt", "imb_status"], off.loc["DiffMean", "imb_status"]) == ("opt-in", "scored")
    assert off.loc["Prompt", IMB].isna().all() and off.loc["DiffMean", IMB].notna().all()
    on = latent_metrics_frame(scores, pool, 2, llm_imbalance=True).set_index("method")
    assert on.loc["Prompt", "imb_status"] == "not scored"  # opted in but no pool rows: never silent
    empty = latent_metrics_frame(scores, pool.iloc[:0], 0).set_index("method")
    assert empty.loc["DiffMean", "imb_status"] == "no negatives"
