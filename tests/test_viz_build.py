"""``kedro viz build --include-previews`` works from the project and draws the benchmark readably.

The lineage must read as datagen → training → latent_eval → steering_eval → reporting: one collapsible group
(Kedro namespace) per pipeline, in flow order, every catalog dataset on a kedro-viz layer, and previews that render
(list-valued parquet columns included).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from axbench_kedro.pipeline_registry import DEFAULT_ORDER, register_pipelines
from reporting.project import PLANTED_KEY, e2e_environ, files_containing, shared_report_project

LAYERS = ["raw", "intermediate", "primary", "feature", "model_input", "models", "model_output", "reporting"]


@pytest.fixture(scope="module")
def build() -> Path:
    project = shared_report_project()
    kedro = Path(sys.executable).with_name("kedro")
    done = subprocess.run(
        [str(kedro), "viz", "build", "--include-previews"],
        cwd=project,
        env={**os.environ, **e2e_environ(), "COLUMNS": "1000"},  # one log record per line (rich wraps at 80)
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    # kedro-viz logs a failed preview and still exits 0. The only acceptable failure is a dataset this populated copy
    # never wrote (no version yet); anything written must preview.
    failed = re.findall(r"'(\w+)' could not be previewed\. Full exception: (\w+)", output)
    assert failed, (
        "expected the never-written datasets to be reported (is the log still one line per record?)"
    )
    assert {kind for _, kind in failed} == {"VersionNotFoundError"}, failed
    for problem in ("Failed to save", "Traceback"):
        assert problem not in output, output[-3000:]
    assert (project / "build" / "index.html").is_file()
    return project / "build"


def _graph(build: Path, name: str) -> dict:
    return json.loads((build / "api" / "pipelines" / name).read_text())


@pytest.mark.slow
def test_viz_build_lists_every_pipeline(build: Path) -> None:
    main = json.loads((build / "api" / "main").read_text())
    listed = {p["id"] for p in main["pipelines"]}
    registered = set(register_pipelines())
    assert registered <= listed, registered - listed
    for name in registered - {"__default__"}:
        kinds = {node["type"] for node in _graph(build, name)["nodes"]}
        assert {"task", "data"} <= kinds, name
    reporting = _graph(build, "reporting")
    datasets = {node["name"] for node in reporting["nodes"] if node["type"] == "data"}
    assert {"leaderboard", "steering_selection", "results_across_settings", "run_card"} <= datasets
    project = build.parent
    assert files_containing(build, PLANTED_KEY) == []
    assert files_containing(project / "data", PLANTED_KEY) == []


@pytest.mark.slow
def test_viz_groups_pipelines_in_flow_order_with_layers(build: Path) -> None:
    graph = _graph(build, "__default__")
    groups = graph["modular_pipelines"]
    assert set(DEFAULT_ORDER) <= set(groups), sorted(groups)
    root_children = {child["id"] for child in groups["__root__"]["children"]}
    assert set(DEFAULT_ORDER) <= root_children  # top-level collapsible groups
    tasks = [n for n in graph["nodes"] if n["type"] == "task"]
    assert tasks and all(
        len(n["modular_pipelines"] or []) == 1 for n in tasks
    )  # every node sits in one group
    # Flow order: each stage feeds the next, and no later stage feeds an earlier one.
    produced = {name: set(groups[name]["outputs"]) for name in DEFAULT_ORDER}
    consumed = {name: set(groups[name]["inputs"]) for name in DEFAULT_ORDER}
    for i, upstream in enumerate(DEFAULT_ORDER):
        for j, downstream in enumerate(DEFAULT_ORDER):
            if i < j and j == i + 1:
                assert produced[upstream] & consumed[downstream], f"{upstream} does not feed {downstream}"
            if j < i:
                assert not produced[upstream] & consumed[downstream], f"{upstream} feeds {downstream}"

    assert set(DEFAULT_ORDER) <= {tag["id"] for tag in graph["tags"]}  # one tag per pipeline for the filter
    assert graph["layers"] == [layer for layer in LAYERS if layer in graph["layers"]]
    assert {"raw", "intermediate", "models", "model_output", "reporting"} <= set(graph["layers"])
    data = [n for n in graph["nodes"] if n["type"] == "data"]
    missing = sorted(n["name"] for n in data if n.get("layer") not in LAYERS)
    assert not missing, f"datasets without a kedro-viz layer: {missing}"


@pytest.mark.slow
def test_viz_previews_render_list_valued_parquet(build: Path) -> None:
    graph = _graph(build, "__default__")
    by_name = {n["name"]: n for n in graph["nodes"] if n["type"] == "data"}
    for name in ("latent_scores", "steering_selection"):
        meta = json.loads((build / "api" / "nodes" / by_name[name]["id"]).read_text())
        preview = meta.get("preview")
        assert preview and preview["data"], name
    scores = json.loads((build / "api" / "nodes" / by_name["latent_scores"]["id"]).read_text())["preview"]
    acts = scores["columns"].index("acts")
    assert scores["data"][0][acts].startswith("[0.0, ")
