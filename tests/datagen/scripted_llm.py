"""Scripted generator replies for datagen tests, keyed on which chat template a request was rendered from.

Three concepts with known answers:

* ``references to cats and pets``: genre ``Text``; words kitten / jaguar / tabby → ``<NONE>`` (dropped),
  "a brand of luxury cars" (kept, distinct), "silk" (one word, dropped) → 1 hard negative (jaguar).
* ``Python list comprehensions``: genre ``Code``; related words ``<NONE>`` → no hard negatives.
* ``percentages and discounts``: genre ``MATH`` (mixed case); words discount / rate / share → all meanings
  kept; distinctness YES (after a NO), NO, YES → 2 hard negatives (discount, share).

Responses: G5 = 40 vocabulary words (longer than T), G6 = a short plain answer, G7 = ``<FINAL>`` + text.
Other concepts get genre ``Text`` and no related words.
"""

from __future__ import annotations

import re
from typing import Any

from axbench_kedro.datagen.prompts import KINDS, DatagenPrompts
from fixtures.project_catalog import project_prompt_templates

__all__ = ["CONCEPTS", "EXPECTED_PAIRS", "ScriptedGenerator", "LONG_ANSWER"]

CONCEPTS = ["references to cats and pets", "Python list comprehensions", "percentages and discounts"]
EXPECTED_PAIRS = {
    0: [("jaguar", "a brand of luxury cars")],
    1: [],
    2: [
        ("discount", "to ignore an idea as not worth much"),
        ("share", "to give part of what you have to others"),
    ],
}
GENRE_REPLY = {CONCEPTS[0]: "Text", CONCEPTS[1]: "Code", CONCEPTS[2]: "MATH"}
WORDS_REPLY = {
    CONCEPTS[0]: "kitten\njaguar\ntabby\n",
    CONCEPTS[1]: "<NONE>",
    CONCEPTS[2]: "discount\nrate\n\nshare",
}
MEANING_REPLY = {
    "kitten": "<NONE>",
    "jaguar": "a brand of luxury cars",
    "tabby": "silk",
    "discount": "to ignore an idea as not worth much",
    "rate": "how fast something happens",
    "share": "to give part of what you have to others",
}
DISTINCT_REPLY = {
    "a brand of luxury cars": "Cars are machines, cats are animals.\nAnswer: <YES>",
    "to ignore an idea as not worth much": "Answer: <NO> at first glance, but on reflection.\nFinal Answer: <YES>",
    "how fast something happens": "A percentage can be a rate.\nAnswer: <NO>",
    "to give part of what you have to others": "Sharing is not about numbers.\nAnswer: <yes>",
}
# 40 words of the tiny tokenizer's vocabulary: longer than any T used in the tests.
LONG_ANSWER = (
    "the cat is a good friend and the dog is a good friend too so we play with the cat and the dog "
    "every day at home after school and before night when the sun is low"
)


class ScriptedGenerator:
    """``reply_fn`` for :class:`FakeOpenAIServer`: identifies the template by its fixed opening text.

    Attributes:
        calls: number of requests answered per template kind.
    """

    def __init__(self) -> None:
        prompts = DatagenPrompts("chat", templates=project_prompt_templates())
        self.heads = {kind: prompts.templates[kind].text.split("{")[0] for kind in KINDS}
        self.calls: dict[str, int] = dict.fromkeys(KINDS, 0)

    def kind_of(self, content: str) -> str:
        matches = [kind for kind, head in self.heads.items() if content.startswith(head)]
        assert len(matches) == 1, f"cannot tell the template of: {content[:80]!r}"
        return matches[0]

    def __call__(self, body: dict[str, Any]) -> str | dict[str, Any]:
        content = body["messages"][-1]["content"]
        kind = self.kind_of(content)
        self.calls[kind] += 1
        concept = next((c for c in CONCEPTS if c in content), None)
        if kind == "genre":
            return GENRE_REPLY.get(concept, "Text")
        if kind == "related_words":
            return WORDS_REPLY.get(concept, "<NONE>")
        if kind == "other_meaning":
            word = re.search(r'The word "([^"]+)"', content).group(1)
            return MEANING_REPLY[word]
        if kind == "distinct":
            meaning = re.search(r"A: (.*)\n", content).group(1)
            return DISTINCT_REPLY[meaning]
        if kind == "with_concept":
            return f'"{LONG_ANSWER}"'
        if kind == "without_concept":
            return " a plain and simple answer . "
        word = re.search(r'use the word "([^"]+)"', content).group(1)
        return f"<FINAL> so the {word} is here in the middle of the answer ."
