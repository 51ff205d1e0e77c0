"""Load benchmark of the LLM judge: 5,000 judge calls against the loopback fake server at 64 in flight.

Builds the judge as the pipeline does (``build_judge`` from ``JudgeParams``, fixed 64 calls in flight), rates
1,667 generations (3 calls each; the server takes 50 ms per reply, so 64 calls are really in flight), and reports
wall seconds, calls/s, lost requests (requested − judgements − reported failures) and the peak RSS of the process during the run (sampled every 20 ms from ``/proc/self/statm``;
``ru_maxrss`` where that is missing), minus the RSS before it. Server and client share the process.

Measured (2 shared CPU cores, Python 3.11): 5,001 calls, 0 lost, 64 in flight at the server, 24 s (210 calls/s),
peak RSS 414 MB, +62 MB over the 352 MB before the run.

Run: ``python benchmarks/bench_judge_load.py [--requests 5000] [--in-flight 64] [--latency 0.05]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from fixtures.fake_openai import FakeOpenAIServer, body_key, client_for  # noqa: E402
from reliability.judge_frames import GOOD_REPLY, judge_frames, llm_judge  # noqa: E402


def rss_bytes() -> int:
    """Resident set size of this process now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRSS:
    """Samples the RSS on a thread while the ``with`` block runs: ``start``, ``peak`` and ``growth`` in bytes."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def judge_load(n_requests: int, in_flight: int, cache_path: Path, latency_s: float = 0.0) -> dict[str, Any]:
    """Judge ``ceil(n_requests / 3)`` generations; returns counts, wall time and memory."""
    generations, prompts = judge_frames(-(-n_requests // 3), n_concepts=50)
    with FakeOpenAIServer(reply_fn=lambda body: GOOD_REPLY, latency_s=latency_s) as server:
        client = client_for(server, cache_path)
        judge = llm_judge(client, max_in_flight=in_flight, adaptive=False)
        with PeakRSS() as rss:
            start = time.perf_counter()
            out = judge.judge(generations, prompts)
            wall = time.perf_counter() - start
        distinct_bodies = len({body_key(b) for b in server.requests})
        server_in_flight = server.max_in_flight
    requested = 3 * len(generations)
    totals = client.totals()
    client.close()
    return {
        "requested": requested,
        "judgements": len(out),
        "parse_failures": int((~out["parse_ok"]).sum()),
        "distinct_requests_at_server": distinct_bodies,
        "calls": totals.calls,
        "failures": totals.failures,
        "lost": requested - len(out) - totals.failures,
        "server_max_in_flight": server_in_flight,
        "wall_s": round(wall, 2),
        "calls_per_s": round(requested / wall, 1),
        "rss_start_mb": round(rss.start / 2**20, 1),
        "rss_peak_mb": round(rss.peak / 2**20, 1),
        "rss_growth_mb": round(rss.growth / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = judge_load(args.requests, args.in_flight, Path(tmp) / "llm.sqlite", args.latency)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
