"""Small synthetic frames with the exact columns of train_data, latent_eval_data and concepts_meta (protocol §1.1–1.3).

Every word belongs to the tiny test tokenizer's vocabulary, and each concept has a lexical signature, so methods
trained on a random tiny model still separate positives from negatives well above chance.
"""

from __future__ import annotations

import random

import pandas as pd

from fixtures.released_layout import TEST_COLUMNS

__all__ = [
    "CONCEPTS",
    "make_concepts_meta",
    "make_train_data",
    "make_latent_eval_data",
    "make_preference_data",
]

CONCEPTS = [
    ("car rental services", "rental car rent cars travel hotel trip service"),
    ("python programming", "python code loop variable function program data sql"),
    ("music and songs", "music song art film picture color play red"),
]
_NEUTRAL_TEXT = (
    "the man and the woman walk to the school in the morning and they read a book about the world before night "
    "when the sun is low and the family get food at home with a friend"
)
_NEUTRAL = _NEUTRAL_TEXT.split()
_INSTRUCTIONS = [
    "tell me about your day",
    "what is a good idea",
    "explain the question",
    "write a short story",
    "describe the city",
    "give an example",
    "what do you think",
    "help me understand the problem",
]


def _sentence(rng: random.Random, signature: list[str], n_sig: int, length: int = 14) -> str:
    words = [rng.choice(_NEUTRAL) for _ in range(length - n_sig)] + [
        rng.choice(signature) for _ in range(n_sig)
    ]
    rng.shuffle(words)
    return " ".join(words) + " ."


def make_concepts_meta(n_concepts: int = 3) -> pd.DataFrame:
    """``concepts_meta`` with ``concept_id`` 0..n−1, text genre, no SAE feature."""
    return pd.DataFrame(
        {
            "concept_id": pd.Series(range(n_concepts), dtype="int64"),
            "concept": [CONCEPTS[i][0] for i in range(n_concepts)],
            "ref": "null",
            "sae_id": pd.Series([-1] * n_concepts, dtype="int64"),
            "concept_genres": [["text"] for _ in range(n_concepts)],
        }
    )


def make_train_data(n_concepts: int = 3, n_pos: int = 6, n_pool: int = 6, seed: int = 0) -> pd.DataFrame:
    """Positives per concept + one text pool of negatives (``concept_id`` −1, ``EEEEE``)."""
    rng = random.Random(seed)
    rows = []
    for cid in range(n_concepts):
        concept, sig = CONCEPTS[cid]
        for _ in range(n_pos):
            rows.append((rng.choice(_INSTRUCTIONS), _sentence(rng, sig.split(), 5), concept, "positive", cid))
    for _ in range(n_pool):
        rows.append((rng.choice(_INSTRUCTIONS), _sentence(rng, [], 0), "EEEEE", "negative", -1))
    frame = pd.DataFrame(rows, columns=["input", "output", "output_concept", "category", "concept_id"])
    frame["concept_genre"] = "text"
    frame["dataset_category"] = "instruction"
    frame["concept_id"] = frame["concept_id"].astype("int64")
    return frame[
        ["input", "output", "output_concept", "concept_genre", "category", "dataset_category", "concept_id"]
    ]


def make_latent_eval_data(
    n_concepts: int = 3, n_pos: int = 4, n_neg: int = 4, n_hard: int = 1, seed: int = 1
) -> pd.DataFrame:
    """Positives, negatives and hard negatives per concept, with ``sae_link``/``sae_id``."""
    rng = random.Random(seed)
    rows = []
    for cid in range(n_concepts):
        concept, sig = CONCEPTS[cid]
        sig_words = sig.split()
        for _ in range(n_pos):
            rows.append((rng.choice(_INSTRUCTIONS), _sentence(rng, sig_words, 5), concept, "positive", cid))
        for _ in range(n_neg):
            rows.append((rng.choice(_INSTRUCTIONS), _sentence(rng, [], 0), concept, "negative", cid))
        for _ in range(n_hard):
            word = sig_words[0]
            rows.append(
                (rng.choice(_INSTRUCTIONS), _sentence(rng, [word], 1), f"{word}//other", "hard negative", cid)
            )
    frame = pd.DataFrame(rows, columns=["input", "output", "output_concept", "category", "concept_id"])
    frame["concept_genre"] = "text"
    frame["dataset_category"] = "instruction"
    frame["concept_id"] = frame["concept_id"].astype("int64")
    frame["sae_link"] = "null"
    frame["sae_id"] = pd.Series([-1] * len(frame), dtype="int64")
    return frame[TEST_COLUMNS]


def make_preference_data(train_data: pd.DataFrame, seed: int = 2) -> pd.DataFrame:
    """``preference_data`` (§1.4) of ``train_data``'s positives: winning = the positive, losing = a neutral sentence."""
    rng = random.Random(seed)
    pos = train_data[(train_data["category"] == "positive") & (train_data["concept_id"] >= 0)]
    frame = pd.DataFrame(
        {
            "input": pos["input"].to_numpy(),
            "winning_output": pos["output"].to_numpy(),
            "losing_output": [_sentence(rng, [], 0, length=10) for _ in range(len(pos))],
            "output_concept": pos["output_concept"].to_numpy(),
            "concept_genre": pos["concept_genre"].to_numpy(),
            "category": "positive",
            "dataset_category": pos["dataset_category"].to_numpy(),
            "concept_id": pos["concept_id"].astype("int64").to_numpy(),
        }
    )
    return frame
