"""Steered generation of whole methods: planning, magnitudes, batching across concepts, content-keyed caching.

Every (concept, instruction, factor) row of a method is one *unit* (prompt, vector, strength). Factor-free
methods have no vector and no strength: they generate ``prompt_replicates`` units per instruction from the
steered input, and the factor rows of the grid share them (replicate ``i mod r`` stands for factor ``i``).

Units are sorted by prompt length and cut into batches that mix concepts and factors (per-row vectors and
strengths). A batch's seed is a hash of the run seed and its units, and each row's sampler is seeded from the batch
seed and the row's position (``lm.generation.row_seed``), so generations are reproducible. Each finished batch is
written to the generation cache at once under a content key (model, layer, prompt, vector hash, strength, seed,
sampling parameters, max_new_tokens); a rerun — after a kill, or unchanged — generates only what is missing.

Example:
    >>> plans = steering_plans(["DiffMean", "Prompt"], artifacts, max_activations, params, layer=9, tm=tm)
    >>> frame = generate_plans(plans, prompts, tm, cache, params, layer=9, seed=42)
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.base import Method, MethodArtifact
from axbench_kedro.methods.registry import get_method

__all__ = [
    "CACHE_VERSION",
    "GENERATION_COLUMNS",
    "MethodPlan",
    "GenerationStats",
    "magnitudes_for",
    "steering_plans",
    "plan_units",
    "generate_plans",
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
class MethodPlan:
    """How one method steers.

    Attributes:
        method: registry name.
        factor_free: no strength knob (generates from ``steered_input``, no vector).
        factors: the method's factor grid, ascending.
        vectors: ``[n_concepts, d]`` float32 directions (None when factor-free).
        rows: concept_id → row of ``vectors``.
        magnitudes: concept_id → magnitude base m.
    """

    method: str
    factor_free: bool
    factors: list[float]
    vectors: torch.Tensor | None = None
    rows: dict[int, int] = field(default_factory=dict)
    magnitudes: dict[int, float] = field(default_factory=dict)
    _vector_sha: dict[int, str] = field(default_factory=dict, repr=False)

    def vector_sha(self, concept_id: int) -> str:
        """SHA-256 of the concept's float32 vector bytes (``"none"`` when factor-free)."""
        if self.vectors is None:
            return "none"
        if concept_id not in self._vector_sha:
            vec = self.vectors[self.rows[concept_id]].detach().to(torch.float32).cpu().contiguous()
            self._vector_sha[concept_id] = hashlib.sha256(vec.numpy().tobytes()).hexdigest()
        return self._vector_sha[concept_id]


@dataclass
class GenerationStats:
    """What :func:`generate_plans` did."""

    rows: int = 0
    units: int = 0
    generated: int = 0
    cached: int = 0
    new_tokens: int = 0
    seconds: float = 0.0


def magnitudes_for(
    method: Method, max_activations: pd.DataFrame, concept_ids: Sequence[int]
) -> dict[int, float]:
    """Magnitude base m per concept (protocol §3.0, [D 12]).

    ``unit`` methods use m = 1; the others read ``magnitude_base`` of ``max_activations`` (the ≤ 0 → 50 rule is
    already applied there). A concept without an entry is an error, never a silent 1.0.
    """
    ids = [int(c) for c in concept_ids]
    if method.magnitude_source == "unit":
        return dict.fromkeys(ids, 1.0)
    missing_cols = {"concept_id", "method", "magnitude_base"} - set(max_activations.columns)
    if missing_cols:
        raise AxbenchDataError(f"max_activations: missing column(s) {sorted(missing_cols)}")
    rows = max_activations[max_activations["method"] == method.name]
    table = dict(zip(rows["concept_id"].astype(int), rows["magnitude_base"].astype(float), strict=True))
    missing = [c for c in ids if c not in table or not math.isfinite(table[c])]
    if missing:
        raise AxbenchDataError(
            f"max_activations: no magnitude for method {method.name!r}, concept_id(s) {missing[:10]} "
            "(protocol §9 decision 12: steering needs the latent_eval max activations of every concept)"
        )
    return {c: table[c] for c in ids}


def _resolve_artifact(value: Any) -> MethodArtifact:
    return value() if callable(value) and not isinstance(value, MethodArtifact) else value


def steering_plans(
    method_names: Sequence[str] | None,
    method_artifacts: Mapping[str, Any],
    max_activations: pd.DataFrame,
    params: SteeringEvalParams,
    *,
    layer: int,
    tm: TargetModel,
    concept_ids: Sequence[int],
) -> list[MethodPlan]:
    """One plan per steering method (``method_names``, or every steering method of ``method_artifacts``).

    Raises:
        AxbenchConfigError: unknown method, a method that cannot steer, a layer or width mismatch.
        AxbenchDataError: a missing artifact row or magnitude.
    """
    names = list(method_names) if method_names is not None else list(method_artifacts)
    plans = []
    for name in names:
        method = get_method(name)
        if not method.steers:
            if method_names is not None:
                raise AxbenchConfigError(f"steering_eval.methods: {name!r} has no steering (detection only)")
            continue
        factors = params.factors_for(name)
        if method.factor_free:
            plans.append(
                MethodPlan(name, True, factors, magnitudes=dict.fromkeys(map(int, concept_ids), 1.0))
            )
            continue
        if name not in method_artifacts:
            raise AxbenchDataError(
                f"method_artifacts: no artifact for steering method {name!r} (run training)"
            )
        artifact = _resolve_artifact(method_artifacts[name])
        if not artifact.ok:
            log.warning("steering_eval: %s skipped (%s)", name, artifact.skip_reason or artifact.status)
            continue
        trained_layer = artifact.meta.get("layer")
        if trained_layer is not None and int(trained_layer) != int(layer):
            raise AxbenchConfigError(
                f"run.layer: steering layer {layer} differs from the layer {trained_layer} {name} was trained on"
            )
        vectors = method.steering_vectors(artifact).detach().to(torch.float32).cpu()
        if vectors.ndim != 2 or vectors.shape[1] != tm.d_model:
            raise AxbenchConfigError(
                f"method_artifacts[{name}]: steering vectors of shape {list(vectors.shape)} do not fit the target "
                f"model's width {tm.d_model}"
            )
        index = artifact.rows_of(concept_ids).tolist()
        rows = {int(c): int(i) for c, i in zip(concept_ids, index, strict=True)}
        plans.append(
            MethodPlan(
                name, False, factors, vectors, rows, magnitudes_for(method, max_activations, concept_ids)
            )
        )
    return plans


def plan_units(plan: MethodPlan, prompts: pd.DataFrame, replicates: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The units a method generates and the output rows pointing at them.

    Args:
        plan: the method's plan.
        prompts: one row per (dataset_name, concept_id, input_id) with ``input``, ``steered_input``.
        replicates: samples per instruction of a factor-free method.

    Returns:
        ``(units, rows)``: ``units`` has ``unit, concept_id, prompt, vector_sha, strength``; ``rows`` has the
        output keys, ``strength`` (NaN when factor-free) and ``unit``.
    """
    out_rows, units = [], []
    for rec in prompts.itertuples(index=False):
        cid = int(rec.concept_id)
        base = {"dataset_name": rec.dataset_name, "concept_id": cid, "input_id": int(rec.input_id)}
        if plan.factor_free:
            first = len(units)
            for r in range(replicates):
                units.append(
                    {
                        "concept_id": cid,
                        "prompt": rec.steered_input,
                        "vector_sha": "none",
                        "strength": 0.0,
                        "replicate": r,
                    }
                )
            for i, f in enumerate(plan.factors):
                out_rows.append(
                    {**base, "factor": float(f), "strength": float("nan"), "unit": first + i % replicates}
                )
        else:
            sha, m = plan.vector_sha(cid), plan.magnitudes[cid]
            for f in plan.factors:
                out_rows.append({**base, "factor": float(f), "strength": float(f) * m, "unit": len(units)})
                units.append(
                    {
                        "concept_id": cid,
                        "prompt": rec.input,
                        "vector_sha": sha,
                        "strength": float(f) * m,
                        "replicate": 0,
                    }
                )
    unit_frame = pd.DataFrame(units, columns=["concept_id", "prompt", "vector_sha", "strength", "replicate"])
    unit_frame.insert(0, "unit", np.arange(len(unit_frame)))
    row_frame = pd.DataFrame(
        out_rows, columns=["dataset_name", "concept_id", "input_id", "factor", "strength", "unit"]
    )
    row_frame.insert(4, "method", plan.method)
    return unit_frame, row_frame


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
