"""Temporary copies of the Kedro project for end-to-end reporting tests (session runs, viz build, notebook).

A copy holds ``pyproject.toml``, ``.telemetry``, ``conf/`` (without ``conf/local`` and without any git-ignored
credentials file), the notebooks, a copy of ``src/`` and empty ``data/`` layer folders. A planted test key reaches
Kedro's credentials both ways a user sets one: ``OPENAI_API_KEY`` (read by ``conf/base/credentials.yml`` through
``oc.env``) and a ``credentials.yml`` in the copy's default run environment, so that tests can check that no secret
reaches ``data/`` or ``build/``. Upstream results are written *through the copy's catalog*, so
they land exactly where the real upstream pipelines would put them (versioned where the catalog says so).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import Version
from kedro_datasets.pandas import ParquetDataset

from . import synthetic

ROOT = Path(__file__).resolve().parents[2]
PLANTED_KEY = "sk-test-PLANTED-9f8e7d6c5b4a39281706"
CURRENT_SETTING = "embedded_270m_l12"
OTHER_SETTING = "gemma2_2b_l20"
LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)
# Stand-ins for upstream entries another helper's catalog file does not define (yet); never used once it does.
_STANDIN_PATHS = {
    "concepts_meta": "data/02_intermediate/${globals:setting}/concepts_meta.parquet",
    "latent_scores": "data/07_model_output/${globals:setting}/latent_scores.parquet",
    "latent_metrics": "data/08_reporting/${globals:setting}/latent_metrics.parquet",
    "steering_scores": "data/08_reporting/${globals:setting}/steering_scores.parquet",
    "steering_selection": "data/08_reporting/${globals:setting}/steering_selection.parquet",
    "steering_summary": "data/08_reporting/${globals:setting}/steering_summary.parquet",
    "judgements": "data/07_model_output/${globals:setting}/judgements.parquet",
    "datagen_llm_usage": "data/08_reporting/${globals:setting}/datagen_llm_usage.parquet",
    "latent_eval_llm_usage": "data/08_reporting/${globals:setting}/latent_eval_llm_usage.parquet",
    "steering_llm_usage": "data/08_reporting/${globals:setting}/steering_llm_usage.parquet",
}


def e2e_environ() -> dict[str, str]:
    """Environment for subprocesses (and this process) of the end-to-end tests: offline, no telemetry, a planted key."""
    return {
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "OPENAI_API_KEY": PLANTED_KEY,
        "MPLBACKEND": "Agg",
    }


def make_project_copy(dest: Path) -> Path:
    """Create a runnable copy of the project under ``dest`` (see the module docstring)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    from axbench_kedro.settings import CONFIG_LOADER_ARGS

    def ignored(folder: str, names: list[str]) -> set[str]:
        skip = {"local"} if Path(folder) == ROOT / "conf" else set()
        if Path(folder).parent == ROOT / "conf" and Path(folder).name != "base":
            skip |= {n for n in names if n.startswith("credentials")}  # a developer's own keys
        return skip

    shutil.copytree(ROOT / "conf", dest / "conf", ignore=ignored)
    (dest / "conf" / "local").mkdir()
    run_env = dest / "conf" / CONFIG_LOADER_ARGS["default_run_env"]
    run_env.mkdir(exist_ok=True)
    (run_env / "credentials.yml").write_text(
        f'openai:\n  api_key: "{PLANTED_KEY}"\n  base_url: ""\n', encoding="utf-8"
    )
    if (ROOT / "notebooks").is_dir():
        shutil.copytree(
            ROOT / "notebooks", dest / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints")
        )
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for layer in LAYERS:
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    raw = ROOT / "data" / "01_raw"
    if raw.is_dir():
        shutil.copytree(raw, dest / "data" / "01_raw", dirs_exist_ok=True)
    return dest


@contextmanager
def session(project: Path, **kwargs: Any) -> Iterator[KedroSession]:
    """A KedroSession on ``project`` with the test environment variables set."""
    saved = {k: os.environ.get(k) for k in e2e_environ()}
    os.environ.update(e2e_environ())
    try:
        bootstrap_project(project)
        with KedroSession.create(project_path=project, **kwargs) as sess:
            yield sess
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def add_standins(project: Path) -> list[str]:
    """Declare (in the copy only) the upstream datasets no catalog file defines yet; returns their names."""
    with session(project) as sess:
        catalog = sess.load_context().catalog
        missing = [name for name in _STANDIN_PATHS if name not in catalog]
    if missing:
        lines = ["# test stand-ins for upstream datasets not declared by their pipeline's catalog yet"]
        for name in missing:
            lines += [
                f"{name}:",
                "  type: pandas.ParquetDataset",
                f"  filepath: {_STANDIN_PATHS[name]}",
                "  versioned: true",
            ]
        (project / "conf" / "base" / "catalog_zz_test_standins.yml").write_text("\n".join(lines) + "\n")
    return missing


def save_through_catalog(project: Path, frames: Mapping[str, Any]) -> None:
    """Save each frame to the copy's catalog entry of the same name."""
    with session(project) as sess:
        catalog = sess.load_context().catalog
        for name, frame in frames.items():
            catalog.save(name, frame)


def other_setting_templates(project: Path) -> dict[str, str]:
    """The ``{setting}`` path templates ``results_across_settings`` globs, read from the copy's catalog config."""
    with session(project) as sess:
        config = sess.load_context().config_loader["catalog"]["results_across_settings"]
    return {
        name: spec["filepath"] if isinstance(spec, dict) else spec for name, spec in config["sources"].items()
    }


def write_other_setting(project: Path, setting: str, frames: Mapping[str, pd.DataFrame]) -> None:
    """Write another setting's results as Kedro-versioned parquet files where the across-settings dataset looks."""
    for name, template in other_setting_templates(project).items():
        if name in frames:
            path = Path(template.replace("{setting}", setting))
            path = path if path.is_absolute() else project / path
            ParquetDataset(filepath=str(path), version=Version(None, None)).save(frames[name])


def run_reporting(project: Path, **run_kwargs: Any) -> dict[str, Any]:
    """``kedro run --pipeline reporting`` on the copy (``run_kwargs`` e.g. ``load_versions``)."""
    runtime_params = run_kwargs.pop("runtime_params", None)
    with session(project, runtime_params=runtime_params) as sess:
        return sess.run(pipeline_name="reporting", **run_kwargs)


def versions(project: Path, relative: str) -> list[str]:
    """Sorted version folders of a versioned dataset path (relative to the project)."""
    folder = project / relative
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def populate(project: Path, *, seed: int = 0) -> None:
    """Upstream results for the current setting (through the catalog) and for one other setting (on disk)."""
    add_standins(project)
    save_through_catalog(project, synthetic.upstream(CURRENT_SETTING, seed=seed))
    other = synthetic.upstream(OTHER_SETTING, seed=seed + 1, offset=0.2)
    other["steering_summary"] = synthetic.steering_summary(other["steering_selection"], OTHER_SETTING, "llm")
    write_other_setting(project, OTHER_SETTING, other)


@functools.cache
def shared_report_project() -> Path:
    """One populated project copy per test process, with the reporting pipeline already run (read-only use)."""
    base = Path(tempfile.mkdtemp(prefix="axbench_report_"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    project = make_project_copy(base / "project")
    populate(project)
    run_reporting(project)
    return project


def files_containing(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle``."""
    hits = []
    data = needle.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and data in path.read_bytes():
            hits.append(path)
    return hits
