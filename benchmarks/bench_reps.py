"""RePS training wall time ÷ ReFT-r1's on the same concepts (not a test; prints the ratio).

Data: the concepts of ``bench_training_latent.py`` (4 concepts × 6 positives, the embedded environment's size); the
preference pairs pair each positive (winning) with a neutral text of the concept's genre standing in for the model's
own answer (losing), so no generation runs here. Both methods train through the trainer with their protocol
hyperparameters (ReFT-r1: 3 epochs over positives + pool negatives; RePS: 18 epochs, each step 4 sequences per
pair). The reference log-likelihoods of RePS are computed once per pair (printed: the number of no-gradient tail
passes) and the pairs' layer-L states once per concept; the rest is the tail (blocks after L + LM head) forward and
backward. Also printed: the ratio per tail sequence (RePS runs 18 × 4 = 72 sequence passes per pair, ReFT-r1
3 per row over twice as many rows), which shows what is left beyond the larger amount of work.

Usage:
    python benchmarks/bench_reps.py [--model embedded|tiny] [--layer 9] [--repeats 1] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.types import ModelSpec, TargetModel
from axbench_kedro.methods.base import ConceptData, PreferenceData
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, build_preferences, train_methods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_latent import CONCEPTS, NEUTRAL, _variant, make_data  # noqa: E402


def preference_frame(train: pd.DataFrame) -> pd.DataFrame:
    """``preference_data`` of ``train``'s positives: losing = a neutral text of the concept's genre."""
    pos = train[train["category"] == "positive"].reset_index(drop=True)
    genres = {cid: genre for cid, (_, genre, _) in enumerate(CONCEPTS)}
    losing = [_variant(NEUTRAL[genres[int(c)]], k) for k, c in enumerate(pos["concept_id"])]
    return pd.DataFrame(
        {
            "input": pos["input"],
            "winning_output": pos["output"],
            "losing_output": losing,
            "output_concept": pos["output_concept"],
            "concept_genre": pos["concept_genre"],
            "category": "positive",
            "dataset_category": "instruction",
            "concept_id": pos["concept_id"].astype("int64"),
        }
    )


def bench_setup(
    model: str, layer: int, dtype: str
) -> tuple[TargetModel, int, list[ConceptData], dict[int, PreferenceData], TrainOptions]:
    """The model (embedded, or a tiny random one at a layer it has), the demo-sized concepts and their preference
    pairs, and the training options of the RePS-family benchmarks; prints the model line."""
    if model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fixtures.tiny_models import make_tiny_target_model

        tm = make_tiny_target_model("gemma3", n_layers=4, hidden=64, seed=0)
        layer = min(layer, 1)
    else:
        tm = load_target_model(ModelSpec())
    print(
        f"model {tm.name} ({tm.dtype}, {tm.device}), layer {layer}, torch threads {torch.get_num_threads()}"
    )
    train, meta, _ = make_data()
    concepts = build_concepts(train, meta)
    prefs = build_preferences(preference_frame(train), concepts)
    opts = TrainOptions(
        setting="bench", layer=layer, seed=42, concept_group_size=4, lm_objective_dtype=getattr(torch, dtype)
    )
    return tm, layer, concepts, prefs, opts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["embedded", "tiny"], default="embedded")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="LM tail dtype")
    args = parser.parse_args()

    tm, layer, concepts, prefs, opts = bench_setup(args.model, args.layer, args.dtype)

    reference_passes = []
    original = LMTail.token_losses

    def counting(self, hidden, batch):  # noqa: ANN001, ANN202
        if not torch.is_grad_enabled():
            reference_passes.append(hidden.shape[0])
        return original(self, hidden, batch)

    LMTail.token_losses = counting  # type: ignore[method-assign]
    walls: dict[str, float] = {}
    for name in ("ReFT-r1", "RePS"):
        best = float("inf")
        for _ in range(args.repeats):
            reference_passes.clear()
            start = time.perf_counter()
            train_methods(tm, concepts, [(get_method(name), None)], opts, preferences=prefs)
            best = min(best, time.perf_counter() - start)
        walls[name] = best
        print(f"{name:8s} {best:8.2f} s (no-gradient tail passes: {len(reference_passes)})")
    LMTail.token_losses = original  # type: ignore[method-assign]

    n_pairs = sum(len(p) for p in prefs.values())
    n_rows = sum(len(c.inputs) for c in concepts)
    reps_seq = n_pairs * 4 * get_method("RePS").params().epochs
    reft_seq = n_rows * get_method("ReFT-r1").params().epochs
    ratio = walls["RePS"] / walls["ReFT-r1"]
    print(f"RePS / ReFT-r1 training wall: {ratio:.2f}")
    print(
        f"per tail sequence: {ratio * reft_seq / reps_seq:.2f} "
        f"(RePS {reps_seq} sequence passes, ReFT-r1 {reft_seq})"
    )


if __name__ == "__main__":
    main()
