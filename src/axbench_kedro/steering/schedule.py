"""Steered generation of whole methods: batching across concepts, content-keyed caching, resumable runs.

Units (see :mod:`axbench_kedro.steering.plans`) are sorted by prompt length and cut into batches that mix concepts
and factors (per-row vectors and strengths). A batch's seed is a hash of the run seed and its units, and each row's
sampler is seeded from the batch seed and the row's position (``lm.generation.row_seed``), so generations are
reproducible. Each finished batch is written to the generation cache at once under a content key (model, layer,
prompt, vector hash, strength, seed, sampling parameters, max_new_tokens); a rerun — after a kill, or unchanged —
generates only what is missing. With a distributed executor (``scaling.engine: dask``) the missing batches — the
same batches, with the same seeds — run on Dask workers and this process writes each one to the cache as it
returns (:mod:`axbench_kedro.scaling.generation`).

With ``compute_perplexity`` every generation gets two perplexities under the unsteered model (protocol §5.9
[D 28]): ``perplexity`` (upstream's: prompt + generation decoded with special tokens skipped, re-tokenized with BOS;
the generation alone for factor-free methods, which steer through their prompt) and ``perplexity_conditional`` (the
generation given the row's unsteered ``input``; null for an empty generation); ``sequence_perplexity: false``
leaves ``perplexity`` NaN and saves its forward pass. The cache stores them under their
own keys (:data:`PPL_SEQUENCE`, :data:`PPL_CONDITIONAL`); an entry written before the split keeps its single value
(the conditional one) as ``perplexity_conditional``, and only the missing value is computed.

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
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.steering.plans import MethodPlan, plan_units, steering_plans

if TYPE_CHECKING:
    from axbench_kedro.scaling.executor import ShardExecutor

__all__ = [
    "CACHE_VERSION",
    "GENERATION_COLUMNS",
    "PPL_CONDITIONAL",
    "PPL_SEQUENCE",
    "GenerationStats",
    "BatchWork",
    "BatchResult",
    "run_batch",
    "generate_plans",
    "generate_steering_rows",
]

log = logging.getLogger(__name__)

CACHE_VERSION = "steer-gen-v1"
#: Cache-entry key of ``perplexity`` (upstream's whole-sequence value, [D 28]).
PPL_SEQUENCE = "perplexity_sequence"
#: Cache-entry key of ``perplexity_conditional``.
PPL_CONDITIONAL = "perplexity_conditional"
_PPL_LEGACY = "perplexity"  # entries written before the split: the conditional value under this key
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
    "perplexity_conditional",
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
    null_conditional_perplexity: int = 0


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


def _batches(
    units: pd.DataFrame, tm: TargetModel, batch_size: int, per_concept: bool = False
) -> list[list[int]]:
    """Unit indices cut into batches, longest prompts first (deterministic order); with ``per_concept`` (adapter
    methods: one adapter per batch) each concept's units are cut on their own, concepts in ascending order."""
    lengths = [
        len(ids) for ids in tm.tokenizer(units["prompt"].tolist(), add_special_tokens=False)["input_ids"]
    ]
    if per_concept:
        out: list[list[int]] = []
        for _, group in units.groupby("concept_id", sort=True):
            order = sorted(group.index.tolist(), key=lambda i: (-lengths[i], i))
            out += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return out
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
    sequence_perplexity_fn: Callable[..., list[float]]
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
    if plan.adapter is not None:  # one concept per batch (see _batches)
        with plan.adapter(int(units.at[batch[0], "concept_id"])):
            return rt.sample_fn(rt.tm, prompts, **common)
    if plan.vectors is None:
        return rt.sample_fn(rt.tm, prompts, **common)
    rows = [plan.row_of(int(units.at[u, "concept_id"]), units.at[u, "prompt"]) for u in batch]
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
    sequence_perplexity_fn: Callable[..., list[float]] | None = None,
    stats: GenerationStats | None = None,
    executor: ShardExecutor | None = None,
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
        generate_fn / sample_fn / perplexity_fn / sequence_perplexity_fn: replacements of
            ``lm.steering.steered_generate``, ``lm.generation.sample_generate``, ``lm.scoring.perplexities``
            (``perplexity_conditional``) and ``lm.scoring.sequence_perplexities`` (``perplexity``) (tests,
            benchmarks).
        stats: filled with counts and timings when given.
        executor: a distributed executor runs the batches the cache lacks on its workers
            (:mod:`axbench_kedro.scaling.generation`; the same batches, seeds and generations); this process
            alone writes the cache, as each batch comes back. Ignored with replacement functions.
    """
    from axbench_kedro.lm.generation import row_seed, sample_generate
    from axbench_kedro.lm.scoring import perplexities, sequence_perplexities
    from axbench_kedro.lm.steering import steered_generate

    rt = _Runtime(
        tm,
        params,
        layer,
        generate_fn or steered_generate,
        sample_fn or sample_generate,
        perplexity_fn or perplexities,
        sequence_perplexity_fn or sequence_perplexities,
        row_seed,
    )
    stats = stats if stats is not None else GenerationStats()
    keys = ["dataset_name", "concept_id", "input_id"]
    unique_prompts = prompts.drop_duplicates(keys).sort_values(keys, kind="stable")
    # perplexity_conditional is always measured given the unsteered F-prompt of the original instruction.
    ppl_prompt = {tuple(k): inp for *k, inp in unique_prompts[[*keys, "input"]].itertuples(index=False)}
    planned = [
        (plan, *plan_units(plan, unique_prompts, params.generation.prompt_replicates)) for plan in plans
    ]
    results: list[dict[int, dict[str, Any]]] = [{} for _ in planned]
    work: list[BatchWork] = []
    for index, (plan, units, rows) in enumerate(planned):
        payloads = _unit_payloads(units, tm, layer, params)
        prompt_of_unit = rows.drop_duplicates("unit").set_index("unit")[keys]
        for batch in _batches(units, tm, params.generation.batch_size, plan.adapter is not None):
            batch_seed, cache_keys = _batch_keys(payloads, batch, seed)
            stored = {k: _migrated(v) for k, v in cache.get_many(cache_keys).items()}
            complete = len(stored) == len(batch)  # a batch is written in one transaction: all or nothing
            stats.cached += len(batch) if complete else 0
            if complete and not (params.compute_perplexity and _lacks_perplexity(params, stored.values())):
                results[index].update(zip(batch, (stored[k] for k in cache_keys), strict=True))
                continue
            work.append(
                BatchWork(
                    plan_index=index,
                    batch=batch,
                    seed=batch_seed,
                    keys=cache_keys,
                    stored=stored if complete else None,
                    inputs=[ppl_prompt[tuple(prompt_of_unit.loc[u])] for u in batch],
                    prompts=[units.at[u, "prompt"] for u in batch],
                )
            )
    start = time.perf_counter()
    with tqdm(total=sum(len(u) for _, u, _ in planned), desc="steering generation", unit="row") as bar:
        bar.update(sum(len(r) for r in results))

        def done(i: int, out: BatchResult) -> None:
            w = work[i]
            if out.write:
                cache.put_many(out.entries)  # only this process writes the cache, batch by batch
            results[w.plan_index].update(zip(w.batch, (out.entries[k] for k in w.keys), strict=True))
            stats.generated += out.generated
            stats.new_tokens += out.new_tokens
            bar.update(len(w.batch))
            bar.set_postfix(
                rows_s=f"{bar.n / max(time.perf_counter() - start, 1e-9):.2f}",
                method=planned[w.plan_index][0].method,
            )

        custom = any(f is not None for f in (generate_fn, sample_fn, perplexity_fn, sequence_perplexity_fn))
        if executor is not None and executor.distributed and work and not custom:
            from axbench_kedro.scaling.generation import generate_batches_sharded

            generate_batches_sharded(executor, work, planned, tm, params, layer, done)
        else:
            for i, w in enumerate(work):
                plan, units, _ = planned[w.plan_index]
                done(i, run_batch(rt, plan, units, w))
    frames = []
    for index, (plan, units, rows) in enumerate(planned):
        frame = _generation_frame(rows, results[index])
        if params.compute_perplexity:
            _log_null_perplexities(frame, plan.method, stats)
        frames.append(frame)
        stats.units += len(units)
        stats.rows += len(rows)
    stats.seconds = time.perf_counter() - start
    if not frames:
        return pd.DataFrame(columns=GENERATION_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _batch_keys(payloads: list[dict], batch: list[int], seed: int) -> tuple[int, list[str]]:
    """The batch seed (a hash of the run seed and the batch's units) and the cache key of each row."""
    batch_seed = int(content_key({"seed": seed, "units": [payloads[u] for u in batch]})[:15], 16)
    cache_keys = [
        content_key({"v": CACHE_VERSION, **payloads[u], "seed": batch_seed, "position": p})
        for p, u in enumerate(batch)
    ]
    return batch_seed, cache_keys


def _lacks_perplexity(params: SteeringEvalParams, entries: Any) -> bool:
    """Whether some cache entry lacks a perplexity this run computes."""
    return any(
        PPL_CONDITIONAL not in e or (params.sequence_perplexity and PPL_SEQUENCE not in e) for e in entries
    )


@dataclass
class BatchWork:
    """A batch the cache cannot serve whole: its rows to generate, or (``stored``) perplexities to add.

    Attributes:
        plan_index: the batch's plan (position in the run's plans).
        batch: unit indices of that plan, in batch order.
        seed: the batch seed.
        keys: each row's cache key.
        stored: the cached entries when every row's text is cached (``None``: generate the batch).
        inputs: each row's unsteered ``input`` (the context of ``perplexity_conditional``).
        prompts: the prompt each row is generated from.
    """

    plan_index: int
    batch: list[int]
    seed: int
    keys: list[str]
    stored: dict[str, dict[str, Any]] | None
    inputs: list[str]
    prompts: list[str]


@dataclass
class BatchResult:
    """What :func:`run_batch` made: the batch's cache entries by key, whether to write them, and counts."""

    entries: dict[str, dict[str, Any]]
    write: bool
    generated: int
    new_tokens: int


def run_batch(rt: _Runtime, plan: MethodPlan, units: pd.DataFrame, work: BatchWork) -> BatchResult:
    """Generate one batch (unless its texts are cached) and add the perplexities its entries lack."""
    stored, generated, new_tokens = work.stored, 0, 0
    if stored is None:
        gens = _generate_batch(rt, plan, units, work.batch, work.seed)
        stored = {
            k: {"text": gen.text, "n_new_tokens": int(gen.n_new_tokens), "seed": rt.row_seed(work.seed, p)}
            for p, (k, gen) in enumerate(zip(work.keys, gens, strict=True))
        }
        generated, new_tokens = len(work.batch), sum(int(gen.n_new_tokens) for gen in gens)
    stored = dict(stored)
    added = rt.params.compute_perplexity and _add_perplexities(
        rt, plan, stored, work.keys, work.inputs, work.prompts
    )
    return BatchResult(stored, bool(generated or added), generated, new_tokens)


def _migrated(entry: dict[str, Any]) -> dict[str, Any]:
    """A cache entry with its perplexities under the current keys (a pre-split entry's value is conditional)."""
    if _PPL_LEGACY not in entry:
        return entry
    out = {k: v for k, v in entry.items() if k != _PPL_LEGACY}
    out.setdefault(PPL_CONDITIONAL, entry[_PPL_LEGACY])
    return out


def _add_perplexities(
    rt: _Runtime,
    plan: MethodPlan,
    stored: dict[str, dict[str, Any]],
    cache_keys: list[str],
    inputs: list[str],
    unit_prompts: list[str],
) -> bool:
    """Compute the perplexities a batch's entries lack (in place); ``True`` when something was added.

    Args:
        rt: runtime (model, settings, scoring functions).
        plan: the batch's method (factor-free methods score their generation alone for ``perplexity``).
        stored: cache entries by key (``text`` at least).
        cache_keys: the batch's keys, in batch order.
        inputs: each row's unsteered ``input`` (the context of ``perplexity_conditional``).
        unit_prompts: the prompt each row was generated from (the prefix of ``perplexity``).
    """
    texts = [stored[k]["text"] for k in cache_keys]
    batch_size = rt.params.perplexity_batch_size
    added = False
    if any(PPL_CONDITIONAL not in stored[k] for k in cache_keys):
        values = rt.perplexity_fn(rt.tm, inputs, texts, batch_size=batch_size)
        for k, value in zip(cache_keys, values, strict=True):
            stored[k] = {**stored[k], PPL_CONDITIONAL: _finite_or_none(value)}
        added = True
    if rt.params.sequence_perplexity and any(PPL_SEQUENCE not in stored[k] for k in cache_keys):
        from axbench_kedro.lm.scoring import decoded_sequence

        tok = rt.tm.tokenizer
        # Factor-free methods steer through their prompt: upstream scores their generation alone [D 28]. Adapter
        # methods generate from the plain prompt, which is scored with the generation as for vector methods.
        prefixes = [""] * len(texts) if plan.factor_free and plan.adapter is None else unit_prompts
        sequences = [decoded_sequence(tok, p, t) for p, t in zip(prefixes, texts, strict=True)]
        values = rt.sequence_perplexity_fn(rt.tm, sequences, batch_size=batch_size)
        for k, value in zip(cache_keys, values, strict=True):
            stored[k] = {**stored[k], PPL_SEQUENCE: _finite_or_none(value)}
        added = True
    return added


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _log_null_perplexities(frame: pd.DataFrame, method: str, stats: GenerationStats) -> None:
    """Count (and log) the rows of one method whose ``perplexity_conditional`` is null (empty generations)."""
    n_null = int(frame["perplexity_conditional"].isna().sum())
    stats.null_conditional_perplexity += n_null
    if n_null:
        log.warning(
            "steering generation: %s: %d of %d rows have an empty generation (perplexity_conditional null)",
            method,
            n_null,
            len(frame),
        )


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
    plan_builder: Callable[..., list[MethodPlan]] = steering_plans,
    label: str = "steering",
    executor: ShardExecutor | None = None,
) -> pd.DataFrame:
    """``steering_generations`` of every steering method of ``params.methods`` for every prompt row.

    Builds the plans of the concepts in ``steering_prompts`` (``plan_builder``, :func:`steering_plans` by default;
    suppression passes its own), generates them (:func:`generate_plans`) and logs the counts and the time taken.

    Args:
        steering_prompts: ``steering_prompts``.
        method_artifacts: ``{method: artifact}`` from training (values may be lazy loaders).
        max_activations: magnitude bases per concept and method (a missing one is an error, [D 12]).
        tm: the target model.
        cache: generation cache.
        params: steering parameters.
        layer: steered block.
        seed: run seed.
        plan_builder: builds the plans (signature of :func:`steering_plans`).
        executor: runs the batches the cache lacks (Dask workers when distributed; in-process when ``None``).
        label: names the stage in the log line.
    """
    concept_ids = sorted(int(c) for c in steering_prompts["concept_id"].unique())
    plans = plan_builder(
        params.methods,
        method_artifacts,
        max_activations,
        params,
        layer=layer,
        tm=tm,
        concept_ids=concept_ids,
    )
    stats = GenerationStats()
    out = generate_plans(
        plans, steering_prompts, tm, cache, params, layer=layer, seed=seed, stats=stats, executor=executor
    )
    log.info(
        "%s generation: %d rows of %d methods from %d generations (%d new, %d cached), %d new tokens in "
        "%.1f s; %d rows without perplexity_conditional (empty generation)",
        label,
        stats.rows,
        len(plans),
        stats.units,
        stats.generated,
        stats.cached,
        stats.new_tokens,
        stats.seconds,
        stats.null_conditional_perplexity,
    )
    return out


def _generation_frame(rows: pd.DataFrame, results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """Output rows of one method with their (possibly shared) generation."""
    done = rows.copy()
    got = [results[u] for u in done["unit"]]
    done["steered_generation"] = [r["text"] for r in got]
    done["seed"] = [int(r["seed"]) for r in got]
    done["n_new_tokens"] = [int(r["n_new_tokens"]) for r in got]
    done["perplexity"] = [_nan_if_none(r.get(PPL_SEQUENCE)) for r in got]
    done["perplexity_conditional"] = [_nan_if_none(r.get(PPL_CONDITIONAL)) for r in got]
    return done[GENERATION_COLUMNS].astype(
        {
            "concept_id": "int64",
            "input_id": "int64",
            "factor": "float64",
            "strength": "float64",
            "seed": "int64",
            "n_new_tokens": "int64",
            "perplexity": "float64",
            "perplexity_conditional": "float64",
        }
    )


def _nan_if_none(value: Any) -> float:
    return float("nan") if value is None else float(value)
