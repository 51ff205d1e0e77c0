"""Training wall time per method on the demo-sized data (not a test; prints seconds and ratios to DiffMean).

Data: the concepts of ``bench_training_latent.py`` (4 concepts × 6 positives, 6 pool negatives per genre), with the
preference pairs of ``bench_reps.py`` for the RePS family. Every method trains alone, through the trainer, with its
protocol hyperparameters; ``--epochs N`` caps the epochs of every method that has them (the demo trains RePS for 6).
Methods that need a file the benchmark does not have (SAE, SAE-A, SAE-filtered without GemmaScope, the released
dictionaries) are reported as skipped with their reason. ``--hp`` overrides hyperparameters per method (JSON), e.g.
the demo's HyperSteer network (``conf/demo/parameters.yml``); HyperSteer trains once, on every concept but its
held-out one.

Usage:
    python benchmarks/bench_methods.py [--model embedded|tiny] [--layer 12] [--epochs 6] [--methods "DiffMean;LoRA"]
        [--hp '{"HyperSteer": {"n_layers": 2, "hidden": 64, "n_heads": 4, "intermediate": 256, "held_out": 1}}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from axbench_kedro.methods.registry import default_methods, get_method
from axbench_kedro.methods.trainer import train_methods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reps import bench_setup  # noqa: E402


def _hyperparameters(name: str, epochs: int | None, overrides: dict | None = None) -> object:
    """The method's protocol hyperparameters (with ``overrides``), epochs capped at ``epochs`` when it has them."""
    params = get_method(name).params(overrides)
    if epochs is not None and hasattr(params, "epochs"):
        params = params.model_copy(update={"epochs": min(int(params.epochs), epochs)})
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["embedded", "tiny"], default="embedded")
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=None, help="cap on every method's epochs")
    parser.add_argument("--methods", default=None, help="';'-separated registry names (default: all)")
    parser.add_argument("--hp", default="{}", help="JSON {method: {key: value}} overriding hyperparameters")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="LM tail dtype")
    args = parser.parse_args()

    overrides = json.loads(args.hp)
    tm, layer, concepts, prefs, opts = bench_setup(args.model, args.layer, args.dtype)
    names = [n.strip() for n in args.methods.split(";") if n.strip()] if args.methods else default_methods()
    walls: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        arts, _ = train_methods(
            tm,
            concepts,
            [(get_method(name), _hyperparameters(name, args.epochs, overrides.get(name)))],
            opts,
            preferences=prefs,
        )
        wall = time.perf_counter() - start
        art = arts[name]
        if not art.ok:
            print(f"{name:26s}  skipped ({art.skip_reason or art.status})")
            continue
        walls[name] = wall
    base = walls.get("DiffMean")
    print(f"{'method':26s} {'seconds':>9s} {'÷ DiffMean':>11s}")
    for name, wall in walls.items():
        ratio = f"{wall / base:11.1f}" if base else f"{'–':>11s}"
        print(f"{name:26s} {wall:9.2f} {ratio}")


if __name__ == "__main__":
    main()
