"""Fixtures of the reliability suite. Sections: each helper adds its own fixtures under its own heading."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.fake_openai import FakeOpenAIServer
from reliability.tiny_project import ENV, TINY_PIPELINES, kedro, llm_reply, make_tiny_project, save_tiny_model

# --- interruption / determinism: a tiny project copy run end to end against one loopback server ---------------------


@pytest.fixture(scope="session")
def tiny_server() -> Iterator[FakeOpenAIServer]:
    """One loopback server for every tiny-project run (same base URL in every copy's configuration)."""
    with FakeOpenAIServer(reply_fn=llm_reply) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Gemma-3 saved once, shared read-only by every project copy."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model") / "gemma3-tiny")


@pytest.fixture(scope="session")
def tiny_baseline(
    tmp_path_factory: pytest.TempPathFactory, tiny_server: FakeOpenAIServer, tiny_model_dir: Path
) -> dict[str, Any]:
    """One uninterrupted run of datagen → steering_eval on a fresh copy: the project and the requests it sent."""
    project = make_tiny_project(
        tmp_path_factory.mktemp("baseline") / "p", tiny_server.base_url, tiny_model_dir
    )
    start = len(tiny_server.requests)
    result = kedro(project, ["run", "--env", ENV, "--pipelines", TINY_PIPELINES])
    assert result.returncode == 0, result.stderr[-4000:]
    return {
        "project": project,
        "requests": tiny_server.requests[start:],
        "log": result.stdout + result.stderr,
    }
