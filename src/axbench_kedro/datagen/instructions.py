"""Seed instruction pools and seeded sampling (protocol §2.2, §2.4, §2.5, decision 14).

A pool is the list of instructions of one genre (text / math / code) and split (train / test). Sampling
draws k distinct indices uniformly with a per-concept RNG seeded from (run seed, concept_id, stage), and
cleans each instruction (surrounding spaces, dots and quotes removed).

Example:
    >>> negative_genre_counts(36)
    {'text': 26, 'math': 5, 'code': 5}
    >>> list(hard_negative_positions(36, 3))
    [36, 37, 38]
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import pandas as pd

from axbench_kedro.cache import content_key
from axbench_kedro.errors import AxbenchDataError

__all__ = [
    "GENRES",
    "SPLITS",
    "clean_instruction",
    "stage_rng",
    "InstructionPools",
    "negative_genre_counts",
    "hard_negative_positions",
]

GENRES = ("text", "math", "code")
SPLITS = ("train", "test")
_STRIP = " \t\r\n.\"'"


def clean_instruction(text: str) -> str:
    """Remove surrounding whitespace, dots and quotes (§2.2)."""
    return str(text).strip(_STRIP)


def stage_rng(seed: int, concept_id: int, stage: str) -> random.Random:
    """A ``random.Random`` seeded from (run seed, concept_id, stage) — never the global state [D 14]."""
    return random.Random(int(content_key(["axbench-datagen", int(seed), int(concept_id), stage])[:16], 16))


class InstructionPools:
    """The ``seed_instructions`` table (columns ``genre``, ``split``, ``input``) split into pools.

    Args:
        frame: the loaded table; file order within a pool is kept (sampling depends on it).
        source: dataset name used in error messages.

    Raises:
        AxbenchDataError: a missing column or an unknown genre/split value.
    """

    def __init__(self, frame: pd.DataFrame, source: str = "seed_instructions") -> None:
        self.source = source
        missing = [c for c in ("genre", "split", "input") if c not in frame.columns]
        if missing:
            raise AxbenchDataError(
                f"{source}: column '{missing[0]}': missing (columns: {list(frame.columns)})"
            )
        genres = frame["genre"].astype(str).str.strip().str.lower()
        splits = frame["split"].astype(str).str.strip().str.lower()
        bad_genre = sorted(set(genres) - set(GENRES))
        if bad_genre:
            raise AxbenchDataError(
                f"{source}: column 'genre': unknown values {bad_genre} (allowed: {GENRES})"
            )
        bad_split = sorted(set(splits) - set(SPLITS))
        if bad_split:
            raise AxbenchDataError(
                f"{source}: column 'split': unknown values {bad_split} (allowed: {SPLITS})"
            )
        inputs = frame["input"].astype(str)
        self._pools: dict[tuple[str, str], list[str]] = {}
        for genre, split, text in zip(genres, splits, inputs, strict=True):
            self._pools.setdefault((genre, split), []).append(text)

    def pool(self, genre: str, split: str) -> list[str]:
        """The raw instructions of one pool (empty list if absent)."""
        return list(self._pools.get((genre, split), []))

    def fingerprint(self) -> str:
        """Content hash of every pool (changes when any instruction changes)."""
        return content_key(sorted((f"{g}_{s}", v) for (g, s), v in self._pools.items()))

    def sizes(self) -> dict[str, int]:
        """``{"text_train": n, ...}`` for every pool present."""
        return {f"{g}_{s}": len(v) for (g, s), v in sorted(self._pools.items())}

    def sample(self, genre: str, split: str, k: int, rng: random.Random) -> list[str]:
        """k cleaned instructions at distinct indices drawn uniformly from the ``{genre}_{split}`` pool.

        Raises:
            AxbenchDataError: the pool holds fewer than k instructions.
        """
        pool = self._pools.get((genre, split), [])
        if k > len(pool):
            raise AxbenchDataError(
                f"{self.source}: column 'input': the {genre}/{split} pool has {len(pool)} instructions, "
                f"{k} are needed (point the catalog at the full pools or lower the datagen counts)"
            )
        return [clean_instruction(pool[i]) for i in rng.sample(range(len(pool)), k)]


def negative_genre_counts(n: int, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
    """Negatives per genre for n latent examples: ``int(0.15 n)`` math and code, the rest text (§2.5)."""
    overrides = overrides or {}
    math = int(overrides.get("math", int(0.15 * n)))
    code = int(overrides.get("code", int(0.15 * n)))
    return {"text": n - math - code, "math": math, "code": code}


def hard_negative_positions(n: int, k: int) -> range:
    """Indices, within the 2n sampled test instructions, used by the k hard negatives: n..n+k−1."""
    if k > n:
        raise ValueError(f"{k} hard negatives need more than the {n} spare instructions")
    return range(n, n + k)
