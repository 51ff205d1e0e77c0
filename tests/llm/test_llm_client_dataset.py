"""LLMClientDataset: credentials only through Kedro (``oc.env`` in conf/base/credentials.yml), key hygiene, memoized
load, catalog use, prices from the ``llm_prices`` dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, DatasetError
from pydantic import ValidationError

from axbench_kedro.datasets.llm_client import LLMClientDataset
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.credentials import KEY_SOURCE, resolve_openai_credentials
from axbench_kedro.llm.ledger import Price, PriceTable
from axbench_kedro.llm.types import LLMRequest
from fixtures.fake_openai import client_for
from fixtures.project_catalog import ROOT, project_llm_prices

KEY = "sk-dataset-secret-9876543210"
DS = "axbench_kedro.datasets.llm_client.LLMClientDataset"


@pytest.fixture()
def no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def _dataset(tmp_path, **kw) -> LLMClientDataset:
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("cache_path", str(tmp_path / "cache" / "judge.sqlite"))
    return LLMClientDataset(**kw)


def _project_credentials(env: str = "base", conf: Path = ROOT / "conf") -> dict:
    """Kedro's credentials of the project (``oc.env`` resolved by the config loader itself)."""
    return OmegaConfigLoader(str(conf), base_env="base", default_run_env=env)["credentials"]


def _judge_entry(**kw) -> dict:
    return {"judge_llm": {"type": DS, "model": "gpt-4o-mini", "credentials": "openai", **kw}}


def test_missing_key_fails_at_validate_and_load_not_construction(tmp_path, no_env_key):
    ds = _dataset(tmp_path, credentials={"api_key": "", "base_url": ""})  # constructing is fine
    with pytest.raises(AxbenchConfigError, match=r"openai\.api_key"):
        ds.validate()
    with pytest.raises(AxbenchConfigError, match=r"openai\.api_key.*OPENAI_API_KEY") as info:
        ds.load()
    message = str(info.value)
    assert "\n" not in message and "conf/<env>/credentials.yml" in message


def test_missing_key_through_the_catalog(tmp_path, no_env_key):
    catalog = DataCatalog.from_config(
        _judge_entry(cache_path=str(tmp_path / "c.sqlite")), credentials=_project_credentials()
    )
    # Kedro's catalog re-wraps load errors as DatasetError("<name>: <message>"); the cause stays ours.
    with pytest.raises(DatasetError, match=r"judge_llm: openai\.api_key is not set") as info:
        catalog.load("judge_llm")
    assert isinstance(info.value.__cause__, AxbenchConfigError)


def test_env_key_through_kedro_oc_env_and_memoized_load(server, tmp_path, no_env_key, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    credentials = _project_credentials()  # conf/base/credentials.yml: ${oc.env:OPENAI_API_KEY,""}
    assert credentials["openai"] == {"api_key": KEY, "base_url": server.base_url}
    catalog = DataCatalog.from_config(
        _judge_entry(cache_path=str(tmp_path / "cache" / "judge.sqlite")), credentials=credentials
    )
    ds = catalog["judge_llm"]
    ds.validate()
    client = catalog.load("judge_llm")
    assert isinstance(client, LLMClient) and catalog.load("judge_llm") is client
    (reply,) = client.complete_many([LLMRequest.user("hi", model=client.model)])
    assert reply.text == "reply to: hi"
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert (tmp_path / "cache" / "judge.sqlite").is_file()


def test_env_credentials_file_replaces_the_base_entry(server, tmp_path, no_env_key):
    conf = tmp_path / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "base" / "credentials.yml").write_text((ROOT / "conf/base/credentials.yml").read_text())
    (conf / "paper").mkdir()
    (conf / "paper" / "credentials.yml").write_text(
        f"openai:\n  api_key: {KEY}\n  base_url: {server.base_url}\n", encoding="utf-8"
    )
    catalog = DataCatalog.from_config(
        _judge_entry(cache_path=str(tmp_path / "c.sqlite")), credentials=_project_credentials("paper", conf)
    )
    catalog.load("judge_llm").complete_many([LLMRequest.user("x")])
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_no_file_and_no_environment_is_read_by_the_project(tmp_path, no_env_key, monkeypatch):
    # A key in conf/local/credentials.yml of the working directory and in the environment: neither is looked at
    # unless Kedro's config loader put it in the injected mapping.
    (tmp_path / "conf" / "local").mkdir(parents=True)
    (tmp_path / "conf" / "base").mkdir()
    (tmp_path / "conf" / "local" / "credentials.yml").write_text(f"openai:\n  api_key: {KEY}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    resolved = resolve_openai_credentials(None)
    assert (resolved.api_key, resolved.base_url, resolved.key_source) == (None, None, None)
    with pytest.raises(AxbenchConfigError, match=r"openai\.api_key"):
        _dataset(tmp_path).validate()


def test_credentials_order():
    catalog_creds = {"api_key": "from-catalog", "base_url": "http://catalog:3/v1"}
    r = resolve_openai_credentials(catalog_creds)
    assert (r.api_key, r.base_url) == ("from-catalog", "http://catalog:3/v1")
    assert r.key_source == KEY_SOURCE
    r = resolve_openai_credentials({"api_key": " ", "base_url": ""})  # empty values count as unset
    assert (r.api_key, r.base_url, r.key_source) == (None, None, None)
    r = resolve_openai_credentials(catalog_creds, base_url="http://explicit:4/v1")
    assert r.base_url == "http://explicit:4/v1"  # an explicit dataset base_url wins
    assert "from-" not in repr(r)


def test_catalog_credentials_entry(server, tmp_path, no_env_key, caplog):
    caplog.set_level(logging.DEBUG)
    catalog = DataCatalog.from_config(
        {
            "judge_llm": {
                "type": DS,
                "model": "gpt-4o-mini",
                "base_url": server.base_url,
                "cache_path": str(tmp_path / "c.sqlite"),
                "credentials": "openai",
            }
        },
        credentials={"openai": {"api_key": KEY}},
    )
    client = catalog.load("judge_llm")
    client.complete_many([LLMRequest.user("x")])
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    dataset = catalog["judge_llm"]
    for text in (
        repr(dataset),
        str(dataset),
        str(dataset._describe()),
        repr(client),
        repr(catalog),
        caplog.text,
    ):
        assert KEY not in text
    assert "127.0.0.1" in repr(dataset)


def test_bad_dataset_arguments(tmp_path):
    with pytest.raises(AxbenchConfigError, match="backend"):
        LLMClientDataset(backend="anthropic", model="x")
    with pytest.raises(AxbenchConfigError, match="model"):
        LLMClientDataset(backend="openai", model=None)
    with pytest.raises(AxbenchConfigError, match="max_concurrency"):
        _dataset(tmp_path, max_concurrency=0)
    with pytest.raises(AxbenchConfigError, match="timeout_s"):
        _dataset(tmp_path, timeout_s=0)


def test_save_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="read-only"):
        _dataset(tmp_path).save(object())


def test_prices_from_the_catalog_dataset_give_the_same_costs(server, tmp_path, caplog):
    server.reply_fn = lambda body: {"content": "ok", "prompt_tokens": 1000, "completion_tokens": 200}
    prices = project_llm_prices()  # what the llm_prices catalog dataset hands the nodes
    ds = _dataset(tmp_path, base_url=server.base_url, credentials={"api_key": KEY})
    client = ds.load().use_prices(prices)
    client.complete_many([LLMRequest.user(f"q{i}") for i in range(3)])
    # 3 × (1000 × 0.15 + 200 × 0.60) / 1e6 = 8.1e-4 USD, as with the price table given to the client directly
    assert client.usage_frame("s")["cost_usd"].iloc[0] == pytest.approx(8.1e-4, rel=1e-12)
    direct = client_for(server, tmp_path / "d.sqlite", prices=PriceTable({"gpt-4o-mini": Price(0.15, 0.60)}))
    direct.complete_many([LLMRequest.user(f"q{i}") for i in range(3)])
    assert direct.totals().cost_usd == client.totals().cost_usd
    # a model missing from the table costs 0 with one warning
    other = _dataset(
        tmp_path, model="my-vllm-model", base_url=server.base_url, credentials={"api_key": KEY}
    ).load()
    other.use_prices(prices)
    other.complete_many([LLMRequest.user("a"), LLMRequest.user("b")])
    assert other.totals().cost_usd == 0.0 and other.totals().calls == 2
    assert caplog.text.count("no price for LLM model 'my-vllm-model'") == 1


def test_dataset_takes_no_price_file_or_credentials_file(tmp_path):
    for key in ("prices_path", "prices", "credentials_file"):
        with pytest.raises(TypeError, match=key):
            LLMClientDataset(model="gpt-4o-mini", **{key: "x"})


def test_local_backend_spec_is_validated(tmp_path):
    ds = LLMClientDataset(
        backend="local", target_model_spec={"source": "local", "name_or_path": str(tmp_path / "x")}
    )
    with pytest.raises(AxbenchConfigError):
        ds.validate()
    with pytest.raises(ValidationError) as info:
        LLMClientDataset(backend="local", target_model_spec={"nonsense": 1}).validate()
    assert [e["loc"] for e in info.value.errors()] == [("target_model_spec", "nonsense")]


def test_unresolved_credentials_name_is_a_config_error():
    with pytest.raises(AxbenchConfigError, match="credentials"):
        LLMClientDataset(model="gpt-4o-mini", credentials="openai")


def test_local_backend_gets_top_k_and_seed_and_the_loaded_model(tmp_path, tiny_gemma3, monkeypatch):
    from axbench_kedro.lm import loading

    monkeypatch.setitem(loading._LOADED, tiny_gemma3.spec, tiny_gemma3)  # as if `target_model` had loaded it
    ds = LLMClientDataset(
        backend="local",
        target_model_spec=tiny_gemma3.spec.model_dump(),
        cache_path=str(tmp_path / "rater.sqlite"),
        local_batch_size=8,
        top_k=50,
        seed=7,
    )
    backend = ds.load().backend
    assert backend.tm is tiny_gemma3  # the memoized model, never a second copy
    assert (backend.top_k, backend.seed, backend.max_batch_size) == (50, 7, 8)
    assert (ds._describe()["top_k"], ds._describe()["seed"]) == (50, 7)
    for bad in ({"top_k": -1}, {"seed": -3}, {"top_k": 1.5}):
        with pytest.raises(AxbenchConfigError, match=next(iter(bad))):
            LLMClientDataset(backend="local", **bad)


def test_top_k_on_the_openai_backend_is_flagged(server, tmp_path, caplog):
    ds = _dataset(tmp_path, base_url=server.base_url, credentials={"api_key": KEY}, top_k=50)
    with caplog.at_level(logging.WARNING, logger="axbench_kedro.datasets.llm_client"):
        ds.load()
    assert "top_k=50 is not sent by the openai backend" in caplog.text
