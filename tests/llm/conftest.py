"""Fixtures of the LLM-layer tests: a fake OpenAI-compatible server and clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from axbench_kedro.llm.client import LLMClient
from fixtures.fake_openai import FakeOpenAIServer, client_for


@pytest.fixture()
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture()
def make_client(server: FakeOpenAIServer, tmp_path: Path) -> Callable[..., LLMClient]:
    """``make_client(**kw)``: an ``LLMClient`` on ``server`` with fast backoff and a temp SQLite cache file."""

    def factory(**kwargs: Any) -> LLMClient:
        return client_for(server, kwargs.pop("cache_path", tmp_path / "cache.sqlite"), **kwargs)

    return factory
