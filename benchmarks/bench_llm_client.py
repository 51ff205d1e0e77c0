"""Judge-throughput benchmark of the LLM client against the loopback fake OpenAI server.

1,000 distinct calls, 200 ms server latency, 32 in flight, fresh SQLite cache → wall seconds and calls/s
(target: ≤ 10 s; the floor is 1000 / 32 × 0.2 s = 6.25 s). Then the same 1,000 again: all cache hits, no call.

The server runs in its own process by default, as a real server would (``--in-process`` shares this process's
interpreter lock with the client instead, which measures client and server together).

Run: ``python benchmarks/bench_llm_client.py [--calls 1000] [--latency 0.2] [--concurrency 32] [--in-process]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from axbench_kedro.llm.types import LLMRequest  # noqa: E402
from fixtures.fake_openai import FakeOpenAIServer, client_for  # noqa: E402


class _RemoteServer:
    """A FakeOpenAIServer in a child process; exposes ``base_url`` and the request count."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url

    def stats(self) -> dict[str, int]:
        url = self.base_url.removesuffix("/v1") + "/_fake/stats"
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
            return json.loads(resp.read())


@contextlib.contextmanager
def _server(latency: float, in_process: bool) -> Iterator[object]:
    if in_process:
        with FakeOpenAIServer(latency_s=latency) as server:
            yield server
        return
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fixtures" / "fake_openai.py"), "--latency", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        yield _RemoteServer(proc, base_url)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


def _stats(server: object) -> dict[str, int]:
    if isinstance(server, FakeOpenAIServer):
        return {"requests": len(server.requests), "max_in_flight": server.max_in_flight}
    return server.stats()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call, seconds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--target", type=float, default=10.0, help="wall-time target of the cold run, seconds"
    )
    parser.add_argument("--in-process", action="store_true", help="run the fake server in this process")
    args = parser.parse_args(argv)

    requests = [
        LLMRequest.user(f"Rate the concept presence in fragment number {i}.", temperature=0.0)
        for i in range(args.calls)
    ]
    with tempfile.TemporaryDirectory() as tmp, _server(args.latency, args.in_process) as server:
        client = client_for(server, Path(tmp) / "bench.sqlite", max_concurrency=args.concurrency)  # type: ignore[arg-type]

        start, cpu_start = time.perf_counter(), time.process_time()
        cold = client.complete_many(requests, desc="cold")
        cold_s, cold_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        after_cold = _stats(server)

        start = time.perf_counter()
        warm = client.complete_many(requests, desc="warm")
        warm_s = time.perf_counter() - start
        after_warm = _stats(server)

    floor = args.calls / args.concurrency * args.latency
    totals = client.totals()
    where = "in-process" if args.in_process else "separate process"
    print(
        f"calls={args.calls} latency={args.latency * 1000:.0f}ms concurrency={args.concurrency} server={where}"
    )
    print(
        f"cold: {cold_s:.2f} s wall, {args.calls / cold_s:.1f} calls/s (floor {floor:.2f} s, "
        f"target <= {args.target:.1f} s); server saw {after_cold['requests']} requests, "
        f"max in flight {after_cold['max_in_flight']}"
    )
    owner = "client" if not args.in_process else "client + server"
    print(
        f"cold: {cold_cpu:.2f} s CPU of this process ({owner}), {cold_cpu / args.calls * 1000:.2f} ms per call"
    )
    new_requests = after_warm["requests"] - after_cold["requests"]
    print(
        f"warm: {warm_s:.3f} s wall, {args.calls / warm_s:.0f} replies/s, all cached: "
        f"{all(r.cached for r in warm)}, server saw {new_requests} new requests"
    )
    print(
        f"ledger: calls={totals.calls} cache_hits={totals.cache_hits} input_tokens={totals.input_tokens} "
        f"output_tokens={totals.output_tokens} cost_usd={totals.cost_usd:.6f}"
    )
    ok = (
        cold_s <= args.target
        and after_cold["requests"] == args.calls
        and after_cold["max_in_flight"] <= args.concurrency
        and all(r.cached for r in warm)
        and new_requests == 0
        and [r.text for r in cold] == [r.text for r in warm]
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
