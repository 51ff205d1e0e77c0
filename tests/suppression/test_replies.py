"""R1–R3 reply cleaning with the avoidance fallbacks [D 18] and R4 example parsing (protocol §6)."""

from __future__ import annotations

from axbench_kedro.config.steering_eval import DEFAULT_PROMPT_FALLBACK
from axbench_kedro.suppression.multishot import _label_tail, call_topic
from axbench_kedro.suppression.replies import (
    AVOID_CONCEPT_FALLBACK,
    AVOID_RULE_FALLBACK,
    REWRITE_FALLBACK,
    TOPICS,
    clean_reply,
    parse_examples,
)


def test_replies_are_stripped_and_empty_ones_take_the_purposes_fallback() -> None:
    assert clean_reply("  Avoid cats.\n", AVOID_CONCEPT_FALLBACK, concept="cats") == ("Avoid cats.", False)
    text, flagged = clean_reply(" \n ", AVOID_CONCEPT_FALLBACK, concept="rental services")
    assert flagged and text == AVOID_CONCEPT_FALLBACK.replace("{concept}", "rental services")
    assert text.startswith("Do not mention") and text != DEFAULT_PROMPT_FALLBACK.replace(
        "{concept}", "rental services"
    )
    text, flagged = clean_reply(None, AVOID_RULE_FALLBACK, rule="Write in capitals.")
    assert flagged and "Do not follow this rule" in text and "Write in capitals." in text
    # R1's fallback is the raw instruction: a fallback never asks for the concept
    assert clean_reply("", REWRITE_FALLBACK, instruction="Name a fruit.") == ("Name a fruit.", True)


def test_r4_parsing_reads_both_label_styles_and_ignores_junk() -> None:
    reply = "\n".join(
        [
            "Here are your examples:",
            "1.",
            "User: What is rain?",
            "Assistant: WATER FALLING FROM CLOUDS!",
            "",
            "Question: Why is the sky blue?",
            "Answer: BECAUSE OF SCATTERING.",
            "a stray remark after the answer",
            "**User:** Name a dog breed.",
            "**Assistant:** BEAGLE.",
            "Assistant: an answer without a question",
            "User: a question with no answer",
            "User: Empty answer?",
            "Answer:   ",
            "user: lower-case label?",
            "ANSWER: YES.",
        ]
    )
    assert parse_examples(reply) == [
        ("What is rain?", "WATER FALLING FROM CLOUDS!"),
        ("Why is the sky blue?", "BECAUSE OF SCATTERING."),
        ("Name a dog breed.", "BEAGLE."),
        ("lower-case label?", "YES."),
    ]
    assert parse_examples("no labels at all\njust text") == []


def test_topics_and_seeded_topic_draws() -> None:
    assert len(TOPICS) == 24 and len(set(TOPICS)) == 24
    draws = [call_topic(0, "all_capital", k) for k in range(50)]
    assert draws == [call_topic(0, "all_capital", k) for k in range(50)]  # seeded
    assert set(draws) <= set(TOPICS) and len(set(draws)) > 5  # random across calls
    assert draws != [call_topic(1, "all_capital", k) for k in range(50)]


def test_a_bare_question_label_at_the_end_of_a_base_prompt_is_put_back() -> None:
    assert _label_tail("Examples follow.\n\nUser:") == "User: "
    assert _label_tail("Examples follow.\n\nUser: hi") == ""
    assert parse_examples(_label_tail("x\nUser:") + " How old is the moon?\nAssistant: OLD.") == [
        ("How old is the moon?", "OLD.")
    ]
