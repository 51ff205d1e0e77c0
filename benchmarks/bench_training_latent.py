"""Speed of the training and latent_eval work on the embedded gemma-3-270m (not a test; prints ratios).

Data of the embedded default environment's size, written for this benchmark: 4 concepts × 6 positives, 6 pool
negatives per genre (3 genres), ~32-token responses; for detection 6 positives, 6 negatives and 2 hard negatives per
concept.

1. No-gradient training (DiffMean, PCA, LAT) ÷ one truncated forward pass over the same rows. Target ≤ 1.3.
2. Latent scoring of every rank-1 method + BoW (one pass) ÷ scoring DiffMean alone. Target ≤ 1.2.
3. Wall time of all training (incl. Probe, SSV, ReFT-r1 — the LM tail in float32 and in bfloat16) and of scoring.

Usage:
    python benchmarks/bench_training_latent.py [--layer 9] [--repeats 2] [--skip-gradient]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import pandas as pd
import torch

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.latent_eval import LatentEvalParams
from axbench_kedro.lm.chat import format_binary
from axbench_kedro.lm.loading import load_target_model
from axbench_kedro.lm.types import ModelSpec
from axbench_kedro.methods.activations import compute_row_activations
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods
from axbench_kedro.pipelines.latent_eval.nodes import sample_imbalance_negatives, score_model_methods

CONCEPTS = [
    (
        "references to renting cars and rental services",
        "text",
        "Renting a car for the weekend was easy: the rental desk at the airport had a compact model ready, and the agent "
        "explained the insurance, the mileage limit and the fuel policy before handing over the keys.",
    ),
    (
        "descriptions of ocean waves and the sea",
        "text",
        "The waves rolled in from the open sea, crashing on the rocks and pulling the foam back across the sand while "
        "gulls circled above the grey water and the tide crept higher along the shore.",
    ),
    (
        "Python loops over lists",
        "code",
        "for item in items:\n    if item > 0:\n        total += item\nprint(total)  # the loop walks the list once and "
        "adds every positive number to the running total",
    ),
    (
        "fractions and dividing quantities",
        "math",
        "Divide 3/4 by 1/2: multiply 3/4 by the reciprocal 2/1 to get 6/4, which simplifies to 3/2, so one and a half "
        "halves fit into three quarters of the whole quantity.",
    ),
]
NEUTRAL = {
    "text": "The museum opens at nine in the morning, and visitors can buy tickets at the front desk or online before "
    "they walk through the galleries of old paintings and sculptures.",
    "code": "def greet(name):\n    message = 'Hello, ' + name\n    return message\n\nprint(greet('world'))  # prints a "
    "short greeting for the given name",
    "math": "A rectangle with sides 4 and 7 has area 28 and perimeter 22, because the area multiplies the sides and "
    "the perimeter adds all four of them together.",
}
INSTRUCTIONS = ["Tell me something interesting.", "Write a short paragraph.", "Explain this to a beginner.",
                "Give me an example.", "Describe it in a few sentences.", "What should I know about this?"]  # fmt: skip


def _variant(text: str, k: int) -> str:
    words = text.split(" ")
    return " ".join(words[k % 5 :] + words[: k % 5])


def make_data(n_pos: int = 6, n_pool: int = 6) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``train_data``, ``concepts_meta`` and ``latent_eval_data`` with the protocol's columns."""
    train, latent = [], []
    for cid, (concept, genre, text) in enumerate(CONCEPTS):
        for k in range(n_pos):
            train.append((INSTRUCTIONS[k % 6], _variant(text, k), concept, genre, "positive", cid))
            latent.append((INSTRUCTIONS[(k + 1) % 6], _variant(text, k + 2), concept, genre, "positive", cid))
            latent.append(
                (INSTRUCTIONS[(k + 2) % 6], _variant(NEUTRAL["text"], k), concept, "text", "negative", cid)
            )
        for k in range(2):
            latent.append(
                (INSTRUCTIONS[k], _variant(NEUTRAL[genre], k + 1), "word//other", genre, "hard negative", cid)
            )
    for genre, text in NEUTRAL.items():
        for k in range(n_pool):
            train.append((INSTRUCTIONS[k % 6], _variant(text, k), "EEEEE", genre, "negative", -1))
    cols = ["input", "output", "output_concept", "concept_genre", "category", "concept_id"]
    train_df = pd.DataFrame(train, columns=cols).assign(dataset_category="instruction")
    latent_df = pd.DataFrame(latent, columns=cols).assign(
        dataset_category="instruction", sae_link="null", sae_id=-1
    )
    meta = pd.DataFrame(
        {
            "concept_id": range(len(CONCEPTS)),
            "concept": [c[0] for c in CONCEPTS],
            "ref": "null",
            "sae_id": -1,
            "concept_genres": [[c[1]] for c in CONCEPTS],
        }  # fmt: skip
    )
    return train_df, meta, latent_df


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_nograd(tm, layer: int, repeats: int, batch_size: int) -> dict[str, float]:
    """[1] No-gradient training (DiffMean, PCA, LAT) ÷ one truncated forward over the same unique rows.

    Returns:
        ``forward_s``, ``training_s``, ``ratio`` and ``rows``.
    """
    train_df, meta, _ = make_data()
    concepts = build_concepts(train_df, meta)
    bs = batch_size
    opts = TrainOptions(
        setting="bench", layer=layer, seed=42, activation_batch_size=bs, lm_cache_batch_size=bs
    )
    rows = [
        format_binary(tm.tokenizer, i, o) for i, o in zip(train_df["input"], train_df["output"], strict=True)
    ]
    compute_row_activations(tm, rows[:bs], layer, bs)  # warm-up
    t_fwd, _ = best_of(repeats, lambda: compute_row_activations(tm, rows, layer, bs))
    nograd = [(get_method(n), None) for n in ("DiffMean", "PCA", "LAT")]
    t_nograd, _ = best_of(repeats, lambda: train_methods(tm, concepts, nograd, opts))
    print(f"[1] one truncated forward over {len(rows)} rows: {t_fwd:.2f} s; DiffMean+PCA+LAT training: "
          f"{t_nograd:.2f} s → ratio {t_nograd / t_fwd:.2f} (target ≤ 1.3)")  # fmt: skip
    return {"forward_s": t_fwd, "training_s": t_nograd, "ratio": t_nograd / t_fwd, "rows": len(rows)}


def bench_all_training(tm, layer: int, batch_size: int) -> dict:
    """[3] Wall time of all training (incl. Probe, SSV, ReFT-r1), the LM tail in bfloat16 and in the model's dtype.

    Returns:
        the artifacts of the last run.
    """
    train_df, meta, _ = make_data()
    concepts = build_concepts(train_df, meta)
    bs = batch_size
    names = ["DiffMean", "PCA", "LAT", "Probe", "ReFT-r1", "SSV", "BoW", "Prompt"]
    arts = None
    for dtype in (torch.bfloat16, None):
        o = TrainOptions(
            setting="bench", layer=layer, seed=42, activation_batch_size=bs, lm_cache_batch_size=bs,
            lm_objective_dtype=dtype,
        )  # fmt: skip
        start = time.perf_counter()
        arts, summary = train_methods(tm, concepts, [(get_method(n), None) for n in names], o)
        wall = time.perf_counter() - start
        per = ", ".join(f"{r.method} {r.seconds:.1f}" for r in summary.itertuples() if r.seconds >= 0.05)
        print(f"[3] all training, LM tail {dtype or tm.dtype}: {wall:.1f} s ({per})")
    return arts


def bench_scoring(
    tm, layer: int, repeats: int, batch_size: int, arts: dict | None = None
) -> dict[str, float]:
    """[2] One-pass latent scoring of every detection method ÷ scoring DiffMean alone.

    ``arts`` = trained artifacts to score (default: DiffMean, PCA, LAT, Probe, BoW trained here).

    Returns:
        ``one_s``, ``all_s``, ``ratio`` and ``methods`` (methods scored).
    """
    train_df, meta, latent_df = make_data()
    bs = batch_size
    if arts is None:
        concepts = build_concepts(train_df, meta)
        opts = TrainOptions(
            setting="bench", layer=layer, seed=42, activation_batch_size=bs, lm_cache_batch_size=bs
        )
        names = ["DiffMean", "PCA", "LAT", "Probe", "BoW"]
        arts, _ = train_methods(tm, concepts, [(get_method(n), None) for n in names], opts)
    run = RunSettings(setting="bench", layer=layer, seed=42)
    params = LatentEvalParams(use_cache=False, exclude_methods=["Prompt"], batch_size=bs)
    pool = sample_imbalance_negatives(latent_df, run, params)
    one = {"DiffMean": arts["DiffMean"]}
    score_model_methods(latent_df, pool, one, tm, None, run, params)  # warm-up
    t_one = t_all = float("inf")
    for _ in range(repeats):  # interleaved, best of each: the machine's load drifts
        t_one = min(
            t_one, best_of(1, lambda: score_model_methods(latent_df, pool, one, tm, None, run, params))[0]
        )
        t, (scores, _) = best_of(1, lambda: score_model_methods(latent_df, pool, arts, tm, None, run, params))
        t_all = min(t_all, t)
    n_methods = scores["method"].nunique()
    print(f"[2] latent scoring of {len(latent_df)} rows (+{len(pool)} pool rows × every concept): DiffMean alone "
          f"{t_one:.2f} s; all {n_methods} methods {t_all:.2f} s → ratio {t_all / t_one:.2f} (target ≤ 1.2)")  # fmt: skip
    return {"one_s": t_one, "all_s": t_all, "ratio": t_all / t_one, "methods": n_methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass (base env: 16)")
    parser.add_argument("--skip-gradient", action="store_true", help="skip the Probe/SSV/ReFT-r1 timing")
    args = parser.parse_args()

    tm = load_target_model(ModelSpec())
    print(
        f"model {tm.name} ({tm.dtype}, {tm.device}), layer {args.layer}, torch threads {torch.get_num_threads()}"
    )
    bench_nograd(tm, args.layer, args.repeats, args.batch_size)
    arts = None if args.skip_gradient else bench_all_training(tm, args.layer, args.batch_size)
    bench_scoring(tm, args.layer, args.repeats, args.batch_size, arts)


if __name__ == "__main__":
    main()
