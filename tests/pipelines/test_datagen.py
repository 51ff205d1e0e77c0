"""The datagen pipeline end to end on the tiny model against the loopback fake OpenAI server (protocol §2, §10.5).

The generator's replies are scripted per template (``tests/datagen/scripted_llm.py``): three concepts, one with one
contrast pair, one whose related-words call answers ``<NONE>``, one with two of three pairs passing the filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.concepts import ConceptEntry
from axbench_kedro.datagen.instructions import InstructionPools, stage_rng
from axbench_kedro.datagen.io import ProtocolParquetDataset, ProvidedTableDataset, read_table
from axbench_kedro.datagen.prompts import KINDS
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.generation import generate_greedy
from axbench_kedro.pipelines.datagen import create_pipeline
from datagen.scripted_llm import CONCEPTS, EXPECTED_PAIRS, LONG_ANSWER, ScriptedGenerator
from fixtures.fake_openai import FakeOpenAIServer, client_for
from fixtures.project_catalog import project_llm_prices, project_prompt_templates
from fixtures.released_layout import make_released_frames, write_released_layout

ROOT = Path(__file__).resolve().parents[2]
SEED = pd.read_csv(ROOT / "data" / "01_raw" / "seed_instructions.csv")
T = 8
OUTPUTS = (
    "concepts_meta",
    "train_data",
    "latent_eval_data",
    "preference_data",
    "datagen_llm_usage",
    "datagen_manifest",
)


def _params(**overrides: Any) -> DatagenParams:
    values = dict(
        max_concepts=3,
        num_of_examples=6,  # 3 positives per concept, 3 pool rows per genre
        latent_num_of_examples=7,  # int(0.15 * 7) = 1 math, 1 code, 5 text negatives
        output_length=T,
        max_related_words=3,
        target_batch_size=8,
        concepts_per_chunk=2,
    )
    values.update(overrides)
    return DatagenParams(**values)


RUN = RunSettings(setting="tiny", layer=1, seed=42)


@pytest.fixture()
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply_fn=ScriptedGenerator()) as srv:
        yield srv


def _catalog(
    tmp: Path,
    tm: Any,
    client: Any,
    params: DatagenParams,
    cache_name: str = "datagen.sqlite",
    provided: dict[str, Path] | None = None,
) -> DataCatalog:
    def keep(value: Any) -> MemoryDataset:
        return MemoryDataset(value, copy_mode="assign")

    provided = provided or {}
    datasets = {
        "concept_list": keep([ConceptEntry(c) for c in CONCEPTS]),
        "seed_instructions": MemoryDataset(SEED),
        "prompt_templates": keep(project_prompt_templates()),
        "llm_prices": keep(project_llm_prices()),
        **{
            f"provided_{kind}": ProvidedTableDataset(
                schema=kind, filepath=str(provided[kind]) if kind in provided else None
            )
            for kind in ("train_data", "latent_eval_data")
        },
        "target_model": keep(tm),
        "generator_llm": keep(client),
        "datagen_cache": keep(SQLiteCache(tmp / cache_name, table="datagen")),
        "params:datagen": keep(params),
        "params:run": keep(RUN),
        "datagen_llm_usage": CSVDataset(filepath=str(tmp / "out" / "usage.csv")),
        "datagen_manifest": JSONDataset(filepath=str(tmp / "out" / "manifest.json")),
    }
    for name in OUTPUTS[:4]:
        datasets[name] = ProtocolParquetDataset(schema=name, filepath=str(tmp / "out" / f"{name}.parquet"))
    return DataCatalog(datasets)


def _run(tmp: Path, tm: Any, client: Any, params: DatagenParams, **kw: Any) -> dict[str, pd.DataFrame]:
    catalog = _catalog(tmp, tm, client, params, **kw)
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


def _ntok(tm: Any, text: str) -> int:
    return len(tm.tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_gemma3) -> dict[str, Any]:
    """One full run, shared by the read-only checks below."""
    tmp = tmp_path_factory.mktemp("datagen")
    script = ScriptedGenerator()
    with FakeOpenAIServer(reply_fn=script) as srv:
        client = client_for(srv, tmp / "llm.sqlite")
        out = _run(tmp, tiny_gemma3, client, _params())
        n_requests = len(srv.requests)
    return {"out": out, "tmp": tmp, "n_requests": n_requests, "calls": dict(script.calls)}


def _concept_ids(meta: pd.DataFrame) -> dict[str, int]:
    return dict(zip(meta["concept"], meta["concept_id"], strict=True))


def test_concepts_meta_genres_and_ids(first_run):
    meta = first_run["out"]["concepts_meta"]
    assert list(meta.columns) == ["concept_id", "concept", "ref", "sae_id", "concept_genres", "rule_id"]
    assert meta["concept_id"].tolist() == [0, 1, 2]
    genres = {c: list(g) for c, g in zip(meta["concept"], meta["concept_genres"], strict=True)}
    assert genres == {CONCEPTS[0]: ["text"], CONCEPTS[1]: ["code"], CONCEPTS[2]: ["math"]}
    assert (meta["ref"] == "null").all() and (meta["sae_id"] == -1).all()


def test_train_data_pool_and_positives(first_run, tiny_gemma3):
    train = first_run["out"]["train_data"]
    assert list(train.columns) == [
        "input",
        "output",
        "output_concept",
        "concept_genre",
        "category",
        "dataset_category",
        "concept_id",
    ]
    pool = train[train["concept_id"] == -1]
    assert pool.groupby("concept_genre").size().to_dict() == {"code": 3, "math": 3, "text": 3}
    assert (pool["output_concept"] == "EEEEE").all() and (pool["category"] == "negative").all()
    pos = train[train["concept_id"] >= 0]
    meta = first_run["out"]["concepts_meta"]
    genre_of = {int(c): list(g)[0] for c, g in zip(meta["concept_id"], meta["concept_genres"], strict=True)}
    assert pos.groupby("concept_id").size().to_dict() == {0: 3, 1: 3, 2: 3}
    assert (pos["concept_genre"] == pos["concept_id"].map(genre_of)).all()
    assert (pos["category"] == "positive").all() and (pos["dataset_category"] == "instruction").all()
    for text in pos["output"]:
        assert _ntok(tiny_gemma3, text) == T  # truncated to exactly T target tokens
        assert LONG_ANSWER.startswith(text)  # quotes stripped, first T words kept
    # pool answers are the target model's greedy answers (1.5 T new tokens, not truncated)
    row = pool.iloc[0]
    (gen,) = generate_greedy(
        tiny_gemma3, [format_prompt(tiny_gemma3.tokenizer, row["input"])], int(1.5 * T), 8
    )
    assert row["output"] == gen.text


def test_latent_eval_data_mix_and_hard_negatives(first_run, tiny_gemma3):
    latent = first_run["out"]["latent_eval_data"]
    meta = first_run["out"]["concepts_meta"]
    ids = _concept_ids(meta)
    pools = InstructionPools(SEED)
    n = 7
    for concept, cid in ids.items():
        rows = latent[latent["concept_id"] == cid]
        genre = list(meta.loc[meta["concept_id"] == cid, "concept_genres"].iloc[0])[0]
        pos = rows[rows["category"] == "positive"]
        neg = rows[rows["category"] == "negative"]
        hard = rows[rows["category"] == "hard negative"]
        assert (
            len(pos) == n
            and (pos["concept_genre"] == genre).all()
            and (pos["output_concept"] == concept).all()
        )
        assert neg.groupby("concept_genre").size().to_dict() == {"code": 1, "math": 1, "text": 5}
        assert (neg["output_concept"] == concept).all()
        assert (neg["output"] == "a plain and simple answer .").all()
        # hard negatives: exactly the pairs that passed G3 and G4, on test instructions n..n+k-1
        expected = EXPECTED_PAIRS[CONCEPTS.index(concept)]
        assert hard["output_concept"].tolist() == [f"{w}//{m}" for w, m in expected]
        assert (hard["concept_genre"] == genre).all()
        sampled = pools.sample(genre, "test", 2 * n, stage_rng(42, cid, "latent"))
        assert pos["input"].tolist() == sampled[:n]
        assert hard["input"].tolist() == sampled[n : n + len(expected)]
        for text in hard["output"]:
            assert text.startswith("so the") and not text.startswith("<") and _ntok(tiny_gemma3, text) == T
        assert (rows["sae_link"] == "null").all() and (rows["sae_id"] == -1).all()


def test_preference_pairs_are_aligned(first_run, tiny_gemma3):
    train, pref = first_run["out"]["train_data"], first_run["out"]["preference_data"]
    pos = train[train["concept_id"] >= 0].reset_index(drop=True)
    assert len(pref) == len(pos) == 9
    assert pref["input"].tolist() == pos["input"].tolist()
    assert pref["winning_output"].tolist() == pos["output"].tolist()
    assert pref["concept_id"].tolist() == pos["concept_id"].tolist()
    assert (pref["category"] == "positive").all()
    prompts = [format_prompt(tiny_gemma3.tokenizer, x) for x in pref["input"][:2]]
    assert pref["losing_output"][:2].tolist() == [
        g.text for g in generate_greedy(tiny_gemma3, prompts, int(1.5 * T), 8)
    ]


def test_usage_and_saved_files_validate(first_run):
    usage = first_run["out"]["datagen_llm_usage"]
    assert usage["calls"].iloc[0] == first_run["n_requests"] > 0
    assert usage["cost_usd"].iloc[0] > 0 and usage["stage"].iloc[0] == "datagen"
    # 3 concepts: G1 ×3, G2 ×3, G3 ×6 (3 + 0 + 3 words), G4 ×4 (meanings kept), G7 ×3, G5 3·(3+7), G6 3·7
    assert first_run["calls"] == {
        "genre": 3,
        "related_words": 3,
        "other_meaning": 6,
        "distinct": 4,
        "with_concept": 30,
        "without_concept": 21,
        "contrast": 3,
    }
    manifest = first_run["out"]["datagen_manifest"]
    assert manifest["rows"]["train_data"] == {"pool": 9, "positive": 9}
    assert manifest["rows"]["latent_eval_data"] == {"hard negative": 3, "negative": 21, "positive": 21}
    assert manifest["chain"] == {
        "related_words": 6,
        "meanings_kept": 4,
        "contrast_pairs": 3,
        "empty_outputs": 0,
    }
    assert set(manifest["templates"]) == {f"gen_{k}" for k in KINDS} and manifest["prompt_style"] == "chat"
    assert manifest["llm_usage"]["calls"] == first_run["n_requests"]
    assert manifest["provided"] == {"train_data": None, "latent_eval_data": None}
    out = first_run["tmp"] / "out"
    read_table(out / "train_data.parquet", "train_data")
    read_table(out / "latent_eval_data.parquet", "latent_eval_data")
    read_table(out / "preference_data.parquet", "preference_data")


def test_cached_rerun_makes_no_calls(first_run, server, tiny_gemma3):
    tmp = first_run["tmp"]
    # A fresh datagen store: every reply must come from the LLM cache.
    out = _run(tmp, tiny_gemma3, client_for(server, tmp / "llm.sqlite"), _params(), cache_name="fresh.sqlite")
    assert len(server.requests) == 0
    for name in OUTPUTS[:4]:
        pd.testing.assert_frame_equal(out[name], first_run["out"][name])
    assert out["datagen_llm_usage"]["calls"].iloc[0] == 0
    # An empty LLM cache: finished concepts come from the datagen store, still no call.
    out = _run(tmp, tiny_gemma3, client_for(server, tmp / "empty_llm.sqlite"), _params())
    assert len(server.requests) == 0
    pd.testing.assert_frame_equal(out["latent_eval_data"], first_run["out"]["latent_eval_data"])


class _KilledClient:
    """Delegates to a client but dies when a request mentions ``concept`` (a run killed mid-way)."""

    def __init__(self, client: Any, concept: str) -> None:
        self._client, self._concept = client, concept

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def complete_many(self, requests, desc=None):
        if any(self._concept in r.text for r in requests):
            raise KeyboardInterrupt("killed")
        return self._client.complete_many(requests, desc=desc)


def test_killed_run_resumes_with_the_remaining_concepts(tmp_path, server, tiny_gemma3):
    params = _params(concepts_per_chunk=1)
    last = CONCEPTS[2]  # selection order: the seeded shuffle puts it last
    killed = _KilledClient(client_for(server, tmp_path / "llm.sqlite"), last)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, tiny_gemma3, killed, params)
    before = len(server.requests)
    assert before > 0 and not any(last in r["messages"][0]["content"] for r in server.requests)
    out = _run(tmp_path, tiny_gemma3, client_for(server, tmp_path / "llm.sqlite"), params)
    new = server.requests[before:]
    assert new and all(last in r["messages"][0]["content"] for r in new)  # only the unfinished concept
    assert len(new) == 1 + 1 + 3 + 7 + 7 + 3 + 3 + 2  # G1, G2, G5 train, G5 latent, G6, G3, G4, G7
    assert out["latent_eval_data"]["concept_id"].nunique() == 3


def test_provided_released_files_pass_through(tmp_path, server, tiny_gemma3):
    train_path, test_path = write_released_layout(tmp_path / "released", "2b", 20, n_concepts=3)
    provided = {"train_data": train_path, "latent_eval_data": test_path}
    out = _run(
        tmp_path, tiny_gemma3, client_for(server, tmp_path / "llm.sqlite"), _params(), provided=provided
    )
    assert len(server.requests) == 0
    pd.testing.assert_frame_equal(out["train_data"], pd.read_parquet(train_path))
    pd.testing.assert_frame_equal(out["latent_eval_data"], pd.read_parquet(test_path))
    meta = out["concepts_meta"]
    assert meta["sae_id"].tolist() == [4021, 77, 15002]
    assert [list(g) for g in meta["concept_genres"]] == [["text"], ["code"], ["math"]]
    assert len(out["preference_data"]) == 12  # 4 positives × 3 concepts, losing = tiny model answers
    provided_record = out["datagen_manifest"]["provided"]
    assert provided_record["train_data"]["rows"] == len(pd.read_parquet(train_path))
    assert provided_record["latent_eval_data"]["concepts"] == 3
    assert len(provided_record["train_data"]["sha256"]) == 64


def test_provided_train_only_generates_latent_for_its_concepts(tmp_path, tiny_gemma3):
    train, _ = make_released_frames(n_concepts=2)
    path = tmp_path / "train.parquet"
    train.to_parquet(path)
    script = ScriptedGenerator()
    with FakeOpenAIServer(reply_fn=script) as srv:
        client = client_for(srv, tmp_path / "llm.sqlite")
        out = _run(tmp_path, tiny_gemma3, client, _params(), provided={"train_data": path})
    assert script.calls["genre"] == 0  # genres come from the provided file
    assert script.calls["with_concept"] == 2 * 7  # latent positives only, no train positives
    latent = out["latent_eval_data"]
    assert sorted(latent["concept_id"].unique()) == [0, 1]
    assert set(latent.loc[latent["concept_id"] == 1, "output_concept"]) == {"loops written in Java"}
    assert (
        latent.loc[(latent["concept_id"] == 1) & (latent["category"] == "positive"), "concept_genre"]
        == "code"
    ).all()


def test_bad_provided_file_fails_with_one_line(tmp_path, server, tiny_gemma3):
    train, _ = make_released_frames()
    path = tmp_path / "train.parquet"
    train.drop(columns=["output"]).to_parquet(path)
    with pytest.raises(Exception, match=f"{path}: column 'output': missing") as info:
        _run(
            tmp_path,
            tiny_gemma3,
            client_for(server, tmp_path / "llm.sqlite"),
            _params(),
            provided={"train_data": path},
        )
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("env", ["demo", "gemma2_2b_l10", "gemma2_2b_l20", "gemma2_9b_l20", "gemma2_9b_l31"])
def test_conf_parameters_and_catalog(env):
    from axbench_kedro.settings import CONFIG_LOADER_ARGS

    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(ROOT / "conf"), env=env, **args)
    params = DatagenParams(**loader["parameters"]["datagen"])
    catalog = loader["catalog"]
    for name in (
        "concept_list",
        "seed_instructions",
        "steering_instructions",
        "datagen_cache",
        "prompt_templates",
        "llm_prices",
        "provided_train_data",
        "provided_latent_eval_data",
        *OUTPUTS,
    ):
        assert name in catalog
    assert catalog["provided_train_data"]["filepath"] is None  # generate unless an environment sets a file
    for name in OUTPUTS[:4]:
        assert catalog[name]["versioned"] is True
        assert catalog[name]["filepath"].startswith("data/02_intermediate/")
    if env == "demo":
        assert params.prompt_style == "base" and params.max_concepts == 4
        assert params.latent_negative_counts == {"text": 22, "math": 1, "code": 1}
    else:
        assert params.prompt_style == "chat" and params.max_concepts == 500
        assert (params.num_of_examples, params.latent_num_of_examples, params.output_length) == (144, 36, 128)
        assert params.latent_negative_counts == {"text": 26, "math": 5, "code": 5}
        assert params.pool_tokens == 192 and params.concept_source is not None
