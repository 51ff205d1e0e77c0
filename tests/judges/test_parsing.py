"""Judge reply parsing, protocol §5.5 and §10.3 (every listed case)."""

from __future__ import annotations

import pytest

from axbench_kedro.judges.parsing import PARSE_RULE, parse_rating


@pytest.mark.parametrize(
    ("reply", "rating", "ok"),
    [
        ("The fragment talks about rentals.\nRating: [[2]]", 2.0, True),
        ("Rating: [[1.5]].", 1.5, True),
        ("**Rating:** [[2]]", 2.0, True),
        ("**Rating: [[2]]**", 2.0, True),
        ("Rating: [[3]]", 0.0, False),
        ("Rating: 2/2", 0.0, False),
        ("I would give it a two.", 0.0, False),
        ("Rating: [[0]] first thought ... final Rating: [[2]]", 2.0, True),
        ("Rating: [[2]] because it is clear", 0.0, False),
        ('Rating: *"2"*', 0.0, False),
        ("Rating: [[0]]", 0.0, True),
        ("Rating: [[-1]]", 0.0, False),
        ("Rating: [[nan]]", 0.0, False),  # §10.3 / [D 29]: NaN parses as a float; 0, counted
        ("Rating: [[NaN]].", 0.0, False),
        ("Rating: [[inf]]", 0.0, False),
        ("Rating: [[-inf]]", 0.0, False),
        ("Rating: [[Infinity]]", 0.0, False),
        ("Rating:\n[[1]]\nmore text", 1.0, True),
        ("", 0.0, False),
        (None, 0.0, False),
    ],
)
def test_axbench_v1_rule(reply: str | None, rating: float, ok: bool) -> None:
    parsed = parse_rating(reply)
    assert parsed.rating == rating
    assert parsed.ok is ok


def test_rule_version_string() -> None:
    assert PARSE_RULE == "axbench-v1"
