"""``notebooks/analysis.ipynb`` runs headless against a populated project copy, so it cannot rot."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbconvert.preprocessors import ExecutePreprocessor

from reporting.project import e2e_environ, shared_report_project


@pytest.mark.slow
def test_analysis_notebook_executes_and_redraws(monkeypatch: pytest.MonkeyPatch) -> None:
    project = shared_report_project()  # synthetic upstream results + one reporting run, in a temp copy
    for key, value in e2e_environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KEDRO_ENV", raising=False)
    path = project / "notebooks" / "analysis.ipynb"
    notebook = nbformat.read(path, as_version=4)
    ExecutePreprocessor(timeout=300, kernel_name="python3").preprocess(
        notebook, {"metadata": {"path": str(path.parent)}}
    )

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("output_type") == "error"]
    texts = "\n".join(
        out.get("text", "")
        + str(out.get("data", {}).get("text/markdown", ""))
        + str(out.get("data", {}).get("text/plain", ""))
        for out in outputs
    )
    assert "No report found" not in texts
    assert "Steering leaderboard" in texts
    assert "| DiffMean |" in texts and "gemma2_2b_l20" in texts
    pngs = [out["data"]["image/png"] for out in outputs if "image/png" in out.get("data", {})]
    assert pngs and all(len(png) > 1000 for png in pngs)
    assert os.environ["OPENAI_API_KEY"] not in texts
