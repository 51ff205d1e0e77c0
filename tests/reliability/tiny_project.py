"""A runnable copy of the Kedro project on a tiny random Gemma saved to disk, talking to a loopback fake server.

``make_tiny_project(dest, base_url)`` copies the project (``tests/reporting/project.py``), saves the tiny model under
``dest/tiny_model`` and writes a ``conf/tiny`` environment: CPU-sized datagen / training / latent_eval /
steering_eval, the generator and the LLM judge on ``base_url``. ``kedro(project, args)`` runs the copy's CLI in a
subprocess (its own process group, so a test can SIGKILL the whole run); ``llm_reply`` is the server's ``reply_fn``.

Example:
    >>> with FakeOpenAIServer(reply_fn=llm_reply) as server:  # doctest: +SKIP
    ...     project = make_tiny_project(tmp_path / "p", server.base_url)
    ...     kedro(project, ["run", "--env", ENV, "--pipeline", "datagen"]).returncode
    0
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml
from safetensors.torch import load_file

from datagen.scripted_llm import CONCEPTS, ScriptedGenerator
from fixtures.fake_openai import FAKE_API_KEY
from fixtures.tiny_models import make_tiny_target_model
from reporting.project import make_project_copy

__all__ = [
    "ENV",
    "SETTING",
    "TINY_PIPELINES",
    "KEDRO",
    "LLM_CACHE",
    "make_tiny_project",
    "save_tiny_model",
    "kedro",
    "kedro_popen",
    "kill_when",
    "llm_reply",
    "stage_of",
    "cache_rows",
    "torn_files",
    "latest",
    "PROTOCOL_OUTPUTS",
]

ENV = "tiny"
SETTING = "tiny_l1"
TINY_PIPELINES = "datagen,training,latent_eval,steering_eval"  # `kedro run --pipelines` of a whole tiny run
LLM_CACHE = ("data/02_intermediate/llm_cache.sqlite", "llm_replies")
# Outputs whose content is the benchmark's result (usage tables, manifests and summaries also hold cache hits and
# seconds, which legitimately differ between a resumed and an uninterrupted run).
PROTOCOL_OUTPUTS = (
    "02_intermediate/{s}/concepts_meta.parquet",
    "02_intermediate/{s}/train_data.parquet",
    "02_intermediate/{s}/latent_eval_data.parquet",
    "02_intermediate/{s}/preference_data.parquet",
    "07_model_output/{s}/latent_scores.parquet",
    "07_model_output/{s}/max_activations.parquet",
    "08_reporting/{s}/latent_metrics.parquet",
    "07_model_output/{s}/prompt_steering_texts.parquet",
    "07_model_output/{s}/steering_prompts.parquet",
    "07_model_output/{s}/steering_generations.parquet",
    "07_model_output/{s}/judgements.parquet",
    "08_reporting/{s}/steering_scores.parquet",
    "08_reporting/{s}/steering_selection.parquet",
    "08_reporting/{s}/steering_summary.parquet",
)
KEDRO = str(Path(sys.executable).with_name("kedro"))
TRAINED = ["DiffMean", "ReFT-r1", "SSV", "Prompt"]

_PARAMETERS: dict[str, Any] = {
    "datagen": {
        "max_concepts": 3,
        "num_of_examples": 6,
        "latent_num_of_examples": 7,
        "output_length": 8,
        "max_related_words": 3,
        "target_batch_size": 4,
        "concepts_per_chunk": 1,
    },
    "training": {
        "methods": TRAINED,
        "activation_batch_size": 6,
        "lm_cache_batch_size": 6,
        "concept_group_size": 1,
        "hyperparameters": {
            "ReFT-r1": {"epochs": 60, "batch_size": 2},
            "SSV": {"epochs": 60, "batch_size": 2},
        },
    },
    "latent_eval": {"batch_size": 8, "exclude_methods": ["Prompt"]},
    "steering_eval": {
        "factors": [0.5, 1.0],
        "instructions": {"n_selection": 1, "n_test": 1},
        "generation": {"max_new_tokens": 6, "batch_size": 4},
        "prompt_steering": {"max_tokens": 30},
        "judge": {"max_tokens": 30},
        "perplexity_batch_size": 8,
        "n_resamples": 50,
    },
}

_SCRIPT: ScriptedGenerator | None = None


def llm_reply(body: dict[str, Any]) -> str:
    """Deterministic replies: datagen templates as ``tests/datagen/scripted_llm.py``, judge rubrics a rating that
    depends on the text only, anything else (the Prompt baseline's instruction) one fixed sentence."""
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = ScriptedGenerator()
    content = body["messages"][-1]["content"]
    if any(content.startswith(head) for head in _SCRIPT.heads.values()):
        return str(_SCRIPT(body))
    if "Rating" in content or "rating" in content:
        return f"Fine.\nRating: [[{sum(map(ord, content)) % 3}]]"
    return "Always mention the concept in every answer."


def stage_of(body: dict[str, Any]) -> str:
    """``datagen`` or ``steering_eval``: which pipeline sent a request to the fake server."""
    global _SCRIPT
    if _SCRIPT is None:
        _SCRIPT = ScriptedGenerator()
    content = body["messages"][-1]["content"]
    return "datagen" if any(content.startswith(h) for h in _SCRIPT.heads.values()) else "steering_eval"


def save_tiny_model(folder: Path) -> Path:
    """Save the tiny random Gemma-3 (seed 0) as a transformers model folder."""
    tm = make_tiny_target_model("gemma3", n_layers=2, hidden=64, seed=0)
    tm.model.save_pretrained(folder)
    tm.tokenizer.save_pretrained(folder)
    return folder


def make_tiny_project(dest: Path, base_url: str, model_dir: Path | None = None) -> Path:
    """A project copy at ``dest`` with the ``tiny`` environment (see the module docstring).

    Args:
        dest: new folder.
        base_url: the fake server's ``/v1`` URL (generator and judge).
        model_dir: a saved tiny model to reuse (default: save one under ``dest``).
    """
    project = make_project_copy(dest)
    if model_dir is None:
        model_dir = save_tiny_model(dest / "tiny_model")
    concepts = project / "data" / "01_raw" / "concepts_tiny.csv"
    concepts.write_text("concept,url\n" + "".join(f"{c},\n" for c in CONCEPTS), encoding="utf-8")
    env = project / "conf" / ENV
    env.mkdir(parents=True, exist_ok=True)
    llm = {"backend": "openai", "model": "gpt-4o-mini", "base_url": base_url}
    globals_ = {
        "setting": SETTING,
        "layer": 1,
        "model": {"source": "local", "name_or_path": str(model_dir), "dtype": "float32", "device": "cpu"},
        "generator": llm,
        "judge": {"kind": "llm", **llm},
        "concept_list": "data/01_raw/concepts_tiny.csv",
        "report_settings": None,
    }
    (env / "globals.yml").write_text(yaml.safe_dump(globals_), encoding="utf-8")
    (env / "parameters.yml").write_text(yaml.safe_dump(_PARAMETERS), encoding="utf-8")
    return project


def _environ() -> dict[str, str]:
    # No PYTHONHASHSEED: each run meets the string-hash randomness a user's run meets. One torch thread: on 2 shared
    # cores more threads made ReFT-r1's training 15x slower (a fixed thread count is all CPU determinism needs).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "PYTHONHASHSEED"}
    env.update(
        {
            "KEDRO_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "OPENAI_API_KEY": FAKE_API_KEY,
            "COLUMNS": "200",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    return env


def kedro_popen(project: Path, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``kedro <args>`` in ``project`` in a new process group, stdout and stderr to ``log``."""
    handle = log.open("ab")
    return subprocess.Popen(
        [KEDRO, *args],
        cwd=project,
        env=_environ(),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kedro(project: Path, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``kedro <args>`` in ``project`` to the end."""
    return subprocess.run(
        [KEDRO, *args], cwd=project, env=_environ(), capture_output=True, text=True, timeout=timeout
    )


def cache_rows(path: Path, table: str) -> int:
    """Rows of ``table`` in the SQLite file ``path`` (0 when the file or the table does not exist yet)."""
    if not path.is_file():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def kill_when(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 120, poll_s: float = 0.02
) -> bool:
    """SIGKILL ``proc``'s process group as soon as ``ready()`` holds; ``False`` if it ended first (not killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(poll_s)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    raise TimeoutError(f"the marker never appeared within {timeout} s")


def torn_files(data: Path) -> list[str]:
    """Files under ``data`` that do not read back whole (parquet, csv, json, safetensors, SQLite integrity)."""
    bad: list[str] = []
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        if path.name.startswith(".") or path.suffix in {".sqlite-wal", ".sqlite-shm"} or "-wal" in path.name:
            continue
        try:
            if path.suffix == ".parquet":
                pq.read_table(path)
            elif path.suffix == ".csv":
                pd.read_csv(path)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors":
                load_file(str(path))
            elif path.suffix == ".sqlite":
                with sqlite3.connect(path, timeout=5) as conn:
                    if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                        bad.append(str(path))
        except Exception as exc:  # noqa: BLE001 - any read failure is a torn file
            bad.append(f"{path}: {type(exc).__name__}")
    return bad


def latest(project: Path, relative: str) -> Path:
    """The newest version of a versioned dataset ``data/<relative>`` (the file itself when not versioned)."""
    path = project / "data" / relative
    if path.is_file():
        return path
    versions = sorted(path.glob(f"*/{path.name}"))
    if not versions:
        raise FileNotFoundError(path)
    return versions[-1]
