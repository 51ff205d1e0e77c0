"""Parsing of the G1–G7 replies (protocol §2.7, §10.4) and truncation to T tokens (§10.5)."""

from __future__ import annotations

import pytest

from axbench_kedro.datagen.parsing import (
    clean_contrast_response,
    clean_response,
    is_distinct,
    parse_genres,
    parse_other_meaning,
    parse_related_words,
    truncate_to_tokens,
)


@pytest.mark.parametrize(
    ("reply", "genres"),
    [
        ("Code", ["code"]),  # §10.4
        ("<NONE>", ["text"]),  # §10.4
        ("Math and code", ["code", "math"]),  # §10.4: order text, code, math; [0] = code is used
        ("", ["text"]),  # §10.4
        (None, ["text"]),
        ("MATH", ["math"]),
        ("  tExT \n", ["text"]),
        ("Genre: Math, Text", ["text", "math"]),
        ("none of these", ["text"]),
        ("Poetry", ["text"]),  # nothing recognised → text
        ("Code, but also none", ["text"]),  # any `none` wins
    ],
)
def test_genre_parsing(reply, genres):
    assert parse_genres(reply) == genres


def test_related_words_split_strip_drop_empty():
    assert parse_related_words("  rent \n\nlease\n  car hire  \n") == ["rent", "lease", "car hire"]


@pytest.mark.parametrize("reply", ["<NONE>", " <none> \n", "<NONE>\n", ""])
def test_related_words_none_reply_gives_no_words(reply):
    assert parse_related_words(reply) == []


def test_related_words_cap_keeps_the_first():
    reply = "\n".join(f"w{i}" for i in range(14))
    assert parse_related_words(reply, max_words=10) == [f"w{i}" for i in range(10)]
    assert parse_related_words(reply, max_words=0) == []


@pytest.mark.parametrize(
    ("reply", "meaning"),
    [
        ("<NONE>", None),  # §10.4
        ("riverbank", None),  # §10.4: one word
        ("the edge of a river", "the edge of a river"),  # §10.4
        ("  the edge of a river \n", "the edge of a river"),
        ("", None),
        (None, None),
        ("None that I know of", None),
        ("a phenomenon", "a phenomenon"),  # contains 'none'? no: 'phenomenon' has no 'none'
        ("nonetheless a meaning", None),  # substring rule: 'none' anywhere drops
    ],
)
def test_other_meaning(reply, meaning):
    assert parse_other_meaning(reply) == meaning


@pytest.mark.parametrize(
    ("reply", "keep"),
    [
        ("Reasoning…\nAnswer: <NO>… Final Answer: <YES>", True),  # §10.4
        ("Answer: <NO>", False),  # §10.4
        ("They overlap. Answer: <NO>\nThey do not. Answer: <yes>", True),
        ("Answer: <YES> ... on reflection, Answer: <NO>", False),
        ("", False),
        (None, False),
        ("Yes, they share nothing.", True),  # no Answer marker: the whole reply is the tail
    ],
)
def test_distinctness_reads_after_the_last_answer(reply, keep):
    assert is_distinct(reply) is keep


def test_response_cleaning():
    assert clean_response('  "Sure, here it is."  ') == "Sure, here it is."
    assert clean_response("'quoted'\n") == "quoted"
    assert clean_response(None) == ""
    assert (
        clean_contrast_response("<FINAL> The bank of the river was muddy.")
        == "The bank of the river was muddy"
    )
    assert clean_contrast_response("<FINAL><answer>  'Text here...' ") == "Text here"
    assert clean_contrast_response("No tag. <FINAL> later") == "No tag. <FINAL> later"
    assert clean_contrast_response("") == ""


def test_truncation_keeps_exactly_t_tokens(tiny_gemma3):
    tok = tiny_gemma3.tokenizer
    words = ("the cat and the dog play with a ball in the house " * 20).split()[:200]
    reply = " ".join(words)
    assert len(tok(reply, add_special_tokens=False)["input_ids"]) == 200
    kept = truncate_to_tokens(tok, reply, 128)  # §10.5
    ids = tok(kept, add_special_tokens=False)["input_ids"]
    assert len(ids) == 128
    assert ids == tok(reply, add_special_tokens=False)["input_ids"][:128]
    short = "the cat"
    assert truncate_to_tokens(tok, short, 128) == short  # shorter replies are unchanged
