"""SFT memory across concepts (not a test): does memory stay that of one concept however many are trained?

Trains SFT (protocol §3.12) on k concepts in one trainer call, as the training pipeline does (no cache: the rows go
to a temporary folder, :mod:`axbench_kedro.methods.row_spool`), and prints after each concept (measured when the next
one starts, and at the end) the process RSS, the peak RSS so far, and on a GPU the allocated / peak-allocated CUDA
memory; then the ratio memory after concept k ÷ memory after concept 1 (≈ 1.0 when neither the model copies nor the
optimizer state accumulate; a row kept in memory would add one model copy per concept) and whether the model's
weights came back bit for bit. Concepts past the 4 of the benchmark data are copies of them under new concept ids.

Usage:
    python benchmarks/bench_sft_memory.py [--model tiny|embedded] [--layer 12] [--concepts 6] [--epochs 1]
        [--trainable all|layers] [--hidden 512] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.sft import SFT
from axbench_kedro.methods.trainer import train_methods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reps import bench_setup  # noqa: E402

MB = 2**20


def _weights_sha(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _memory(device: torch.device) -> dict[str, float]:
    gc.collect()
    out = {
        "rss": psutil.Process().memory_info().rss / MB,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["cuda"] = torch.cuda.memory_allocated(device) / MB
        out["cuda_peak"] = torch.cuda.max_memory_allocated(device) / MB
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["embedded", "tiny"], default="tiny")
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument(
        "--hidden", type=int, default=512, help="width of the tiny model (a wider one shows leaks)"
    )
    parser.add_argument("--concepts", type=int, default=6, help="k: concepts trained in one trainer call")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--trainable", choices=["all", "layers"], default="all")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="LM tail dtype")
    args = parser.parse_args()

    tm, _layer, base_concepts, _prefs, opts = bench_setup(args.model, args.layer, args.dtype)
    if args.model == "tiny":
        from fixtures.tiny_models import make_tiny_target_model  # on sys.path after bench_setup("tiny")

        tm = make_tiny_target_model("gemma3", n_layers=4, hidden=args.hidden, seed=0)
        n_params = sum(p.numel() for p in tm.model.parameters())
        print(f"tiny model widened to hidden {args.hidden}: {n_params / 1e6:.1f} M parameters")
    concepts = [
        dataclasses.replace(base_concepts[i % len(base_concepts)], concept_id=i) for i in range(args.concepts)
    ]
    hp = get_method("SFT").params(
        {
            "lr": 1e-4,
            "epochs": args.epochs,
            "batch_size": 6,
            "gradient_accumulation": 1,
            "trainable": args.trainable,
            "max_concepts": None,
        }
    )
    original = _weights_sha(tm.model)
    start = _memory(tm.device)
    print(
        f"SFT trainable={args.trainable}, {args.epochs} epoch(s); before training: RSS {start['rss']:.0f} MB"
    )
    header = f"{'concept':>7s} {'seconds':>8s} {'row MB':>8s} {'RSS MB':>9s} {'peak RSS MB':>12s}"
    if tm.device.type == "cuda":
        header += f" {'CUDA MB':>9s} {'CUDA peak MB':>13s}"
    print(header)
    marks: list[tuple[float, dict[str, float]]] = []
    train_concept = SFT.train_concept

    def measured(self: SFT, inputs: Any, hp: Any) -> dict[str, Any]:
        marks.append((time.perf_counter(), _memory(tm.device)))  # = after the previous concept
        return train_concept(self, inputs, hp)

    SFT.train_concept = measured  # type: ignore[method-assign]
    try:
        arts, _ = train_methods(tm, concepts, [(get_method("SFT"), hp)], opts)
    finally:
        SFT.train_concept = train_concept  # type: ignore[method-assign]
    marks.append((time.perf_counter(), _memory(tm.device)))
    restored = _weights_sha(tm.model) == original
    art = arts["SFT"]
    after = [mem for _, mem in marks[1:]]
    for k, (concept, mem) in enumerate(zip(concepts, after, strict=True), start=1):
        seconds = marks[k][0] - marks[k - 1][0]
        row_mb = os.path.getsize(art.row_files[concept.concept_id].path) / MB
        line = f"{k:7d} {seconds:8.2f} {row_mb:8.1f} {mem['rss']:9.1f} {mem['peak_rss']:12.1f}"
        if "cuda" in mem:
            line += f" {mem['cuda']:9.1f} {mem['cuda_peak']:13.1f}"
        print(line, flush=True)
    first, last = after[0], after[-1]
    print(f"RSS after concept {len(after)} ÷ after concept 1: {last['rss'] / first['rss']:.3f}")
    print(
        f"peak RSS after concept {len(after)} ÷ after concept 1: {last['peak_rss'] / first['peak_rss']:.3f}"
    )
    if "cuda" in first:
        print(
            f"CUDA allocated after concept {len(after)} ÷ after concept 1: {last['cuda'] / first['cuda']:.3f}"
        )
        print(
            f"CUDA peak after concept {len(after)} ÷ after concept 1: {last['cuda_peak'] / first['cuda_peak']:.3f}"
        )
    print(f"weights restored bit for bit after every concept: {restored}")


if __name__ == "__main__":
    main()
