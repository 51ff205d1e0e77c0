"""HyperSteer training memory, cached vs streamed states, as the concepts grow (not a test; prints peak RSS).

Each (mode, concept count) trains HyperSteer through the trainer in a fresh process (peak RSS only ever grows), on a
tiny random Gemma-3 widened to ``--hidden`` (so that the rows' states, not the libraries, dominate) with the rows of
``bench_training_latent.py`` (``--positives`` per concept; concepts past its 4 are copies under new ids). Printed per
run: RSS before training, peak RSS during it, their difference, and the bytes of layer-L states (storage actually
held: a row's states are views of its padded batch) and prompt states the trainer and HyperSteer computed, in all
(cached: held for the whole training) and per call at most (streamed: one step's rows); then, per mode, the peak
growth at the largest concept count ÷ at the smallest. ``--cache-states`` (one run) is what the parent calls.

Usage:
    python benchmarks/bench_hypersteer_memory.py [--concepts 4 16] [--positives 72] [--hidden 512] [--epochs 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

MB = 2**20
HERE = Path(__file__).resolve().parent


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a view keeps its whole base alive)."""
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def one_run(n_concepts: int, positives: int, hidden: int, epochs: int, cache_states: bool) -> dict[str, Any]:
    """Train HyperSteer once in this process; returns the memory figures."""
    sys.path.insert(0, str(HERE.parents[0] / "tests"))
    sys.path.insert(0, str(HERE))
    from bench_training_latent import make_data

    import axbench_kedro.methods.hypersteer as hs
    import axbench_kedro.methods.trainer as trainer
    from axbench_kedro.methods.registry import get_method
    from fixtures.tiny_models import make_tiny_target_model

    tm = make_tiny_target_model("gemma3", n_layers=4, hidden=hidden, seed=0)
    train, meta, _ = make_data(n_pos=positives)
    base = trainer.build_concepts(train, meta)
    concepts = [dataclasses.replace(base[i % len(base)], concept_id=i) for i in range(n_concepts)]
    calls: list[tuple[int, int]] = []  # (rows, bytes) per compute_lm_rows / prompt_states call
    lm_rows, states = trainer.compute_lm_rows, hs.prompt_states

    def counted_rows(*args: Any, **kwargs: Any) -> Any:
        out = lm_rows(*args, **kwargs)
        calls.append((len(out), _storage_bytes(out.hidden) + sum(x.nbytes for x in out.input_ids)))
        return out

    def counted_states(*args: Any, **kwargs: Any) -> Any:
        out = states(*args, **kwargs)
        calls.append((len(out), _storage_bytes(out)))
        return out

    trainer.compute_lm_rows, hs.prompt_states = counted_rows, counted_states  # type: ignore[assignment]
    hp = get_method("HyperSteer").params(
        {"n_layers": 2, "hidden": 64, "n_heads": 4, "intermediate": 256, "held_out": 1}
        | {"epochs": epochs, "cache_states": cache_states}
    )
    opts = trainer.TrainOptions(setting="bench", layer=1, seed=42)
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    trainer.train_methods(tm, concepts, [(get_method("HyperSteer"), hp)], opts)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "rss_before": before,
        "peak": peak,
        "seconds": seconds,
        "rows": (n_concepts - 1) * positives,
        "states_total": sum(b for _, b in calls),
        "states_max_call": max(b for _, b in calls),
        "rows_max_call": max(r for r, _ in calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concepts", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--positives", type=int, default=72, help="positives per concept (paper: 72)")
    parser.add_argument("--hidden", type=int, default=512, help="width d of the tiny model")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--cache-states", choices=["true", "false"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cache_states is not None:  # one run, in this (fresh) process
        (n,) = args.concepts
        print(json.dumps(one_run(n, args.positives, args.hidden, args.epochs, args.cache_states == "true")))
        return

    print(
        f"tiny Gemma-3, d {args.hidden}, layer 1; {args.positives} positives per concept, one concept held out; "
        f"{args.epochs} epoch(s), batch 12"
    )
    print(
        f"{'mode':>8s} {'concepts':>8s} {'rows':>5s} {'s':>6s} {'RSS before':>10s} {'peak RSS':>9s} "
        f"{'growth':>7s} {'states computed':>15s} {'max/call':>9s} {'rows/call':>9s}  (MB)"
    )
    growth: dict[str, list[float]] = {}
    for mode in ("cached", "streamed"):
        for n in sorted(args.concepts):
            cmd = [sys.executable, __file__, "--concepts", str(n), "--positives", str(args.positives)]
            cmd += ["--hidden", str(args.hidden), "--epochs", str(args.epochs)]
            cmd += ["--cache-states", "true" if mode == "cached" else "false"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            grew = (r["peak"] - r["rss_before"]) / MB
            growth.setdefault(mode, []).append(grew)
            print(
                f"{mode:>8s} {n:8d} {r['rows']:5d} {r['seconds']:6.1f} {r['rss_before'] / MB:10.0f} "
                f"{r['peak'] / MB:9.0f} {grew:7.0f} {r['states_total'] / MB:15.1f} "
                f"{r['states_max_call'] / MB:9.2f} {r['rows_max_call']:9d}",
                flush=True,
            )
    lo, hi = min(args.concepts), max(args.concepts)
    for mode, values in growth.items():
        print(f"{mode}: peak RSS growth at {hi} concepts ÷ at {lo}: {values[-1] / max(values[0], 1e-9):.2f}")
    print(
        f"peak RSS growth at {hi} concepts, cached ÷ streamed: {growth['cached'][-1] / growth['streamed'][-1]:.2f}"
    )


if __name__ == "__main__":
    main()
