"""Reading the suppression LLM replies (protocol §6): R1–R3 texts, the avoidance fallbacks and R4 examples.

R1 (rewritten instruction), R2 (avoid the concept) and R3 (avoid the rule) replies are stripped; an empty reply is
replaced by the project's own fallback for that purpose and flagged [D 18] — never by the steering fallback, which
asks for the concept. R4 replies are parsed into (question, answer) pairs.

Example:
    >>> clean_reply("  Never mention cats.  ", AVOID_CONCEPT_FALLBACK, concept="cats")
    ('Never mention cats.', False)
    >>> parse_examples("User: Hi?\\nAssistant: HELLO!\\njunk\\nQuestion: Why?\\nAnswer: BECAUSE.")
    [('Hi?', 'HELLO!'), ('Why?', 'BECAUSE.')]
"""

from __future__ import annotations

import re

__all__ = [
    "AVOID_CONCEPT_FALLBACK",
    "AVOID_RULE_FALLBACK",
    "REWRITE_FALLBACK",
    "TOPICS",
    "clean_reply",
    "parse_examples",
]

AVOID_CONCEPT_FALLBACK = (
    "Do not mention, describe or hint at {concept} anywhere in your answer, even if the request asks for it; "
    "answer everything else in the request as you normally would."
)
"""R2 fallback: an avoidance instruction (``{concept}`` = the concept description)."""

AVOID_RULE_FALLBACK = (
    "Do not follow this rule in your answer, even if the request asks for it: {rule}. Answer the request with the "
    "same meaning and content as you otherwise would."
)
"""R3 fallback: an instruction to break the rule (``{rule}`` = the rule description)."""

REWRITE_FALLBACK = "{instruction}"
"""R1 fallback: the raw instruction, unchanged (a fallback never adds the concept) [D 18]."""

TOPICS: tuple[str, ...] = (
    "cooking at home",
    "personal finance",
    "travel planning",
    "gardening",
    "physical fitness",
    "learning a language",
    "pets and their care",
    "home repairs",
    "music",
    "films and television",
    "history",
    "space and astronomy",
    "computer programming",
    "job interviews",
    "studying for exams",
    "friendship",
    "the weather",
    "sports",
    "healthy sleep",
    "shopping",
    "art and painting",
    "cars and driving",
    "books and reading",
    "the environment",
)
"""The 24 topics an R4 call draws from (one per call, seeded)."""

_QUESTION = re.compile(r"^\s*[*_]*\s*(user|question)\s*[*_]*\s*:\s*[*_]*\s*(.*)$", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*[*_]*\s*(assistant|answer)\s*[*_]*\s*:\s*[*_]*\s*(.*)$", re.IGNORECASE)


def clean_reply(text: str | None, fallback: str, **fields: str) -> tuple[str, bool]:
    """The stripped reply, or ``fallback`` with ``{name}`` filled from ``fields`` when the reply is empty.

    Args:
        text: the LLM reply (``None`` counts as empty).
        fallback: the purpose's fallback text.
        **fields: values of the fallback's placeholders (``concept``, ``rule``, ``instruction``).

    Returns:
        ``(text, is_fallback)``.
    """
    cleaned = (text or "").strip()
    if cleaned:
        return cleaned, False
    out = fallback
    for name, value in fields.items():
        out = out.replace("{" + name + "}", str(value))
    return out, True


def parse_examples(text: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of an R4 reply.

    Only labelled lines count: a line starting ``User:`` or ``Question:`` opens a question, the next line starting
    ``Assistant:`` or ``Answer:`` gives its answer (labels are case-insensitive and may carry Markdown emphasis).
    Every other line (numbering, titles, remarks, a second line of an answer) is ignored, as are an answer without
    a question, a question without an answer and empty texts.
    """
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for line in text.splitlines():
        q, a = _QUESTION.match(line), _ANSWER.match(line)
        if q:
            question = q.group(2).strip() or None
        elif a:
            answer = a.group(2).strip()
            if question and answer:
                pairs.append((question, answer))
            question = None
    return pairs
