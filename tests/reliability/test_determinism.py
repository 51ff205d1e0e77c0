"""Same seed, same bytes (issue 14, "Determinism"): two fresh runs of datagen → steering_eval on CPU, in two
separate project copies (``tiny_project.py``), against the same loopback server and tiny model.

Every file under ``data/`` is compared: the newest version of each versioned dataset byte for byte (datagen tables
and manifest, method weights and metadata, the training cache, latent scores and metrics, generations, judgements,
scores, usage tables, the ROC plot), SQLite caches row for row (their pages depend on write timing, their content
must not). The only file allowed to differ is ``training_summary.csv``, and only in its ``seconds`` column (wall
time of each method); every other column of it must match.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fixtures.fake_openai import FakeOpenAIServer
from reliability.tiny_project import ENV, TINY_PIPELINES, kedro, make_tiny_project

pytestmark = pytest.mark.slow

_VERSION = re.compile(r"^\d{4}-\d\d-\d\dT\d\d\.\d\d\.\d\d\.\d{3}Z$")
_TIMED = {"training_summary.csv": ["seconds"]}  # file name → wall-time columns


@pytest.fixture(scope="module")
def second_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_server: FakeOpenAIServer, tiny_model_dir: Path
) -> Path:
    project = make_tiny_project(tmp_path_factory.mktemp("second") / "p", tiny_server.base_url, tiny_model_dir)
    result = kedro(project, ["run", "--env", ENV, "--pipelines", TINY_PIPELINES])
    assert result.returncode == 0, result.stderr[-4000:]
    return project


def _files(project: Path) -> dict[str, Path]:
    """``data/`` files by path with the version folder left out (one version each in a fresh run)."""
    data = project / "data"
    out: dict[str, Path] = {}
    for path in sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.suffix in {".sqlite-wal", ".sqlite-shm"} or path.name.endswith(("-wal", "-shm")):
            continue
        parts = [part for part in path.relative_to(data).parts if not _VERSION.match(part)]
        key = "/".join(parts)
        assert key not in out, f"two versions of {key} in a fresh run"
        out[key] = path
    return out


def _rows(path: Path) -> dict[str, list[Any]]:
    with sqlite3.connect(path, timeout=5) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def test_two_fresh_runs_write_the_same_files(tiny_baseline: dict[str, Any], second_run: Path) -> None:
    first, second = _files(tiny_baseline["project"]), _files(second_run)
    assert sorted(first) == sorted(second)
    generated = [k for k in first if not k.startswith("01_raw/")]
    # Everything the run writes is here: datagen tables, weights, scores, generations, judgements, caches.
    for expected in (
        "train_data.parquet",
        "method_artifacts/ReFT-r1.safetensors",
        "latent_scores.parquet",
        "steering_generations.parquet",
        "judgements.parquet",
        "llm_cache.sqlite",
        "generation_cache.sqlite",
        "datagen_cache.sqlite",
    ):
        assert any(k.endswith(expected) for k in generated), expected
    different = []
    for key in generated:
        a, b = first[key], second[key]
        if key.endswith(".sqlite"):
            same = _rows(a) == _rows(b)
        elif a.name in _TIMED:
            timed = _TIMED[a.name]
            same = pd.read_csv(a).drop(columns=timed).equals(pd.read_csv(b).drop(columns=timed))
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            different.append(key)
    assert different == []


def test_the_caches_hold_content(tiny_baseline: dict[str, Any]) -> None:
    """The row comparison above is not vacuous: each cache holds the run's work."""
    data = tiny_baseline["project"] / "data"
    rows = {p.name: _rows(p) for p in data.rglob("*.sqlite")}
    assert len(rows["llm_cache.sqlite"]["llm_replies"]) == len(tiny_baseline["requests"]) > 0
    assert sum(len(v) for v in rows["generation_cache.sqlite"].values()) > 0
    assert sum(len(v) for v in rows["datagen_cache.sqlite"].values()) > 0
