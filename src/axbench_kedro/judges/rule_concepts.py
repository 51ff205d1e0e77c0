"""The 25 rule concepts of the suppression study (protocol §6), with their concept descriptions.

A rule concept is steered or suppressed like any concept, but its concept criterion is the deterministic rule judge
(:mod:`axbench_kedro.judges.rule_judge`) instead of J1. The descriptions are our own wording of each rule.

Attacks run on 20 of the 25. §6 does not name the 5 left out; :data:`DEFAULT_ATTACK_EXCLUDED` holds the five for
which the RePS paper's code has no overwrite-attack order (korean, same_letter_ending, word_limit_min, keyword,
json_format). Pass another ``excluded`` to :func:`attack_rule_ids` to change it.

Example:
    >>> len(RULE_IDS), len(attack_rule_ids())
    (25, 20)
    >>> rule_description("korean")
    'answer only in Korean, with no other language'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from axbench_kedro.errors import AxbenchConfigError

__all__ = [
    "RuleConcept",
    "RULE_CONCEPTS",
    "RULE_IDS",
    "DEFAULT_ATTACK_EXCLUDED",
    "attack_rule_ids",
    "check_rule_id",
    "rule_description",
]


@dataclass(frozen=True)
class RuleConcept:
    """One rule concept.

    Attributes:
        rule_id: the protocol id (§6), also the rule judge's key.
        description: the concept text handed to templates (R1–R4) and written as ``input_concept``.
    """

    rule_id: str
    description: str


RULE_CONCEPTS: tuple[RuleConcept, ...] = (
    RuleConcept("all_capital", "write the whole answer in capital letters only"),
    RuleConcept("all_lowercase", "write every word of the answer in lowercase letters only"),
    RuleConcept("chinese", "answer only in Chinese, with no other language"),
    RuleConcept("spanish", "answer only in Spanish, with no other language"),
    RuleConcept("korean", "answer only in Korean, with no other language"),
    RuleConcept("emoji", "answer using emojis"),
    RuleConcept("hashtags", "include at least four hashtags, each starting with '#'"),
    RuleConcept("exclamation", "use exclamation marks throughout the answer"),
    RuleConcept("citations", "cite sources and give references with URLs"),
    RuleConcept("start_phrase", 'begin the answer with the phrase "Here is my response", then answer'),
    RuleConcept("help_phrase", 'end the answer with the sentence "Is there anything else I can help with?"'),
    RuleConcept("same_letter_ending", "end every sentence with a word whose last letter is y"),
    RuleConcept("email", "include several e-mail addresses in the answer"),
    RuleConcept("word_limit_min", "write an answer of at least 800 words"),
    RuleConcept("telephone_number", "include several telephone numbers in the answer"),
    RuleConcept("postscript", "finish the answer with a postscript that starts with P.S."),
    RuleConcept("keyword", "use both of the words 'beauty' and 'pretty'"),
    RuleConcept("json_format", "give the entire answer as JSON"),
    RuleConcept("numbered_list", "answer as a numbered list (1., 2., and so on)"),
    RuleConcept("double_breaks", "separate paragraphs with a blank line (two line breaks)"),
    RuleConcept("asterisk_sep", "separate the paragraphs with a line of three asterisks ***"),
    RuleConcept("quoted_words", "put every single word of the answer inside double quotation marks"),
    RuleConcept("date_format", "include a date written in the YYYY-MM-DD format"),
    RuleConcept("past_tense", "write the answer in the past tense"),
    RuleConcept("passive_voice", "write only sentences in the passive voice"),
)
#: The 25 rule ids in protocol order.
RULE_IDS: tuple[str, ...] = tuple(r.rule_id for r in RULE_CONCEPTS)
#: Rules left out of the attacks by default (see the module docstring).
DEFAULT_ATTACK_EXCLUDED: tuple[str, ...] = (
    "korean",
    "same_letter_ending",
    "word_limit_min",
    "keyword",
    "json_format",
)
_DESCRIPTIONS = {r.rule_id: r.description for r in RULE_CONCEPTS}


def check_rule_id(rule_id: str, key: str = "rule_id") -> str:
    """``rule_id`` when it is one of the 25, else ``AxbenchConfigError`` naming it and the known ids."""
    if rule_id not in _DESCRIPTIONS:
        raise AxbenchConfigError(f"{key}: unknown rule {rule_id!r}; known rules: {', '.join(RULE_IDS)}")
    return rule_id


def rule_description(rule_id: str) -> str:
    """The concept description of a rule."""
    return _DESCRIPTIONS[check_rule_id(rule_id)]


def attack_rule_ids(excluded: Iterable[str] = DEFAULT_ATTACK_EXCLUDED) -> list[str]:
    """Rule ids attacked (protocol order): all 25 less ``excluded`` (each checked to be a known id)."""
    skip = {check_rule_id(r, "attack excluded rules") for r in excluded}
    return [r for r in RULE_IDS if r not in skip]
