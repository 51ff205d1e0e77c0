"""Parsing of the data-generation replies (protocol §2.7, §10.4) and truncation to T target tokens.

Example:
    >>> parse_genres("Math and code")
    ['code', 'math']
    >>> parse_other_meaning("the edge of a river"), parse_other_meaning("riverbank")
    ('the edge of a river', None)
    >>> is_distinct("Answer: <NO> ... Final Answer: <YES>")
    True
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "GENRE_ORDER",
    "parse_genres",
    "parse_related_words",
    "parse_other_meaning",
    "is_distinct",
    "clean_response",
    "clean_contrast_response",
    "truncate_to_tokens",
]

GENRE_ORDER = ("text", "code", "math")
_NONE_MARK = "<none>"
_LEADING_TAGS = re.compile(r"^\s*(?:<[^<>]*>\s*)+")


def parse_genres(reply: str | None) -> list[str]:
    """G1: genres named in the reply, in the order text, code, math; ``[text]`` if none or ``none``."""
    text = (reply or "").lower()
    if "none" in text:
        return ["text"]
    found = [genre for genre in GENRE_ORDER if genre in text]
    return found or ["text"]


def parse_related_words(reply: str | None, max_words: int | None = None) -> list[str]:
    """G2: one word per non-empty line; a ``<NONE>`` reply gives no words [D 17].

    Args:
        reply: the LLM reply.
        max_words: keep at most this many words (``None`` = all).
    """
    lines = [line.strip() for line in (reply or "").splitlines()]
    words = [line for line in lines if line]
    if any(word.lower() == _NONE_MARK for word in words):
        words = [w for w in words if w.lower() != _NONE_MARK]
        if len(words) == 0 or (reply or "").strip().lower().startswith(_NONE_MARK):
            return []
    return words if max_words is None else words[:max_words]


def parse_other_meaning(reply: str | None) -> str | None:
    """G3: the stripped meaning, or ``None`` (drop) if it mentions ``none``, is empty or has ≤ 1 word."""
    text = (reply or "").strip()
    if not text or "none" in text.lower() or len(text.split()) <= 1:
        return None
    return text


def is_distinct(reply: str | None) -> bool:
    """G4: keep iff the text after the last ``Answer`` contains ``yes`` (any case).

    Without any ``Answer`` the whole reply is searched (the behaviour of splitting on the marker).
    """
    tail = (reply or "").split("Answer")[-1]
    return "yes" in tail.lower()


def clean_response(reply: str | None) -> str:
    """G5/G6: strip surrounding whitespace and quotes."""
    return (reply or "").strip().strip("\"'").strip()


def clean_contrast_response(reply: str | None) -> str:
    """G7: drop a leading run of ``<…>`` tags (``<FINAL>``), then surrounding whitespace, dots and quotes."""
    return _LEADING_TAGS.sub("", reply or "").strip(" \t\r\n.\"'")


def truncate_to_tokens(tokenizer: Any, text: str, max_tokens: int) -> str:
    """The first ``max_tokens`` target-tokenizer tokens of ``text``, detokenized (special tokens kept)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=False, clean_up_tokenization_spaces=False)
