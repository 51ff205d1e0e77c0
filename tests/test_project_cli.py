"""The Kedro project as a user meets it: registry, and one-line errors for bad configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def _kedro(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([KEDRO, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's code and configuration with an empty data folder."""
    dest = tmp_path_factory.mktemp("project") / "axbench"
    shutil.copytree(
        ROOT, dest, ignore=shutil.ignore_patterns(".venv", ".git", "data", "build", "logs", "*.pyc")
    )
    for layer in ("01_raw",):
        shutil.copytree(ROOT / "data" / layer, dest / "data" / layer)
    return dest


def _env_from_demo(project: Path, name: str, globals_override: dict) -> None:
    """A new environment ``name``: the demo's configuration with some globals changed (as a user would start)."""
    env_dir = project / "conf" / name
    shutil.copytree(project / "conf" / "demo", env_dir, dirs_exist_ok=True)
    globals_ = yaml.safe_load((env_dir / "globals.yml").read_text(encoding="utf-8"))
    for key, value in globals_override.items():
        globals_[key] = {**globals_.get(key, {}), **value} if isinstance(value, dict) else value
    (env_dir / "globals.yml").write_text(yaml.safe_dump(globals_), encoding="utf-8")


@pytest.mark.slow
def test_registry_lists_every_pipeline(project_copy: Path) -> None:
    result = _kedro(["registry", "list"], project_copy)
    assert result.returncode == 0, result.stderr
    for name in ("__default__", "datagen", "training", "latent_eval", "steering_eval", "reporting"):
        assert f"- {name}" in result.stdout


@pytest.mark.slow
def test_bad_parameter_stops_the_run_with_one_line(project_copy: Path) -> None:
    result = _kedro(["run", "--pipeline", "reporting", "--params", "run.layer=nine"], project_copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "params:run.layer" in errors[0]
    assert "Traceback" not in result.stderr
    assert not list((project_copy / "data" / "08_reporting").glob("**/*.csv"))


@pytest.mark.slow
def test_environment_without_its_setting_is_named(project_copy: Path) -> None:
    env_dir = project_copy / "conf" / "half_done"
    env_dir.mkdir(exist_ok=True)
    (env_dir / "globals.yml").write_text("layer: 9\n", encoding="utf-8")  # no `setting`, no `model`
    result = _kedro(["run", "--env", "half_done", "--pipeline", "training"], project_copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    # Kedro resolves the catalog in hash order: either missing key may be the one named.
    assert ("'setting'" in errors[0] or "'model'" in errors[0]) and "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_model_path_is_named_before_any_work(project_copy: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    _env_from_demo(
        project_copy, "missing_model", {"model": {"source": "local", "name_or_path": str(missing)}}
    )
    result = _kedro(["run", "--env", "missing_model", "--pipeline", "training"], project_copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "model.name_or_path" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_llm_judge_without_key_is_named_before_any_work(project_copy: Path) -> None:
    _env_from_demo(
        project_copy,
        "judge_without_key",
        {"judge": {"kind": "llm", "backend": "openai", "model": "gpt-4o-mini"}},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update({"KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    result = subprocess.run(
        [KEDRO, "run", "--env", "judge_without_key", "--pipeline", "steering_eval"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "openai.api_key" in errors[0]
    assert "Running node" not in result.stderr + result.stdout


@pytest.mark.slow
def test_empty_concept_list_stops_datagen_with_one_line(project_copy: Path) -> None:
    """An empty concept list used to run datagen on nothing and exit 0; now: exit 1, one line naming the file, and
    nothing written (the check runs before the first node, which would answer the negative pool)."""
    empty = project_copy / "data" / "01_raw" / "concepts_empty.csv"
    empty.write_text("concept,url\n", encoding="utf-8")
    _env_from_demo(project_copy, "empty_concepts", {"concept_list": "data/01_raw/concepts_empty.csv"})
    intermediate = project_copy / "data" / "02_intermediate"
    before = sorted(intermediate.rglob("*")) if intermediate.exists() else []
    result = _kedro(["run", "--env", "empty_concepts", "--pipeline", "datagen"], project_copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "data/01_raw/concepts_empty.csv: no concepts" in errors[0]
    assert "Traceback" not in result.stderr
    assert "Running node" not in result.stderr + result.stdout
    after = sorted(intermediate.rglob("*")) if intermediate.exists() else []
    assert after == before


@pytest.mark.slow
def test_malformed_sae_max_act_table_stops_the_run_before_any_node(project_copy: Path) -> None:
    """A present but malformed Neuronpedia max-activation table (a duplicate feature id) is one line naming the file
    and the column, before any node (latent_eval would otherwise read it only after scoring)."""
    table = project_copy / "data" / "01_raw" / "bad_sae_max_act.csv"
    table.write_text("sae_id,max_act\n3,12.5\n3,13.0\n", encoding="utf-8")
    _env_from_demo(project_copy, "bad_sae_table", {"sae_max_act": "data/01_raw/bad_sae_max_act.csv"})
    result = _kedro(["run", "--env", "bad_sae_table", "--pipeline", "latent_eval"], project_copy)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("Error: sae_max_act: ")
    assert "data/01_raw/bad_sae_max_act.csv: column 'sae_id': 1 duplicate id" in errors[0]
    assert "Traceback" not in result.stderr
    assert "Running node" not in result.stderr + result.stdout
