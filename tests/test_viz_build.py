"""``kedro viz build`` works from the project and lists every registered pipeline with its datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from axbench_kedro.pipeline_registry import register_pipelines
from reporting.project import PLANTED_KEY, e2e_environ, files_containing, shared_report_project


@pytest.mark.slow
def test_viz_build_lists_every_pipeline() -> None:
    project = shared_report_project()
    kedro = Path(sys.executable).with_name("kedro")
    done = subprocess.run(
        [str(kedro), "viz", "build"],
        cwd=project,
        env={**os.environ, **e2e_environ()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    build = project / "build"
    assert (build / "index.html").is_file()

    main = json.loads((build / "api" / "main").read_text())
    listed = {p["id"] for p in main["pipelines"]}
    registered = set(register_pipelines())
    assert registered <= listed, registered - listed
    for name in registered - {"__default__"}:
        graph = json.loads((build / "api" / "pipelines" / name).read_text())
        kinds = {node["type"] for node in graph["nodes"]}
        assert {"task", "data"} <= kinds, name

    reporting = json.loads((build / "api" / "pipelines" / "reporting").read_text())
    datasets = {node["name"] for node in reporting["nodes"] if node["type"] == "data"}
    assert {"leaderboard", "steering_selection", "results_across_settings", "run_card"} <= datasets

    assert files_containing(build, PLANTED_KEY) == []
    assert files_containing(project / "data", PLANTED_KEY) == []
