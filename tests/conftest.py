"""Project-wide pytest fixtures.

Sections: each helper appends its fixtures under its own heading; keep the tiny models session-scoped (they are
shared read-only: never train or modify their weights in place, build your own with ``make_tiny_target_model``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# With the mlflow extra installed, every Kedro session of a test opens an MLflow run: keep them out of the checkout.
if "MLFLOW_TRACKING_URI" not in os.environ:
    _mlruns = tempfile.mkdtemp(prefix="axbench_test_mlruns_")
    atexit.register(shutil.rmtree, _mlruns, ignore_errors=True)
    os.environ["MLFLOW_TRACKING_URI"] = Path(_mlruns).as_uri()

sys.path.insert(0, str(Path(__file__).resolve().parent))  # makes `fixtures.*` importable from every test

from axbench_kedro.lm.types import TargetModel  # noqa: E402
from fixtures.tiny_models import make_tiny_target_model  # noqa: E402

# --- lm: tiny target models ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_gemma3() -> TargetModel:
    """Random Gemma-3 text model: 2 layers, hidden 64, word-level Gemma-like tokenizer (read-only, shared)."""
    return make_tiny_target_model("gemma3", n_layers=2, hidden=64, seed=0)


@pytest.fixture(scope="session")
def tiny_gemma2() -> TargetModel:
    """Random Gemma-2 model: 2 layers, hidden 64, word-level Gemma-like tokenizer (read-only, shared)."""
    return make_tiny_target_model("gemma2", n_layers=2, hidden=64, seed=0)


# --- (other helpers: add your sections below) ----------------------------------------------------------------------
