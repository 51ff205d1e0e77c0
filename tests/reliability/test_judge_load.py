"""Load: the LLM judge rates 5,000 requests against the loopback server at 64 in flight, loses none, and its
memory stays bounded (peak RSS measured by ``benchmarks/bench_judge_load.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_judge_load.py"


def _bench():  # the benchmark script is not a package: load it by path
    spec = importlib.util.spec_from_file_location("bench_judge_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_judge_handles_5000_requests_at_64_in_flight(tmp_path) -> None:
    result = _bench().judge_load(5000, 64, tmp_path / "llm.sqlite", latency_s=0.02)
    assert result["requested"] == 5001  # 1,667 generations × 3 criteria
    assert result["judgements"] == result["distinct_requests_at_server"] == result["calls"] == 5001
    assert result["lost"] == 0 and result["failures"] == 0 and result["parse_failures"] == 0
    assert result["server_max_in_flight"] <= 64
    assert result["rss_growth_mb"] < 400  # measured: ~62 MB
