"""SFT memory across concepts (not a test): is each concept's model copy, optimizer state and gradient released?

Trains SFT (protocol §3.12) on k concepts one after another, each through the trainer on its own (its artifact row is
measured and dropped, so what remains is what training left behind), and prints after each concept the process RSS,
the peak RSS so far, and on a GPU the allocated / peak-allocated CUDA memory; then the ratio memory after concept k ÷
memory after concept 1 (≈ 1.0 when nothing accumulates) and whether the model's weights came back bit for bit.
Concepts past the 4 of the benchmark data are copies of them under new concept ids.

Usage:
    python benchmarks/bench_sft_memory.py [--model tiny|embedded] [--layer 12] [--concepts 6] [--epochs 1]
        [--trainable all|layers] [--hidden 512] [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import resource
import sys
import time
from pathlib import Path

import psutil
import torch

from axbench_kedro.methods.registry import get_method
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
    parser.add_argument("--concepts", type=int, default=6, help="k: concepts trained one after another")
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
    after: list[dict[str, float]] = []
    restored = True
    for k, concept in enumerate(concepts, start=1):
        t0 = time.perf_counter()
        arts, _ = train_methods(tm, [concept], [(get_method("SFT"), hp)], opts)
        seconds = time.perf_counter() - t0
        row_mb = sum(t.numel() * t.element_size() for t in arts["SFT"].tensors.values()) / MB
        del arts
        restored &= _weights_sha(tm.model) == original
        mem = _memory(tm.device)
        after.append(mem)
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
