"""LLMClientDataset: credentials lookup, key hygiene, memoized load, catalog use."""

from __future__ import annotations

import logging

import pytest
from kedro.io import DataCatalog, DatasetError

from axbench_kedro.datasets.llm_client import LLMClientDataset
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.credentials import resolve_openai_credentials
from axbench_kedro.llm.types import LLMRequest

KEY = "sk-dataset-secret-9876543210"
DS = "axbench_kedro.datasets.llm_client.LLMClientDataset"


@pytest.fixture()
def no_env_key(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path / "no_credentials.yml"  # a credentials file that does not exist


def _dataset(tmp_path, **kw) -> LLMClientDataset:
    kw.setdefault("model", "gpt-4o-mini")
    kw.setdefault("cache_path", str(tmp_path / "cache" / "judge.sqlite"))
    return LLMClientDataset(**kw)


def test_missing_key_fails_at_validate_and_load_not_construction(tmp_path, no_env_key):
    ds = _dataset(tmp_path, credentials_file=str(no_env_key))  # constructing is fine
    with pytest.raises(AxbenchConfigError, match=r"openai\.api_key"):
        ds.validate()
    with pytest.raises(AxbenchConfigError, match=r"openai\.api_key.*OPENAI_API_KEY"):
        ds.load()


def test_missing_key_through_the_catalog(tmp_path, no_env_key):
    catalog = DataCatalog.from_config(
        {"judge_llm": {"type": DS, "model": "gpt-4o-mini", "credentials_file": str(no_env_key)}}
    )
    # Kedro's catalog re-wraps load errors as DatasetError("<name>: <message>"); the cause stays ours.
    with pytest.raises(DatasetError, match=r"judge_llm: openai\.api_key is not set") as info:
        catalog.load("judge_llm")
    assert isinstance(info.value.__cause__, AxbenchConfigError)


def test_env_key_and_memoized_load(server, tmp_path, no_env_key, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ds = _dataset(tmp_path, base_url=server.base_url, credentials_file=str(no_env_key))
    ds.validate()
    client = ds.load()
    assert isinstance(client, LLMClient) and ds.load() is client
    (reply,) = client.complete_many([LLMRequest.user("hi", model=client.model)])
    assert reply.text == "reply to: hi"
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert (tmp_path / "cache" / "judge.sqlite").is_file()


def test_credentials_file_is_read_directly(server, tmp_path, no_env_key):
    creds = tmp_path / "credentials.yml"
    creds.write_text(f"openai:\n  api_key: {KEY}\n  base_url: {server.base_url}\n", encoding="utf-8")
    client = _dataset(tmp_path, credentials_file=str(creds)).load()
    client.complete_many([LLMRequest.user("x")])
    assert len(server.requests) == 1
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_credentials_order(tmp_path, monkeypatch):
    creds = tmp_path / "credentials.yml"
    creds.write_text("openai:\n  api_key: from-file\n  base_url: http://file:1/v1\n", encoding="utf-8")
    env = {"OPENAI_API_KEY": "from-env", "OPENAI_BASE_URL": "http://env:2/v1"}
    catalog_creds = {"api_key": "from-catalog", "base_url": "http://catalog:3/v1"}

    def resolve(creds_arg, environ, base_url=None):
        return resolve_openai_credentials(
            creds_arg, base_url=base_url, credentials_file=creds, environ=environ
        )

    r = resolve(catalog_creds, env)
    assert (r.api_key, r.base_url, r.key_source) == (
        "from-catalog",
        "http://catalog:3/v1",
        "catalog credentials",
    )
    r = resolve({"api_key": ""}, env)  # empty values count as unset
    assert (r.api_key, r.base_url, r.key_source) == ("from-env", "http://env:2/v1", "OPENAI_API_KEY")
    r = resolve(None, {})
    assert (r.api_key, r.base_url) == ("from-file", "http://file:1/v1")
    r = resolve(catalog_creds, env, base_url="http://explicit:4/v1")
    assert r.base_url == "http://explicit:4/v1"
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
                "credentials_file": str(no_env_key),
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


def test_inline_prices_and_price_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    server.reply_fn = lambda body: {"content": "ok", "prompt_tokens": 10, "completion_tokens": 10}
    client = _dataset(
        tmp_path, base_url=server.base_url, prices={"gpt-4o-mini": {"input": 1.0, "output": 2.0}}
    ).load()
    client.complete_many([LLMRequest.user("x")])
    assert client.totals().cost_usd == pytest.approx(30 / 1e6)
    with pytest.raises(AxbenchConfigError, match="price table not found"):
        _dataset(tmp_path, base_url=server.base_url, prices_path=str(tmp_path / "none.yml")).validate()


def test_local_backend_spec_is_validated(tmp_path):
    ds = LLMClientDataset(
        backend="local", target_model_spec={"source": "local", "name_or_path": str(tmp_path / "x")}
    )
    with pytest.raises(AxbenchConfigError):
        ds.validate()
    with pytest.raises(AxbenchConfigError, match="target_model_spec"):
        LLMClientDataset(backend="local", target_model_spec={"nonsense": 1}).validate()


def test_unresolved_credentials_name_is_a_config_error():
    with pytest.raises(AxbenchConfigError, match="credentials"):
        LLMClientDataset(model="gpt-4o-mini", credentials="openai")
