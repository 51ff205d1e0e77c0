"""Zero-cost rerun: wall of a second default `kedro run` ÷ the first, and the second run's LLM calls.

Runs in a fresh clone of this repository (empty `data/`), so the first run has cold data caches; the converted
model cache under ~/.cache/axbench_kedro is kept unless --cold-model is given. Target: ratio ≤ 0.10, 0 LLM calls.

Usage: python benchmarks/bench_rerun.py [--cold-model] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_run(project: Path, model_cache: Path | None) -> float:
    """Run the default pipeline once and return its wall seconds."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    if model_cache is not None:
        env["XDG_CACHE_HOME"] = str(model_cache)  # default home of the converted model
    started = time.perf_counter()
    subprocess.run([KEDRO, "run"], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def latest_llm_calls(project: Path) -> int:
    """LLM calls (cache misses) of the newest run, summed over the report's usage table."""
    tables = sorted((project / "data" / "08_reporting").glob("*/report/llm_usage.csv/*/llm_usage.csv"))
    usage = pd.read_csv(tables[-1])
    return int(usage.loc[usage["stage"] != "total", "calls"].sum())


def measure_rerun(cold_model: bool = False, keep: bool = False) -> dict[str, float]:
    """Two default `kedro run` in a fresh clone of this repository.

    Returns:
        ``first_s``, ``second_s``, ``ratio`` (second ÷ first), ``first_calls`` and ``second_calls`` (LLM calls).
    """
    workdir = Path(tempfile.mkdtemp(prefix="axbench-rerun-"))
    project = workdir / "project"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(project)], check=True)
    model_cache = workdir / "model-cache" if cold_model else None
    try:
        first = kedro_run(project, model_cache)
        first_calls = latest_llm_calls(project)
        second = kedro_run(project, model_cache)
        second_calls = latest_llm_calls(project)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "first_s": first,
        "second_s": second,
        "ratio": second / first,
        "first_calls": first_calls,
        "second_calls": second_calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cold-model", action="store_true", help="also convert the embedded GGUF again")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()

    out = measure_rerun(args.cold_model, args.keep)
    first, second, second_calls = out["first_s"], out["second_s"], out["second_calls"]
    print(f"first run : {first:8.1f} s  LLM calls {out['first_calls']}")
    print(f"second run: {second:8.1f} s  LLM calls {second_calls}")
    print(
        f"second ÷ first wall: {second / first:.3f}  (target ≤ 0.10);  second-run LLM calls: {second_calls} (target 0)"
    )


if __name__ == "__main__":
    main()
