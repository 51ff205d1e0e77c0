"""Train every configured method on every concept, sharing the expensive parts.

Concepts are handled in groups (``concept_group_size``): one truncated forward pass over the group's F-binary
positives (each genre's pool negatives once per run) feeds every method that needs activations, and the
LM-objective methods (SSV, ReFT-r1) slice their layer-L states out of that same pass and take their optimizer
steps for the whole group at once. Per-concept results are stored under a content key (model, layer, method, its
version and hyperparameters, seed, the concept's rows), so an unchanged rerun — or a resumed one — recomputes
nothing.

Example:
    >>> opts = TrainOptions(setting="s", layer=1, seed=42)
    >>> artifacts, summary = train_methods(tm, concepts, [(get_method("DiffMean"), None)], opts)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from axbench_kedro.cache import content_key
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.lm.chat import chat_prefix_length, format_binary, format_prompt, turn_end_suffix
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import (
    ConceptActivations,
    LMObjectiveRows,
    RowActivations,
    compute_lm_rows,
    compute_row_activations,
)
from axbench_kedro.methods.base import ConceptData, ConceptInputs, Method, MethodArtifact, PreferenceData
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.preference import PREFERENCE_MAX_LENGTH, PreferenceRows, compute_preference_rows
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.row_spool import ROW_FILE, RowSpool
from axbench_kedro.methods.sae_file import SAEParams, SAESource

if TYPE_CHECKING:
    from axbench_kedro.scaling.executor import ShardExecutor

__all__ = [
    "TrainOptions",
    "build_concepts",
    "build_preferences",
    "derive_seed",
    "lm_targets",
    "train_methods",
    "skipped_artifact",
]

log = logging.getLogger(__name__)

_TRAIN_COLUMNS = ("input", "output", "output_concept", "concept_genre", "category", "concept_id")
_META_COLUMNS = ("concept_id", "concept")
_PREFERENCE_COLUMNS = ("input", "winning_output", "losing_output", "concept_id")
# resources trained through the blocks after L and the LM head (tail dtype and [D 2] targets are part of their key)
_TAIL_REQUIREMENTS = frozenset({"lm_objective", "preference"})
# result of a concept beyond the method's concept_limit: never trained, left out of its artifact
_NOT_TRAINED: dict[str, Any] = {}


@dataclass(frozen=True)
class TrainOptions:
    """Run-wide training settings (from ``params:run`` and ``params:training``)."""

    setting: str
    layer: int
    seed: int
    activation_batch_size: int = 6
    lm_cache_batch_size: int = 6
    max_length: int = 1024
    sae_width: int | None = None
    lm_objective_dtype: torch.dtype | None = None
    concept_group_size: int = 4
    append_eot_to_targets: bool = False
    preference_max_length: int = PREFERENCE_MAX_LENGTH


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AxbenchDataError(f"{name}: missing column(s) {missing}")


def _first_genre(value: Any) -> str | None:
    if value is None:
        return None
    try:
        items = list(value)
    except TypeError:
        return str(value)
    if items and not isinstance(value, str):
        return str(items[0])
    return str(value) if isinstance(value, str) and value else None


def build_concepts(train_data: pd.DataFrame, concepts_meta: pd.DataFrame) -> list[ConceptData]:
    """Each concept's positives and its genre's pool negatives (protocol §2.4), in ``concept_id`` order.

    Raises:
        AxbenchDataError: missing columns, a concept without positives, or a genre without pool negatives.
    """
    _require(train_data, _TRAIN_COLUMNS, "train_data")
    _require(concepts_meta, _META_COLUMNS, "concepts_meta")
    pool = train_data[(train_data["concept_id"] == -1) & (train_data["category"] == "negative")]
    concepts: list[ConceptData] = []
    for meta in concepts_meta.sort_values("concept_id").itertuples(index=False):
        cid = int(meta.concept_id)
        pos = train_data[(train_data["concept_id"] == cid) & (train_data["category"] == "positive")]
        if pos.empty:
            raise AxbenchDataError(f"train_data: concept_id {cid} has no positive rows")
        genre = _first_genre(getattr(meta, "concept_genres", None)) or str(pos["concept_genre"].iloc[0])
        neg = pool[pool["concept_genre"] == genre]
        if neg.empty:
            raise AxbenchDataError(
                f"train_data: no pool negatives (concept_id -1) of genre {genre!r} for concept_id {cid}"
            )
        sae_id = getattr(meta, "sae_id", -1)
        concepts.append(
            ConceptData(
                concept_id=cid,
                concept=str(meta.concept),
                genre=genre,
                sae_id=int(sae_id) if pd.notna(sae_id) else -1,
                pos_inputs=tuple(map(str, pos["input"])),
                pos_outputs=tuple(map(str, pos["output"])),
                neg_inputs=tuple(map(str, neg["input"])),
                neg_outputs=tuple(map(str, neg["output"])),
            )
        )
    return concepts


def build_preferences(
    preference_data: pd.DataFrame, concepts: Sequence[ConceptData]
) -> dict[int, PreferenceData]:
    """Each concept's preference pairs (protocol §1.4), in ``preference_data`` row order.

    Raises:
        AxbenchDataError: missing columns, or a concept of ``concepts`` without pairs.
    """
    _require(preference_data, _PREFERENCE_COLUMNS, "preference_data")
    out: dict[int, PreferenceData] = {}
    for c in concepts:
        rows = preference_data[preference_data["concept_id"] == c.concept_id]
        if rows.empty:
            raise AxbenchDataError(f"preference_data: concept_id {c.concept_id} has no preference pairs")
        out[c.concept_id] = PreferenceData(
            concept_id=c.concept_id,
            inputs=tuple(map(str, rows["input"])),
            winning=tuple(map(str, rows["winning_output"])),
            losing=tuple(map(str, rows["losing_output"])),
        )
    return out


def derive_seed(run_seed: int, concept_id: int, stage: str) -> int:
    """A per-concept, per-stage seed derived from the run seed (no global random state)."""
    return int(content_key([int(run_seed), int(concept_id), stage])[:8], 16)


def skipped_artifact(method: Method, reason: str, base_meta: dict[str, Any]) -> MethodArtifact:
    """An artefact that records why ``method`` did not run (no tensors)."""
    return MethodArtifact(
        method.name,
        {},
        dict(base_meta, method=method.name, status="skipped", skip_reason=reason, **_plugin_meta(method)),
    )


class _Resources:
    """Lazily computed, shared training inputs (pool activations per genre, LM rows, the SAE)."""

    def __init__(self, tm: TargetModel, opts: TrainOptions, sae: SAEParams | None) -> None:
        self.tm, self.opts, self.sae = tm, opts, sae
        self.prefix = chat_prefix_length(tm.tokenizer)
        self.pool_acts: dict[str, RowActivations] = {}
        self.pool_lm: dict[str, LMObjectiveRows] = {}
        self.positives: dict[int, RowActivations] = {}
        # the current group's preference pairs (shared by the RePS family)
        self.preference: dict[int, PreferenceRows] = {}
        self._tail: LMTail | None = None
        self.seconds: dict[str, float] = {"activations": 0.0, "lm_cache": 0.0}

    @property
    def tail(self) -> LMTail:
        if self._tail is None:
            self._tail = LMTail(self.tm, self.opts.layer, self.opts.lm_objective_dtype)
        return self._tail

    def binary(self, inputs: Sequence[str], outputs: Sequence[str]) -> list[str]:
        return [format_binary(self.tm.tokenizer, i, o) for i, o in zip(inputs, outputs, strict=True)]

    def _acts(self, texts: list[str]) -> RowActivations:
        start = time.perf_counter()
        out = compute_row_activations(
            self.tm, texts, self.opts.layer, self.opts.activation_batch_size, self.opts.max_length
        )
        self.seconds["activations"] += time.perf_counter() - start
        return out

    def prefetch(self, group: Sequence[ConceptData], genres: Sequence[str] | None = None) -> None:
        """One forward pass over the positives of ``group`` and every pool genre not computed yet.

        ``genres`` overrides which pools join the pass (a Dask shard replays the pass that computed a pool in the
        sequential order, so the pool's rows are batched exactly as they were there).
        """
        if genres is None:
            genres = list(dict.fromkeys(c.genre for c in group if c.genre not in self.pool_acts))
        pools = {g: next(c for c in group if c.genre == g) for g in genres}
        texts: list[str] = []
        spans: list[tuple[str, Any, int, int]] = []
        for g, c in pools.items():
            spans.append(("pool", g, len(texts), len(texts) + len(c.neg_inputs)))
            texts += self.binary(c.neg_inputs, c.neg_outputs)
        for c in group:
            spans.append(("pos", c.concept_id, len(texts), len(texts) + len(c.pos_inputs)))
            texts += self.binary(c.pos_inputs, c.pos_outputs)
        acts = self._acts(texts)
        self.positives = {}
        for kind, key, r0, r1 in spans:
            part = acts.slice_rows(r0, r1)
            if kind == "pool":
                self.pool_acts[key] = part
            else:
                self.positives[key] = part

    def activations(self, c: ConceptData) -> ConceptActivations:
        if c.concept_id not in self.positives or c.genre not in self.pool_acts:
            self.prefetch([c])
        return ConceptActivations.from_parts(
            self.positives[c.concept_id], self.pool_acts[c.genre], self.prefix
        )

    def _lm(
        self, inputs: Sequence[str], outputs: Sequence[str], reuse: RowActivations | None
    ) -> LMObjectiveRows:
        start = time.perf_counter()
        prompts = [format_prompt(self.tm.tokenizer, i) for i in inputs]
        out = compute_lm_rows(
            self.tm,
            prompts,
            lm_targets(self.tm.tokenizer, outputs, self.opts.append_eot_to_targets),
            self.opts.layer,
            self.prefix,
            self.opts.lm_cache_batch_size,
            self.opts.max_length,
            reuse=reuse,
        )
        self.seconds["lm_cache"] += time.perf_counter() - start
        return out

    def lm_pairs(self, inputs: Sequence[str], outputs: Sequence[str]) -> LMObjectiveRows:
        """LM-objective rows of raw (input, output) pairs, computed now (``lm_rows_on_demand``)."""
        return self._lm(inputs, outputs, None)

    def lm_rows(self, c: ConceptData, with_negatives: bool) -> LMObjectiveRows:
        pos = self._lm(c.pos_inputs, c.pos_outputs, self.positives.get(c.concept_id))
        if not with_negatives:
            return pos
        if c.genre not in self.pool_lm:
            self.pool_lm[c.genre] = self._lm(c.neg_inputs, c.neg_outputs, self.pool_acts.get(c.genre))
        return LMObjectiveRows.concat([pos, self.pool_lm[c.genre]])

    def preference_rows(self, pref: PreferenceData) -> PreferenceRows:
        """Cached layer-L states of ``pref``'s pairs (computed once per concept group)."""
        if pref.concept_id not in self.preference:
            start = time.perf_counter()
            self.preference[pref.concept_id] = compute_preference_rows(
                self.tm,
                pref,
                self.opts.layer,
                self.prefix,
                self.opts.lm_cache_batch_size,
                targets=(
                    lm_targets(self.tm.tokenizer, pref.winning, self.opts.append_eot_to_targets),
                    lm_targets(self.tm.tokenizer, pref.losing, self.opts.append_eot_to_targets),
                ),
                max_length=self.opts.preference_max_length,
            )
            self.seconds["preference_cache"] = (
                self.seconds.get("preference_cache", 0.0) + time.perf_counter() - start
            )
        return self.preference[pref.concept_id]


def lm_targets(tokenizer: Any, outputs: Sequence[str], append_eot: bool) -> list[str]:
    """LM-objective targets appended after F-prompt: ``{output}`` exactly (Feb/paper), or with the template's turn end
    (Gemma ``<end_of_turn>\\n``) appended when ``append_eot`` (``training.append_eot_to_targets``, [D 2]).

    Args:
        tokenizer: the target model's tokenizer (its chat template gives the turn end).
        outputs: the raw responses (not trimmed: the target is appended as is).
        append_eot: append the turn end.
    """
    if not append_eot:
        return list(outputs)
    suffix = turn_end_suffix(tokenizer)
    return [o + suffix for o in outputs]


def _plugin_meta(method: Method) -> dict[str, str]:
    """``{"plugin": "entry point ... (distribution D V)"}`` for a plugin method (its version is part of the cache key
    and of the artefact's metadata), ``{}`` for a built-in."""
    from axbench_kedro.methods.registry import plugin_source

    source = plugin_source(method.name)
    return {"plugin": source} if source else {}


def _cache_key(
    method: Method, hp: Any, tm: TargetModel, opts: TrainOptions, c: ConceptData, extra: Any
) -> str:
    return content_key(
        {
            **_plugin_meta(method),
            "method": method.name,
            "version": method.version,
            "hp": hp.model_dump(mode="json"),
            "model": [tm.name, str(tm.dtype), tm.device.type, tm.spec.source, tm.spec.gguf_file],
            "layer": opts.layer,
            "seed": opts.seed,
            "max_length": opts.max_length,
            "lm_dtype": (
                str(opts.lm_objective_dtype) if (_TAIL_REQUIREMENTS | {"lm_tail"}) & method.requires else None
            ),
            "concept": c.fingerprint(),
            "extra": extra,
            # Only when on, so that switching it off reuses every earlier result ([D 2]).
            **(
                {"append_eot": True}
                if opts.append_eot_to_targets and _TAIL_REQUIREMENTS & method.requires
                else {}
            ),
            **(
                {"preference_max_length": opts.preference_max_length}
                if "preference" in method.requires
                else {}
            ),
        }
    )


def _sae_identity(sae: SAESource | None, opts: TrainOptions) -> Any:
    if sae is None or not sae.available or sae.path is None:
        return None
    st = os.stat(sae.path)
    return [os.path.abspath(sae.path), st.st_size, st.st_mtime_ns, opts.sae_width]


def _train_group(
    concepts: Sequence[ConceptData],
    group: list[int],
    runnable: Sequence[tuple[Method, Any]],
    results: dict[str, list[Any]],
    keys: dict[str, list[str]],
    seconds: dict[str, float],
    res: _Resources,
    store: Any,
    sae_params: SAEParams | None,
    opts: TrainOptions,
    preferences: Mapping[int, PreferenceData] | None = None,
    spool: RowSpool | None = None,
) -> None:
    """Train every pending (method, concept) of one concept group; each method sees the group at once (one concept
    at a time when its rows go to disk through ``spool``)."""
    res.preference = {}  # the previous group's pairs are done with
    pending = {m.name: [i for i in group if results[m.name][i] is None] for m, _ in runnable}
    active = [(m, hp) for m, hp in runnable if pending[m.name]]
    needs = set().union(*(m.requires for m, _ in active))
    forward = [m for m, _ in active if {"activations", "lm_objective"} & m.requires]
    act_concepts = [concepts[i] for i in group if any(i in pending[m.name] for m in forward)]
    if act_concepts:
        res.prefetch(act_concepts)
    with_neg = any(m.trains_on_negatives for m, _ in active if "lm_objective" in m.requires)
    inputs = {
        i: _concept_resources(res, concepts[i], needs, with_neg, sae_params, preferences) for i in group
    }
    for m, hp in active:
        todo = pending[m.name]
        seeds = [derive_seed(opts.seed, concepts[i].concept_id, m.name) for i in todo]
        items = [ConceptInputs(seed=s, **inputs[i]) for i, s in zip(todo, seeds, strict=True)]
        step = 1 if m.rows_on_disk and spool is not None else len(items)  # a row can be a model copy
        for k in range(0, len(items), step):
            start = time.perf_counter()
            rows = m.train_group(items[k : k + step], hp)
            seconds[m.name] += time.perf_counter() - start
            for i, row in zip(todo[k : k + step], rows, strict=True):
                results[m.name][i] = held_row(m, keys.get(m.name), i, row, store, spool)


def held_row(
    method: Method,
    keys: Sequence[str] | None,
    i: int,
    row: dict[str, Any],
    store: Any,
    spool: RowSpool | None,
) -> dict[str, Any]:
    """Cache concept ``i``'s trained ``row`` and return what the trainer keeps of it: the row itself, or for a
    :attr:`~Method.rows_on_disk` method (given a ``spool``) its other values and the :class:`RowFile` its tensors
    were just written to."""
    if method.rows_on_disk and spool is not None and keys is not None:
        return spool.keep(keys[i], row)
    if store is not None and keys is not None:
        store.put(keys[i], row)
    return row


def _concept_resources(
    res: _Resources,
    c: ConceptData,
    needs: set[str] | frozenset[str],
    with_neg: bool,
    sae_params: SAEParams | None,
    preferences: Mapping[int, PreferenceData] | None,
) -> dict[str, Any]:
    """The :class:`ConceptInputs` fields (all but ``seed``) of concept ``c`` for the requirements ``needs``."""
    base: dict[str, Any] = dict(data=c, device=res.tm.device, d_model=res.tm.d_model)
    if "activations" in needs:
        base["activations"] = res.activations(c)
    if "lm_objective" in needs:
        base["lm_rows"] = res.lm_rows(c, with_neg)
        base["lm_tail"] = res.tail
    if "texts" in needs:
        base["binary_texts"] = tuple(res.binary(c.inputs, c.outputs))
    if "sae" in needs:
        base["sae"] = sae_params
    if "lm_tail" in needs:
        base["lm_tail"] = res.tail
    if "lm_rows_on_demand" in needs:
        base["lm_row_builder"] = res.lm_pairs
        base["lm_tail"] = res.tail
    if "preference" in needs and preferences is not None:
        base["preference"] = res.preference_rows(preferences[c.concept_id])
        base["lm_tail"] = res.tail
    return base


def _train_jointly(
    method: Method,
    hp: Any,
    tm: TargetModel,
    concepts: Sequence[ConceptData],
    opts: TrainOptions,
    store: Any,
    base_meta: dict[str, Any],
) -> tuple[MethodArtifact, int]:
    """Train a :attr:`~Method.trains_jointly` method once on its training concepts (held-out ones never reach it).

    The result is cached under one key (the training and the evaluated concepts' fingerprints); returns the artifact
    (``concept_ids`` = the evaluated concepts) and, as its cached-concept count, the number of evaluated concepts
    when it came from the cache, else 0.
    """
    train, evaluated = method.split_concepts(concepts, hp, opts.seed)
    overlap = {c.concept_id for c in train} & {c.concept_id for c in evaluated}
    if overlap and evaluated != list(concepts):
        raise AxbenchDataError(
            f"{method.name}: concept_id(s) {sorted(overlap)[:10]} both trained on and held out"
        )
    key = _cache_key(
        method,
        hp,
        tm,
        opts,
        train[0],
        {"train": [c.fingerprint() for c in train], "evaluated": [c.fingerprint() for c in evaluated]},
    )
    row = store.get(key) if store is not None else None
    cached = row is not None
    if row is None:
        res = _Resources(tm, opts, None)
        seed = derive_seed(opts.seed, -1, method.name)
        items = [
            ConceptInputs(
                seed=derive_seed(opts.seed, c.concept_id, method.name),
                **_concept_resources(res, c, method.requirements(hp), method.trains_on_negatives, None, None),
            )
            for c in train
        ]
        row = method.train_all(items, evaluated, hp, seed)
        if store is not None:
            store.put(key, row)
    tensors = {k: v for k, v in row.items() if isinstance(v, torch.Tensor)}
    meta = dict(
        base_meta,
        method=method.name,
        hyperparameters=hp.model_dump(mode="json"),
        method_version=method.version,
        **_plugin_meta(method),
        **{k: v for k, v in row.items() if not isinstance(v, torch.Tensor)},
        concept_ids=[c.concept_id for c in evaluated],
    )
    if opts.append_eot_to_targets and _TAIL_REQUIREMENTS & method.requires:
        meta["append_eot_to_targets"] = True  # [D 2]
    log.info(
        "training: %s ready (trained once on %d concepts, evaluated on %d%s)",
        method.name,
        len(train),
        len(evaluated),
        ", from cache" if cached else "",
    )
    return MethodArtifact(method.name, tensors, meta), len(evaluated) * int(cached)


def train_methods(
    tm: TargetModel,
    concepts: Sequence[ConceptData],
    methods: Sequence[tuple[Method, Any]],
    opts: TrainOptions,
    *,
    sae: SAESource | None = None,
    store: Any = None,
    preferences: Mapping[int, PreferenceData] | None = None,
    executor: ShardExecutor | None = None,
) -> tuple[dict[str, MethodArtifact], pd.DataFrame]:
    """Train ``methods`` (``(method, hyperparameters)`` pairs) on every concept.

    ``preferences`` (``{concept_id: pairs}``, see :func:`build_preferences`) is needed by the methods that require
    ``"preference"`` (the RePS family); a missing concept raises ``AxbenchDataError``. A distributed ``executor``
    trains each concept group on a worker (:mod:`axbench_kedro.scaling.training`, same results); without one, or
    when the cache left the groups with different pending methods, the groups run here in order.

    Returns:
        ``{method: MethodArtifact}`` in the given order (skipped methods included, with their reason) and a
        summary frame (method, status, skip_reason, n_concepts, cached_concepts, seconds, source_files).
    """
    if not concepts:
        raise AxbenchDataError("train_data: no concepts to train on")
    base_meta = {
        "setting": opts.setting,
        "layer": opts.layer,
        "d": tm.d_model,
        "seed": opts.seed,
        "model": tm.name,
        "concept_ids": [c.concept_id for c in concepts],
        "status": "ok",
        "skip_reason": None,
    }
    sae_extra = _sae_identity(sae, opts)
    spool = RowSpool(store)
    results: dict[str, list[dict[str, Any] | None]] = {}
    keys: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    cached_counts: dict[str, int] = {}
    artifacts: dict[str, MethodArtifact] = {}
    runnable: list[tuple[Method, Any]] = []
    for method, hp in methods:
        hp = method.params(hp)
        reason = method.unavailable_reason(sae=sae, concepts=concepts)
        if reason:
            log.warning("training: %s skipped: %s", method.name, reason)
            artifacts[method.name] = skipped_artifact(
                method, reason, dict(base_meta, hyperparameters=hp.model_dump(mode="json"))
            )
            continue
        if method.trains_jointly:  # one model for all training concepts, trained here at once
            start = time.perf_counter()
            artifacts[method.name], cached_counts[method.name] = _train_jointly(
                method, hp, tm, concepts, opts, store, base_meta
            )
            seconds[method.name] = time.perf_counter() - start
            continue
        runnable.append((method, hp))
        extra = sae_extra if "sae" in method.requires else method.source_identity()
        extras = [extra] * len(concepts)
        if "preference" in method.requires:
            missing = [
                c.concept_id for c in concepts if preferences is None or c.concept_id not in preferences
            ]
            if missing:
                raise AxbenchDataError(
                    f"preference_data: no preference pairs for concept_id(s) {missing[:10]} "
                    f"(needed by {method.name})"
                )
            extras = [preferences[c.concept_id].fingerprint() for c in concepts]  # type: ignore[index]
        keys[method.name] = [
            _cache_key(method, hp, tm, opts, c, e) for c, e in zip(concepts, extras, strict=True)
        ]
        left_out = _beyond_limit(method, hp, concepts)
        cached = spool.cached if method.rows_on_disk else store.get if store is not None else None
        results[method.name] = [
            _NOT_TRAINED if i in left_out else cached(k) if cached is not None else None
            for i, k in enumerate(keys[method.name])
        ]
        cached_counts[method.name] = sum(
            r is not None and r is not _NOT_TRAINED for r in results[method.name]
        )
        seconds[method.name] = 0.0

    todo = [i for i in range(len(concepts)) if any(results[m.name][i] is None for m, _ in runnable)]
    size = max(1, opts.concept_group_size)
    groups = [todo[start : start + size] for start in range(0, len(todo), size)]
    shared: dict[str, float] | None = None
    if groups and executor is not None and executor.distributed:
        from axbench_kedro.scaling.training import train_groups_sharded

        shared = train_groups_sharded(
            executor,
            tm,
            concepts,
            groups,
            runnable,
            results,
            keys,
            seconds,
            store,
            sae,
            opts,
            preferences,
            spool,
        )
    if groups and shared is None:
        needs_sae = any(
            "sae" in m.requires and any(results[m.name][i] is None for i in todo) for m, _ in runnable
        )
        sae_params = sae.load(tm.d_model, opts.sae_width).to(tm.device) if needs_sae and sae else None
        res = _Resources(tm, opts, sae_params)
        with tqdm(total=len(todo), desc="training concepts", unit="concept") as bar:
            for group in groups:
                _train_group(
                    concepts,
                    group,
                    runnable,
                    results,
                    keys,
                    seconds,
                    res,
                    store,
                    sae_params,
                    opts,
                    preferences,
                    spool,
                )
                bar.update(len(group))
        shared = res.seconds
    for name, value in (shared or {}).items():
        seconds[f"(shared) {name}"] = value

    ordered: dict[str, MethodArtifact] = {}
    for method, hp in methods:
        if method.name in artifacts:
            ordered[method.name] = artifacts[method.name]
            continue
        hp = method.params(hp)
        kept = [i for i, r in enumerate(results[method.name]) if r is not _NOT_TRAINED]
        kept_concepts = [concepts[i] for i in kept]
        rows: list[dict[str, Any]] = [results[method.name][i] for i in kept]  # type: ignore[misc]
        row_files = {
            c.concept_id: r[ROW_FILE] for c, r in zip(kept_concepts, rows, strict=True) if ROW_FILE in r
        }
        rows = [{k: v for k, v in r.items() if k != ROW_FILE} for r in rows]
        tensors, extra_meta = method.stack(rows, kept_concepts)
        meta = dict(
            base_meta,
            method=method.name,
            hyperparameters=hp.model_dump(mode="json"),
            method_version=method.version,
            **_plugin_meta(method),
            **extra_meta,
        )
        if len(kept) < len(concepts):
            meta["concept_ids"] = [c.concept_id for c in kept_concepts]
            meta["skipped_concept_ids"] = sorted({c.concept_id for c in concepts} - set(meta["concept_ids"]))
        if opts.append_eot_to_targets and _TAIL_REQUIREMENTS & method.requires:
            meta["append_eot_to_targets"] = True  # [D 2]: targets ended with the turn end
        ordered[method.name] = MethodArtifact(method.name, tensors, meta, row_files)
        log.info(
            "training: %s ready (%d concepts, %d from cache)",
            method.name,
            len(kept),
            cached_counts[method.name],
        )
    summary = pd.DataFrame(
        [
            {
                "method": name,
                "status": art.status,
                "skip_reason": art.skip_reason or "",
                "n_concepts": len(art.concept_ids) if art.ok else 0,
                "cached_concepts": cached_counts.get(name, 0),
                "seconds": round(seconds.get(name, 0.0), 3),
                "source_files": _source_files(name, art),
            }
            for name, art in ordered.items()
        ]
        + [
            {
                "method": k,
                "status": "shared",
                "skip_reason": "",
                "n_concepts": len(concepts),
                "cached_concepts": 0,
                "seconds": round(v, 3),
                "source_files": "",
            }
            for k, v in seconds.items()
            if k.startswith("(shared)")
        ]
    )
    return ordered, summary


def _beyond_limit(method: Method, hp: Any, concepts: Sequence[ConceptData]) -> set[int]:
    """Positions in ``concepts`` past the method's :meth:`~Method.concept_limit` (by ``concept_id``), logged once."""
    limit = method.concept_limit(hp)
    if limit is None or limit >= len(concepts):
        return set()
    ranked = sorted(range(len(concepts)), key=lambda i: concepts[i].concept_id)
    skipped = [concepts[i].concept_id for i in ranked[limit:]]
    log.info(
        "training: %s trains the first %d of %d concepts (max_concepts); skipped concept_id(s) %s",
        method.name,
        limit,
        len(concepts),
        skipped if len(skipped) <= 20 else f"{skipped[:20]} and {len(skipped) - 20} more",
    )
    return set(ranked[limit:])


def _source_files(name: str, art: MethodArtifact) -> str:
    """``path sha256=<hex>`` per file the artifact was read from, ``; ``-joined (``""`` for trained methods)."""
    if not art.ok:
        return ""
    files = get_method(name).source_files(art)
    return "; ".join(f"{path} sha256={sha}" for path, sha in files.items())
