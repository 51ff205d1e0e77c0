"""Steering plans: what each method steers with, and the generation units its rows need.

A plan holds a method's factor grid, its steering vectors (one row per concept) and the magnitude base m of every
concept. Every (concept, instruction, factor) row of a method is one *unit* (prompt, vector, strength). Factor-free
methods have no vector and no strength: they generate ``prompt_replicates`` units per instruction from the steered
input, and the factor rows of the grid share them (replicate ``i mod r`` stands for factor ``i``). Factor-free
adapter methods (LoRA, LoReFT: :class:`~axbench_kedro.methods.adapters.AdapterMethod`) generate the same way but from
the plain ``input``, inside their concept's ``adapter`` (the plan's :attr:`MethodPlan.adapter`).
A per-prompt method (HyperSteer: v(c, x), :attr:`~axbench_kedro.methods.base.Method.per_prompt_vectors`) gets its
vectors when the units are known: :func:`plan_units` computes every (concept, prompt) pair's vector in one batched
pass, each unit steers with its own row (:meth:`MethodPlan.row_of`) and carries its own ``vector_sha`` (so cached
generations are keyed by the per-prompt vector); its plan covers only the concepts its artifact evaluates.

Example:
    >>> plans = steering_plans(["DiffMean", "Prompt"], artifacts, max_activations, params, layer=9, tm=tm,
    ...                        concept_ids=[0, 1])
    >>> units, rows = plan_units(plans[0], prompts, replicates=1)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.adapters import AdapterMethod
from axbench_kedro.methods.base import Method, MethodArtifact
from axbench_kedro.methods.registry import get_method

__all__ = [
    "MethodPlan",
    "magnitudes_for",
    "resolve_artifact",
    "steering_plans",
    "plan_units",
    "factor_free_methods",
]

log = logging.getLogger(__name__)


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
        strength_fn: ``(concept_id, factor) → strength``; ``None`` = m·f (suppression sets its own rule).
        concept_factors: concept_id → the factors of that concept, replacing ``factors`` for it (e.g. the attacks
            steer each concept at its own selected factor); ``None`` = every concept uses ``factors``.
        adapter: factor-free adapter methods only: concept_id → a context manager inside which the target model
            carries that concept's adapter (units then use the plain ``input``, batches hold one concept each).
        adapter_shas: concept_id → hash of that concept's adapter (its units' ``vector_sha``).
        adapter_artifact: the artifact ``adapter`` applies (a Dask worker rebuilds ``adapter`` from it).
        covered: the concepts the method steers when it covers only some (:meth:`Method.steering_subset`: a concept
            limit, SAE (filtered)'s kept concepts, HyperSteer's held-out ones); ``None`` = all.
        prompt_rows: per-prompt methods (v(c, x), HyperSteer): (concept_id, prompt) → row of ``vectors``, filled by
            :meth:`prepare_prompt_vectors` (``rows`` is then unused).
        prompt_vector_fn: per-prompt methods: ``(concept_ids, prompts) → [n, d]`` vectors in one batched pass
            (not an init field: a copy made with ``dataclasses.replace`` keeps the vectors, not the model).
    """

    method: str
    factor_free: bool
    factors: list[float]
    vectors: torch.Tensor | None = None
    rows: dict[int, int] = field(default_factory=dict)
    magnitudes: dict[int, float] = field(default_factory=dict)
    strength_fn: Callable[[int, float], float] | None = None
    concept_factors: dict[int, list[float]] | None = None
    adapter: Callable[[int], AbstractContextManager[None]] | None = None
    adapter_shas: dict[int, str] = field(default_factory=dict)
    adapter_artifact: MethodArtifact | None = None
    covered: frozenset[int] | None = None
    prompt_rows: dict[tuple[int, str], int] = field(default_factory=dict)
    prompt_vector_fn: Callable[[list[int], list[str]], torch.Tensor] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _vector_sha: dict[Any, str] = field(default_factory=dict, repr=False)

    def factors_of(self, concept_id: int) -> list[float]:
        """The factors of one concept: its ``concept_factors`` entry when there is one, else ``factors``."""
        if self.concept_factors is not None and int(concept_id) in self.concept_factors:
            return list(self.concept_factors[int(concept_id)])
        return list(self.factors)

    def strength(self, concept_id: int, factor: float) -> float:
        """The strength of a (concept, factor) row: ``strength_fn`` when set, else m·f."""
        if self.strength_fn is not None:
            return float(self.strength_fn(concept_id, factor))
        return float(factor) * self.magnitudes[concept_id]

    def prepare_prompt_vectors(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Per-prompt methods: compute v(c, x) of the (concept_id, prompt) pairs not computed yet, in one pass."""
        new = [p for p in dict.fromkeys((int(c), str(x)) for c, x in pairs) if p not in self.prompt_rows]
        if not new or self.prompt_vector_fn is None:
            return
        vecs = (
            self.prompt_vector_fn([c for c, _ in new], [x for _, x in new]).detach().to(torch.float32).cpu()
        )
        if vecs.shape[0] != len(new) or (
            self.vectors is not None and vecs.shape[1:] != self.vectors.shape[1:]
        ):
            raise AxbenchConfigError(
                f"{self.method}: per-prompt vectors of shape {list(vecs.shape)} for {len(new)} pairs"
            )
        first = 0 if self.vectors is None else len(self.vectors)
        self.vectors = vecs if self.vectors is None else torch.cat([self.vectors, vecs])
        self.prompt_rows.update({p: first + i for i, p in enumerate(new)})

    def row_of(self, concept_id: int, prompt: str) -> int:
        """The row of ``vectors`` a unit steers with (per (concept, prompt) for per-prompt methods)."""
        if self.prompt_rows:
            return self.prompt_rows[(int(concept_id), str(prompt))]
        return self.rows[int(concept_id)]

    def vector_sha(self, concept_id: int, prompt: str | None = None) -> str:
        """SHA-256 of the unit's float32 vector bytes (per (concept, prompt) for a per-prompt method; its adapter's
        hash for an adapter method, ``"none"`` for another factor-free method)."""
        if self.adapter is not None:
            return self.adapter_shas[int(concept_id)]
        if self.vectors is None:
            return "none"
        key: Any = (int(concept_id), str(prompt)) if self.prompt_rows else int(concept_id)
        if key not in self._vector_sha:
            row = self.prompt_rows[key] if self.prompt_rows else self.rows[key]
            vec = self.vectors[row].detach().to(torch.float32).cpu().contiguous()
            self._vector_sha[key] = hashlib.sha256(vec.numpy().tobytes()).hexdigest()
        return self._vector_sha[key]


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


def resolve_artifact(value: Any) -> MethodArtifact:
    """The artifact itself, or what a lazy loader (a zero-argument callable) returns."""
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
        if isinstance(method, AdapterMethod):
            plan = _adapter_plan(method, name, factors, method_artifacts, tm, concept_ids)
            if plan is not None:
                plans.append(plan)
            continue
        if method.factor_free:
            plans.append(
                MethodPlan(name, True, factors, magnitudes=dict.fromkeys(map(int, concept_ids), 1.0))
            )
            continue
        if name not in method_artifacts:
            raise AxbenchDataError(
                f"method_artifacts: no artifact for steering method {name!r} (run training)"
            )
        artifact = resolve_artifact(method_artifacts[name])
        if not artifact.ok:
            log.warning("steering_eval: %s skipped (%s)", name, artifact.skip_reason or artifact.status)
            continue
        trained_layer = artifact.meta.get("layer")
        if trained_layer is not None and int(trained_layer) != int(layer):
            raise AxbenchConfigError(
                f"run.layer: steering layer {layer} differs from the layer {trained_layer} {name} was trained on"
            )
        if method.per_prompt_vectors:
            plans.append(
                _prompt_plan(method, name, factors, artifact, max_activations, tm, layer, concept_ids)
            )
            continue
        vectors = method.steering_vectors(artifact).detach().to(torch.float32).cpu()
        if vectors.ndim != 2 or vectors.shape[1] != tm.d_model:
            raise AxbenchConfigError(
                f"method_artifacts[{name}]: steering vectors of shape {list(vectors.shape)} do not fit the target "
                f"model's width {tm.d_model}"
            )
        ids, covered = _steered_concepts(method, artifact, concept_ids)
        index = artifact.rows_of(ids).tolist()
        rows = {c: int(i) for c, i in zip(ids, index, strict=True)}
        plans.append(
            MethodPlan(
                name,
                False,
                factors,
                vectors,
                rows,
                magnitudes_for(method, max_activations, ids),
                covered=covered,
            )
        )
    return plans


def _steered_concepts(
    method: Method, artifact: MethodArtifact, concept_ids: Sequence[int]
) -> tuple[list[int], frozenset[int] | None]:
    """The run's concepts the method steers (its :meth:`~Method.steering_subset`, logged when it leaves some out)
    and the plan's ``covered`` set (``None`` = all)."""
    subset = method.steering_subset(artifact)
    ids = [int(c) for c in concept_ids if subset is None or int(c) in subset]
    if len(ids) < len(concept_ids):
        log.info("steering_eval: %s steers %d of the %d concepts", method.name, len(ids), len(concept_ids))
    return ids, None if subset is None else frozenset(ids)


def _prompt_plan(
    method: Method,
    name: str,
    factors: list[float],
    artifact: MethodArtifact,
    max_activations: pd.DataFrame,
    tm: TargetModel,
    layer: int,
    concept_ids: Sequence[int],
) -> MethodPlan:
    """The plan of a per-prompt method (v(c, x)) over the concepts its artifact covers; the vectors are computed
    when the units are known (:func:`plan_units`)."""
    ids, covered = _steered_concepts(method, artifact, concept_ids)
    plan = MethodPlan(
        name,
        False,
        factors,
        rows={c: int(r) for c, r in zip(ids, artifact.rows_of(ids).tolist(), strict=True)},
        magnitudes=magnitudes_for(method, max_activations, ids),
        covered=covered,
    )
    plan.prompt_vector_fn = lambda cids, prompts: method.prompt_steering_vectors(
        artifact, tm, layer, cids, prompts
    )
    return plan


def _adapter_plan(
    method: AdapterMethod,
    name: str,
    factors: list[float],
    method_artifacts: Mapping[str, Any],
    tm: TargetModel,
    concept_ids: Sequence[int],
) -> MethodPlan | None:
    """The plan of a factor-free adapter method (``None`` when its artifact was skipped in training)."""
    if name not in method_artifacts:
        raise AxbenchDataError(f"method_artifacts: no artifact for steering method {name!r} (run training)")
    artifact = resolve_artifact(method_artifacts[name])
    if not artifact.ok:
        log.warning("steering_eval: %s skipped (%s)", name, artifact.skip_reason or artifact.status)
        return None
    ids, covered = _steered_concepts(method, artifact, concept_ids)
    index = artifact.rows_of(ids).tolist()

    def adapter(concept_id: int) -> AbstractContextManager[None]:
        return method.adapter(artifact, tm, concept_id)

    return MethodPlan(
        name,
        True,
        factors,
        rows=dict(zip(ids, map(int, index), strict=True)),
        magnitudes=dict.fromkeys(ids, 1.0),
        adapter=adapter,
        adapter_shas={c: method.adapter_sha(artifact, c) for c in ids},
        adapter_artifact=artifact,
        covered=covered,
    )


def plan_units(plan: MethodPlan, prompts: pd.DataFrame, replicates: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The units a method generates and the output rows pointing at them (per concept, the factors of
    :meth:`MethodPlan.factors_of`).

    Args:
        plan: the method's plan.
        prompts: one row per (dataset_name, concept_id, input_id) with ``input``, ``steered_input``.
        replicates: samples per instruction of a factor-free method.

    Returns:
        ``(units, rows)``: ``units`` has ``unit, concept_id, prompt, vector_sha, strength``; ``rows`` has the
        output keys, ``strength`` (NaN when factor-free) and ``unit``.
    """
    out_rows, units = [], []
    if plan.prompt_vector_fn is not None:  # per-prompt vectors: all of them in one batched pass
        plan.prepare_prompt_vectors(
            (c, x)
            for c, x in zip(prompts["concept_id"], prompts["input"], strict=True)
            if plan.covered is None or int(c) in plan.covered
        )
    for rec in prompts.itertuples(index=False):
        cid = int(rec.concept_id)
        if plan.covered is not None and cid not in plan.covered:
            continue  # a concept the method does not steer (a concept limit, a filter, a held-out split)
        base = {"dataset_name": rec.dataset_name, "concept_id": cid, "input_id": int(rec.input_id)}
        if plan.factor_free:
            first = len(units)
            for r in range(replicates):
                units.append(
                    {
                        "concept_id": cid,
                        "prompt": rec.input if plan.adapter is not None else rec.steered_input,
                        "vector_sha": plan.vector_sha(cid),
                        "strength": 0.0,
                        "replicate": r,
                    }
                )
            for i, f in enumerate(plan.factors_of(cid)):
                out_rows.append(
                    {**base, "factor": float(f), "strength": float("nan"), "unit": first + i % replicates}
                )
        else:
            sha = plan.vector_sha(cid, rec.input)
            for f in plan.factors_of(cid):
                strength = plan.strength(cid, float(f))
                out_rows.append({**base, "factor": float(f), "strength": strength, "unit": len(units)})
                units.append(
                    {
                        "concept_id": cid,
                        "prompt": rec.input,
                        "vector_sha": sha,
                        "strength": strength,
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


def factor_free_methods(method_names: Iterable[str]) -> list[str]:
    """The methods among ``method_names`` without a strength knob (``factor_free``), in the given order."""
    return [m for m in method_names if get_method(m).factor_free]
