"""The target model's own answers (§2.4.1): F-prompt by default, or a completion-style template for base models."""

from __future__ import annotations

import pytest

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.greedy import cut_completion, greedy_answers
from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.generation import generate_greedy

TEMPLATES = {
    "plain_answer": "Answers to questions.\n\nQuestion: {instruction}\nAnswer:",
    "no_field": "Answer anything.",
}


def _params(**kw) -> DatagenParams:
    return DatagenParams(output_length=4, target_batch_size=2, **kw)


def test_cut_completion_stops_at_the_next_question_or_blank_line():
    assert cut_completion("  Tea is brewed.\nQuestion: why?") == "Tea is brewed."
    assert cut_completion("one\ntwo\n\nthree") == "one\ntwo"
    assert cut_completion("no stop here") == "no stop here"


def test_default_pool_answers_continue_f_prompt(tiny_gemma3):
    answers = greedy_answers(tiny_gemma3, TEMPLATES, SQLiteCache(":memory:"), _params())
    assert answers.completion_template is None
    expected = generate_greedy(tiny_gemma3, [format_prompt(tiny_gemma3.tokenizer, "name a colour")], 6, 2)
    assert answers(["name a colour"]) == [expected[0].text]


def test_completion_template_answers_are_raw_continuations_cut_at_stops(tiny_gemma3):
    cache = SQLiteCache(":memory:")
    answers = greedy_answers(tiny_gemma3, TEMPLATES, cache, _params(pool_template="plain_answer"))
    prompt = answers.prompt("name a colour")
    assert prompt == "<bos>Answers to questions.\n\nQuestion: name a colour\nAnswer:"
    raw = generate_greedy(tiny_gemma3, [prompt], 6, 2)[0].text
    assert answers(["name a colour"]) == [cut_completion(raw)]
    # the raw text is what the cache holds: a rerun generates nothing and cuts the same way
    again = greedy_answers(tiny_gemma3, TEMPLATES, cache, _params(pool_template="plain_answer"))
    assert again(["name a colour"]) == [cut_completion(raw)] and again.generated == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing", "datagen.pool_template"), ("no_field", "has no {instruction} field")],
)
def test_bad_pool_template_is_one_line(tiny_gemma3, name, message):
    with pytest.raises(AxbenchConfigError, match="datagen.pool_template") as err:
        greedy_answers(tiny_gemma3, TEMPLATES, SQLiteCache(":memory:"), _params(pool_template=name))
    assert message in str(err.value) and "\n" not in str(err.value)
