"""Steered generation of whole methods: batching across concepts, content-keyed caching, resumable runs.

Units (see :mod:`axbench_kedro.steering.plans`) are sorted by prompt length and cut into batches that mix concepts
and factors (per-row vectors and strengths). A batch's seed is a hash of the run seed and its units, and each row's
sampler is seeded from the batch seed and the row's position (``lm.generation.row_seed``), so generations are
reproducible. Each finished batch is written to the generation cache at once under a content key (model, layer,
prompt, vector hash, strength, seed, sampling parameters, max_new_tokens); a rerun — after a kill, or unchanged —
generates only what is missing.

Example:
    >>> plans = steering_plans(["DiffMean", "Prompt"], artifacts, max_activations, params, layer=9, tm=tm,
    ...                        concept_ids=[0, 1])
    >>> frame = generate_plans(plans, prompts, tm, cache, params, layer=9, seed=42)

:func:`generate_steering_rows` does both for the ``steering_prompts`` of a run and logs what it did.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.steering.plans import MethodPlan, plan_units, steering_plans

__all__ = [
    "CACHE_VERSION",
    "GENERATION_COLUMNS",
    "GenerationStats",
    "generate_plans",
    "generate_steering_rows",
]

log = logging.getLogger(__name__)

CACHE_VERSION = "steer-gen-v1"
GENERATION_COLUMNS = [
    "dataset_name",
    "concept_id",
    "input_id",
    "factor",
    "method",
    "steered_generation",
    "strength",
    "seed",
    "n_new_tokens",
    "perplexity",
]


@dataclass
class GenerationStats:
    """What :func:`generate_plans` did."""

    rows: int = 0
    units: int = 0
    generated: int = 0
    cached: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


def _unit_payloads(
    units: pd.DataFrame, tm: TargetModel, layer: int, params: SteeringEvalParams
) -> list[dict]:
    g = params.generation
    sampling = {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p}
    return [
        {
            "model": tm.name,
            "layer": int(layer),
            "prompt": u.prompt,
            "vector_sha256": u.vector_sha,
            "strength": float(u.strength),
            "replicate": int(u.replicate),
            "sampling": sampling,
            "max_new_tokens": g.max_new_tokens,
        }
        for u in units.itertuples(index=False)
    ]


def _batches(units: pd.DataFrame, tm: TargetModel, batch_size: int) -> list[list[int]]:
    """Unit indices cut into batches, longest prompts first (deterministic order)."""
    lengths = [
        len(ids) for ids in tm.tokenizer(units["prompt"].tolist(), add_special_tokens=False)["input_ids"]
    ]
    order = sorted(range(len(units)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class _Runtime:
    """The functions and settings one generation pass uses."""

    tm: TargetModel
    params: SteeringEvalParams
    layer: int
    generate_fn: Callable[..., list[Any]]
    sample_fn: Callable[..., list[Any]]
    perplexity_fn: Callable[..., list[float]]
    row_seed: Callable[[int, int], int]


def _generate_batch(rt: _Runtime, plan: MethodPlan, units: pd.DataFrame, batch: list[int], seed: int) -> list:
    """Sample the batch's rows (steered when the method has vectors) with the batch seed."""
    g = rt.params.generation
    prompts = [units.at[u, "prompt"] for u in batch]
    common = {
        "max_new_tokens": g.max_new_tokens,
        "batch_size": len(batch),
        "seed": seed,
        "temperature": g.temperature,
        "top_k": g.top_k,
        "top_p": g.top_p,
        "desc": f"{plan.method} batch",
    }
    if plan.vectors is None:
        return rt.sample_fn(rt.tm, prompts, **common)
    rows = [plan.rows[int(units.at[u, "concept_id"])] for u in batch]
    strengths = torch.tensor([units.at[u, "strength"] for u in batch], dtype=torch.float32)
    return rt.generate_fn(rt.tm, prompts, plan.vectors[rows], strengths, rt.layer, **common)


def generate_plans(
    plans: Sequence[MethodPlan],
    prompts: pd.DataFrame,
    tm: TargetModel,
    cache: SQLiteCache,
    params: SteeringEvalParams,
    *,
    layer: int,
    seed: int,
    generate_fn: Callable[..., list[Any]] | None = None,
    sample_fn: Callable[..., list[Any]] | None = None,
    perplexity_fn: Callable[..., list[float]] | None = None,
    stats: GenerationStats | None = None,
) -> pd.DataFrame:
    """Generate (or read from the cache) every row of every plan; returns ``steering_generations``.

    Args:
        plans: from :func:`steering_plans`.
        prompts: ``steering_prompts`` (any number of factor rows per instruction).
        tm: the target model.
        cache: generation cache; each finished batch is written at once.
        params: steering parameters (sampling, batch size, replicates, perplexity).
        layer: steered block.
        seed: run seed.
        generate_fn / sample_fn / perplexity_fn: replacements of ``lm.steering.steered_generate``,
            ``lm.generation.sample_generate`` and ``lm.scoring.perplexities`` (tests, benchmarks).
        stats: filled with counts and timings when given.
    """
    from axbench_kedro.lm.generation import row_seed, sample_generate
    from axbench_kedro.lm.scoring import perplexities
    from axbench_kedro.lm.steering import steered_generate

    rt = _Runtime(
        tm,
        params,
        layer,
        generate_fn or steered_generate,
        sample_fn or sample_generate,
        perplexity_fn or perplexities,
        row_seed,
    )
    stats = stats if stats is not None else GenerationStats()
    keys = ["dataset_name", "concept_id", "input_id"]
    unique_prompts = prompts.drop_duplicates(keys).sort_values(keys, kind="stable")
    # Perplexity is always measured given the unsteered F-prompt of the original instruction.
    ppl_prompt = {tuple(k): inp for *k, inp in unique_prompts[[*keys, "input"]].itertuples(index=False)}
    planned = [
        (plan, *plan_units(plan, unique_prompts, params.generation.prompt_replicates)) for plan in plans
    ]
    frames = []
    start = time.perf_counter()
    with tqdm(total=sum(len(u) for _, u, _ in planned), desc="steering generation", unit="row") as bar:
        for plan, units, rows in planned:
            payloads = _unit_payloads(units, tm, layer, params)
            prompt_of_unit = rows.drop_duplicates("unit").set_index("unit")[keys]
            results: dict[int, dict[str, Any]] = {}
            for batch in _batches(units, tm, params.generation.batch_size):
                batch_seed = int(content_key({"seed": seed, "units": [payloads[u] for u in batch]})[:15], 16)
                cache_keys = [
                    content_key({"v": CACHE_VERSION, **payloads[u], "seed": batch_seed, "position": p})
                    for p, u in enumerate(batch)
                ]
                stored = cache.get_many(cache_keys)
                if len(stored) < len(batch):  # a batch is written in one transaction: all or nothing
                    gens = _generate_batch(rt, plan, units, batch, batch_seed)
                    stored = {
                        k: {
                            "text": gen.text,
                            "n_new_tokens": int(gen.n_new_tokens),
                            "seed": row_seed(batch_seed, p),
                        }
                        for p, (k, gen) in enumerate(zip(cache_keys, gens, strict=True))
                    }
                    stats.generated += len(batch)
                    stats.new_tokens += sum(int(gen.n_new_tokens) for gen in gens)
                    if not params.compute_perplexity:
                        cache.put_many(stored)
                else:
                    stats.cached += len(batch)
                if params.compute_perplexity and any("perplexity" not in stored[k] for k in cache_keys):
                    ppl = rt.perplexity_fn(
                        tm,
                        [ppl_prompt[tuple(prompt_of_unit.loc[u])] for u in batch],
                        [stored[k]["text"] for k in cache_keys],
                        batch_size=params.perplexity_batch_size,
                    )
                    for k, value in zip(cache_keys, ppl, strict=True):
                        stored[k] = {**stored[k], "perplexity": None if math.isnan(value) else float(value)}
                    cache.put_many({k: stored[k] for k in cache_keys})
                results.update(zip(batch, (stored[k] for k in cache_keys), strict=True))
                bar.update(len(batch))
                bar.set_postfix(
                    rows_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.2f}", method=plan.method
                )
            frames.append(_generation_frame(rows, results))
            stats.units += len(units)
            stats.rows += len(rows)
    stats.seconds = time.perf_counter() - start
    if not frames:
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def generate_steering_rows(
    steering_prompts: pd.DataFrame,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    tm: TargetModel,
    cache: SQLiteCache,
    params: SteeringEvalParams,
    *,
    layer: int,
    seed: int,
) -> pd.DataFrame:
    """``steering_generations`` of every steering method of ``params.methods`` for every prompt row.

    Builds the plans of the concepts in ``steering_prompts`` (:func:`steering_plans`), generates them
    (:func:`generate_plans`) and logs the counts and the time taken.

    Args:
        steering_prompts: ``steering_prompts``.
        method_artifacts: ``{method: artifact}`` from training (values may be lazy loaders).
        max_activations: magnitude bases per concept and method (a missing one is an error, [D 12]).
        tm: the target model.
        cache: generation cache.
        params: steering parameters.
        layer: steered block.
        seed: run seed.
    """
    concept_ids = sorted(int(c) for c in steering_prompts["concept_id"].unique())
    plans = steering_plans(
        params.methods,
        method_artifacts,
        max_activations,
        params,
        layer=layer,
        tm=tm,
        concept_ids=concept_ids,
    )
    stats = GenerationStats()
    out = generate_plans(plans, steering_prompts, tm, cache, params, layer=layer, seed=seed, stats=stats)
    log.info(
        "steering generation: %d rows of %d methods from %d generations (%d new, %d cached), %d new tokens in %.1f s",
        stats.rows,
        len(plans),
        stats.units,
        stats.generated,
        stats.cached,
        stats.new_tokens,
        stats.seconds,
    )
    return out


def _generation_frame(rows: pd.DataFrame, results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """Output rows of one method with their (possibly shared) generation."""
    done = rows.copy()
    got = [results[u] for u in done["unit"]]
    done["steered_generation"] = [r["text"] for r in got]
    done["seed"] = [int(r["seed"]) for r in got]
    done["n_new_tokens"] = [int(r["n_new_tokens"]) for r in got]
    done["perplexity"] = [
        float("nan") if r.get("perplexity") is None else float(r["perplexity"]) for r in got
    ]
    return done[GENERATION_COLUMNS].astype(
        {
            "concept_id": "int64",
            "input_id": "int64",
            "factor": "float64",
            "strength": "float64",
            "seed": "int64",
            "n_new_tokens": "int64",
            "perplexity": "float64",
        }
    )
