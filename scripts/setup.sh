#!/usr/bin/env bash
# Set up .venv from nothing: torch 2.13.0 (CPU wheel) first, then the project with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q torch==2.13.0
# Extras: dev (tests, linting) + mlflow (optional experiment tracking, tested in CI; ~20 s, ~160 MB)
# + scale (Dask distributed for `scaling.engine: dask`, tested in CI).
# AXBENCH_EXTRAS=dev bash scripts/setup.sh installs without MLflow and Dask.
.venv/bin/python -m pip install -q -e ".[${AXBENCH_EXTRAS:-dev,mlflow,scale}]"
