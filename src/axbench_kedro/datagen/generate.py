"""Per-concept data generation (protocol §2.4–2.6): LLM rounds, row building, resumable storage.

Concepts are processed in chunks. For one chunk the LLM calls go out in four rounds, each one
``complete_many`` call so that the client's concurrency (API) or batching (local model) is used fully:

1. G1 genre (concepts without a known genre) and G2 related words;
2. G5 positives for ``train_data`` and ``latent_eval_data``, G6 negatives, G3 other meanings;
3. G4 distinctness of the kept meanings;
4. G7 hard negatives for the pairs that passed, on test instructions n..n+k−1.

A finished concept is written to the concept store (SQLite, keyed by everything that determines its rows),
so an interrupted run resumes with the remaining concepts; the LLM client caches every reply as well.

Example:
    >>> gen = ConceptGenerator(client, prompts, pools, tokenizer, params, seed=42, store=store)
    >>> results = gen.run([ConceptJob(0, "references to cats")])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from axbench_kedro.cache import SQLiteCache, content_key
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.greedy import GreedyAnswers
from axbench_kedro.datagen.instructions import GENRES, InstructionPools, hard_negative_positions, stage_rng
from axbench_kedro.datagen.parsing import (
    clean_contrast_response,
    clean_response,
    is_distinct,
    parse_genres,
    parse_other_meaning,
    parse_related_words,
    truncate_to_tokens,
)
from axbench_kedro.datagen.prompts import DatagenPrompts
from axbench_kedro.datagen.schemas import POOL_CONCEPT, SCHEMAS
from axbench_kedro.llm.types import LLMRequest

__all__ = [
    "ConceptJob",
    "concept_jobs",
    "ConceptResult",
    "ConceptGenerator",
    "CONCEPT_TABLE",
    "build_negative_pool",
    "build_preference_data",
    "rows_frame",
]

log = logging.getLogger(__name__)

CONCEPT_TABLE = "datagen_concepts"
_SAMPLE_STRIDE = 10_000  # sample_index = duplicate rank * stride + occurrence within the concept
# Reply slots that are not named after their template kind.
_SLOT_KIND = {"train": "with_concept", "positive": "with_concept", "negative": "without_concept"}


@dataclass(frozen=True)
class ConceptJob:
    """One concept to generate for.

    Attributes:
        concept_id: dense id (selection order).
        concept: description.
        ref: Neuronpedia link or ``"null"`` (becomes ``sae_link``).
        sae_id: feature index or −1.
        genres: known genres (from provided data); empty = ask the LLM (G1).
        dup_rank: how many earlier concepts carry the same description (their replies must differ).
    """

    concept_id: int
    concept: str
    ref: str = "null"
    sae_id: int = -1
    genres: tuple[str, ...] = ()
    dup_rank: int = 0


def concept_jobs(concepts: pd.DataFrame) -> list[ConceptJob]:
    """One job per row of ``concepts`` (``concepts_meta`` columns), in ``concept_id`` order.

    ``dup_rank`` counts the earlier concepts with the same description, so duplicates get different replies.
    """
    seen: Counter[str] = Counter()
    jobs = []
    for row in concepts.sort_values("concept_id").itertuples(index=False):
        jobs.append(
            ConceptJob(
                concept_id=int(row.concept_id),
                concept=str(row.concept),
                ref=str(row.ref),
                sae_id=int(row.sae_id),
                genres=tuple(str(g) for g in row.concept_genres),
                dup_rank=seen[str(row.concept)],
            )
        )
        seen[str(row.concept)] += 1
    return jobs


@dataclass
class ConceptResult:
    """The rows of one concept plus chain statistics."""

    concept_id: int
    genres: list[str]
    train: list[dict[str, Any]] = field(default_factory=list)
    latent: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "concept_id": self.concept_id,
            "genres": self.genres,
            "train": self.train,
            "latent": self.latent,
            "stats": self.stats,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ConceptResult:
        return cls(
            int(obj["concept_id"]), list(obj["genres"]), obj["train"], obj["latent"], dict(obj["stats"])
        )


@dataclass
class _State:
    """Work in progress for one concept inside a chunk."""

    job: ConceptJob
    genres: list[str]
    occurrences: Counter[str] = field(default_factory=Counter)
    words: list[str] = field(default_factory=list)
    meanings: dict[int, str] = field(default_factory=dict)  # word index → kept meaning
    pairs: list[tuple[str, str]] = field(default_factory=list)
    train_inputs: list[str] = field(default_factory=list)
    test_inputs: list[str] = field(default_factory=list)
    negatives: list[tuple[str, str]] = field(default_factory=list)  # (genre, instruction)
    replies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def genre(self) -> str:
        return self.genres[0]


class ConceptGenerator:
    """Generates ``train_data`` positives and ``latent_eval_data`` rows per concept.

    Args:
        client: an :class:`~axbench_kedro.llm.client.LLMClient` (anything with ``complete_many`` and ``model``).
        prompts: templates and reply adapters of the configured prompt style.
        pools: seed instruction pools.
        tokenizer: the target model's tokenizer (truncation to T tokens).
        params: ``params:datagen``.
        seed: run seed.
        store: finished-concept store (``None`` = no resume).
        want_train: generate the ``train_data`` positives.
        want_latent: generate the ``latent_eval_data`` rows.
        tokenizer_name: identifies the tokenizer in the store key.
    """

    def __init__(
        self,
        client: Any,
        prompts: DatagenPrompts,
        pools: InstructionPools,
        tokenizer: Any,
        params: DatagenParams,
        seed: int,
        store: SQLiteCache | None = None,
        *,
        want_train: bool = True,
        want_latent: bool = True,
        tokenizer_name: str = "",
    ) -> None:
        self.client = client
        self.prompts = prompts
        self.pools = pools
        self.tokenizer = tokenizer
        self.params = params
        self.seed = int(seed)
        self.store = store
        self.want_train = want_train
        self.want_latent = want_latent
        self.tokenizer_name = tokenizer_name
        self._pool_fingerprint = pools.fingerprint()

    # -- resume -------------------------------------------------------------------------------------------------
    def store_key(self, job: ConceptJob) -> str:
        """Content key of everything that determines a concept's rows."""
        p = self.params
        return content_key(
            {
                "v": "datagen-concept-v1",
                "job": [job.concept_id, job.concept, job.ref, job.sae_id, list(job.genres), job.dup_rank],
                "parts": [self.want_train, self.want_latent],
                "counts": [
                    p.num_of_examples,
                    p.latent_num_of_examples,
                    p.output_length,
                    p.latent_negative_counts,
                    p.max_related_words,
                    p.hard_negative_cap,
                    p.dataset_category,
                ],
                "seed": self.seed,
                "prompts": dict(self.prompts.describe()),
                "generator": getattr(self.client, "model", ""),
                "tokenizer": self.tokenizer_name,
                "pools": self._pool_fingerprint,
            }
        )

    def run(self, jobs: Sequence[ConceptJob]) -> list[ConceptResult]:
        """Results for every job (stored ones are read back, the rest generated chunk by chunk)."""
        keys = {job.concept_id: self.store_key(job) for job in jobs}
        stored = self.store.get_many(keys.values()) if self.store is not None else {}
        results: dict[int, ConceptResult] = {}
        for job in jobs:
            if keys[job.concept_id] in stored:
                results[job.concept_id] = ConceptResult.from_json(stored[keys[job.concept_id]])
        todo = [job for job in jobs if job.concept_id not in results]
        if results:
            log.info(
                "datagen: %d of %d concepts already finished (concept store), %d to go",
                len(results),
                len(jobs),
                len(todo),
            )
        size = self.params.concepts_per_chunk
        with tqdm(total=len(jobs), initial=len(results), desc="datagen concepts", unit="concept") as bar:
            for start in range(0, len(todo), size):
                chunk = todo[start : start + size]
                label = f"concepts {start + 1}-{start + len(chunk)} of {len(todo)}"
                for result in self._chunk(chunk, label):
                    results[result.concept_id] = result
                    if self.store is not None:
                        self.store.put(keys[result.concept_id], result.to_json())
                bar.update(len(chunk))
        return [results[job.concept_id] for job in jobs]

    # -- one chunk ----------------------------------------------------------------------------------------------
    def _request(self, state: _State, kind: str, **fields: str) -> LLMRequest:
        marker = content_key([kind, fields])
        occurrence = state.occurrences[marker]
        state.occurrences[marker] += 1
        return self.prompts.request(
            kind, sample_index=state.job.dup_rank * _SAMPLE_STRIDE + occurrence, **fields
        )

    def _ask(self, asks: list[tuple[_State, str, LLMRequest]], desc: str) -> None:
        """Send one round; replies land in ``state.replies[slot]`` in request order (adapted to the style)."""
        if not asks:
            return
        responses = self.client.complete_many([req for _, _, req in asks], desc=desc)
        for (state, slot, _), response in zip(asks, responses, strict=True):
            kind = _SLOT_KIND.get(slot, slot)
            state.replies.setdefault(slot, []).append(self.prompts.reply(kind, response.text))

    def _chunk(self, jobs: Sequence[ConceptJob], label: str) -> list[ConceptResult]:
        p = self.params
        states = [_State(job, list(job.genres)) for job in jobs]
        want_chain = self.want_latent and p.hard_negative_cap > 0

        # Round 1: genre, related words.
        asks: list[tuple[_State, str, LLMRequest]] = []
        for s in states:
            if not s.genres:
                asks.append((s, "genre", self._request(s, "genre", concept=s.job.concept)))
            if want_chain:
                asks.append((s, "related_words", self._request(s, "related_words", concept=s.job.concept)))
        self._ask(asks, f"datagen LLM genre+words, {label}")
        for s in states:
            if not s.genres:
                s.genres = parse_genres(s.replies["genre"][0])
            if want_chain:
                s.words = parse_related_words(s.replies["related_words"][0], p.max_related_words)

        # Round 2: positives, negatives, other meanings.
        asks = []
        for s in states:
            cid, concept = s.job.concept_id, s.job.concept
            if self.want_train:
                sampled = self.pools.sample(
                    s.genre, "train", p.num_of_examples, stage_rng(self.seed, cid, "train")
                )
                s.train_inputs = sampled[: p.train_positives]
                asks += [
                    (s, "train", self._request(s, "with_concept", instruction=x, concept=concept))
                    for x in s.train_inputs
                ]
            if self.want_latent:
                n = p.latent_num_of_examples
                s.test_inputs = self.pools.sample(s.genre, "test", 2 * n, stage_rng(self.seed, cid, "latent"))
                asks += [
                    (s, "positive", self._request(s, "with_concept", instruction=x, concept=concept))
                    for x in s.test_inputs[:n]
                ]
                for genre in GENRES:
                    count = p.latent_negative_counts[genre]
                    if count <= 0:
                        continue
                    picked = self.pools.sample(
                        genre, "test", count, stage_rng(self.seed, cid, f"negative-{genre}")
                    )
                    s.negatives += [(genre, x) for x in picked]
                asks += [
                    (s, "negative", self._request(s, "without_concept", instruction=x, concept=concept))
                    for _, x in s.negatives
                ]
            asks += [
                (s, "other_meaning", self._request(s, "other_meaning", word=w, concept=concept))
                for w in s.words
            ]
        self._ask(asks, f"datagen LLM responses+meanings, {label}")
        for s in states:
            for i, reply in enumerate(s.replies.get("other_meaning", [])):
                meaning = parse_other_meaning(reply)
                if meaning is not None:
                    s.meanings[i] = meaning

        # Round 3: distinctness of each kept meaning from the concept.
        asks = [
            (s, "distinct", self._request(s, "distinct", meaning=m, concept=s.job.concept))
            for s in states
            for m in s.meanings.values()
        ]
        self._ask(asks, f"datagen LLM distinctness, {label}")
        for s in states:
            verdicts = s.replies.get("distinct", [])
            kept = [
                (s.words[i], m)
                for (i, m), ok in zip(s.meanings.items(), verdicts, strict=True)
                if is_distinct(ok)
            ]
            s.pairs = kept[: p.hard_negative_cap]

        # Round 4: hard negatives on instructions n..n+k-1.
        asks = []
        for s in states:
            positions = hard_negative_positions(p.latent_num_of_examples, len(s.pairs))
            asks += [
                (
                    s,
                    "contrast",
                    self._request(
                        s, "contrast", instruction=s.test_inputs[j], concept=s.job.concept, word=w, meaning=m
                    ),
                )
                for j, (w, m) in zip(positions, s.pairs, strict=True)
            ]
        self._ask(asks, f"datagen LLM hard negatives, {label}")
        return [self._rows(s) for s in states]

    # -- rows ---------------------------------------------------------------------------------------------------
    def _text(self, reply: str, contrast: bool = False) -> str:
        cleaned = clean_contrast_response(reply) if contrast else clean_response(reply)
        return truncate_to_tokens(self.tokenizer, cleaned, self.params.output_length)

    def _rows(self, s: _State) -> ConceptResult:
        job, p = s.job, self.params
        base = {"dataset_category": p.dataset_category, "concept_id": job.concept_id}
        latent_extra = {"sae_link": job.ref, "sae_id": job.sae_id}
        result = ConceptResult(job.concept_id, list(s.genres))
        for x, reply in zip(s.train_inputs, s.replies.get("train", []), strict=True):
            result.train.append(_row(x, self._text(reply), job.concept, s.genre, "positive", base))
        n = p.latent_num_of_examples
        for x, reply in zip(s.test_inputs[:n], s.replies.get("positive", []), strict=True):
            result.latent.append(
                _row(x, self._text(reply), job.concept, s.genre, "positive", base, latent_extra)
            )
        for (genre, x), reply in zip(s.negatives, s.replies.get("negative", []), strict=True):
            result.latent.append(
                _row(x, self._text(reply), job.concept, genre, "negative", base, latent_extra)
            )
        positions = hard_negative_positions(n, len(s.pairs)) if self.want_latent else range(0)
        for j, (word, meaning), reply in zip(positions, s.pairs, s.replies.get("contrast", []), strict=True):
            text = self._text(reply, contrast=True)
            result.latent.append(
                _row(
                    s.test_inputs[j], text, f"{word}//{meaning}", s.genre, "hard negative", base, latent_extra
                )
            )
        outputs = [r["output"] for r in result.train + result.latent]
        result.stats = {
            "related_words": len(s.words),
            "meanings_kept": len(s.meanings),
            "contrast_pairs": len(s.pairs),
            "empty_outputs": sum(1 for o in outputs if not o.strip()),
        }
        return result


def _row(
    instruction: str,
    output: str,
    output_concept: str,
    genre: str,
    category: str,
    base: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    row = {
        "input": instruction,
        "output": output,
        "output_concept": output_concept,
        "concept_genre": genre,
        "category": category,
        **base,
    }
    return {**row, **(extra or {})}


def rows_frame(rows: Sequence[dict[str, Any]], kind: str) -> pd.DataFrame:
    """A DataFrame with exactly the schema's columns, in schema order, with protocol dtypes."""
    columns = list(SCHEMAS[kind])
    frame = pd.DataFrame(list(rows), columns=columns)
    for column, dtype in SCHEMAS[kind].items():
        frame[column] = frame[column].astype("int64") if dtype == "int" else frame[column].astype(object)
    return frame


def build_negative_pool(
    pools: InstructionPools,
    answers: GreedyAnswers,
    per_genre: int,
    seed: int,
    dataset_category: str = "instruction",
) -> pd.DataFrame:
    """The shared negative pool (§2.4.1): per genre, ``per_genre`` train instructions answered by the target model."""
    sampled = [
        (genre, x)
        for genre in GENRES
        for x in pools.sample(genre, "train", per_genre, stage_rng(seed, -1, f"pool-{genre}"))
    ]
    outputs = answers([x for _, x in sampled])  # one batched call for every genre
    base = {"dataset_category": dataset_category, "concept_id": -1}
    rows = [
        _row(x, out, POOL_CONCEPT, genre, "negative", base)
        for (genre, x), out in zip(sampled, outputs, strict=True)
    ]
    return rows_frame(rows, "train_data")


def build_preference_data(train_data: pd.DataFrame, answers: GreedyAnswers) -> pd.DataFrame:
    """RePS pairs (§2.6): every positive row, winning = its output, losing = the target model's greedy answer."""
    pos = train_data[(train_data["category"] == "positive") & (train_data["concept_id"] >= 0)]
    losing = answers(pos["input"].astype(str).tolist())
    frame = pd.DataFrame(
        {
            "input": pos["input"].to_numpy(),
            "winning_output": pos["output"].to_numpy(),
            "losing_output": losing,
            "output_concept": pos["output_concept"].to_numpy(),
            "concept_genre": pos["concept_genre"].to_numpy(),
            "category": "positive",
            "dataset_category": pos["dataset_category"].to_numpy(),
            "concept_id": pos["concept_id"].to_numpy(),
        }
    )
    return rows_frame(frame.to_dict("records"), "preference_data")
