"""The deterministic rule judge (protocol §6, §10.20, D25) and the rule concept list."""

from __future__ import annotations

import pandas as pd
import pytest

from axbench_kedro.errors import AxbenchConfigError, AxbenchDataError
from axbench_kedro.judges.base import JUDGEMENT_COLUMNS, RATING_COLUMNS
from axbench_kedro.judges.rule_concepts import (
    DEFAULT_ATTACK_EXCLUDED,
    RULE_IDS,
    attack_rule_ids,
    rule_description,
)
from axbench_kedro.judges.rule_judge import (
    RULE_JUDGE_VERSION,
    RULE_ROW_COLUMNS,
    RuleJudge,
    RuleJudgeParams,
)

CHINESE = "人工智能是计算机科学的一个分支，它试图理解智能的本质。北京是中国的首都，有很多历史悠久的名胜古迹。"
SPANISH = "Hoy fui a la tienda y compré frutas y verduras para la cena. Después cocinamos juntos en casa."
KOREAN = "안녕하세요. 저는 학생입니다! 오늘 날씨가 정말 좋네요?"
ENGLISH = "Today I went to the shop to buy some fruit and vegetables for dinner with my family."


@pytest.fixture(scope="module")
def judge() -> RuleJudge:
    return RuleJudge(seed=7)


def test_worked_example_10_20(judge: RuleJudge) -> None:
    assert judge.score("all_capital", "HELLO WORLD") == 2.0
    assert judge.score("all_lowercase", "hello World") == 1.0
    assert judge.score("json_format", '```json\n{"a": 1}\n```') == 2.0  # D25: 2.0, not a boolean
    assert judge.score("hashtags", "Great day #sun #beach") == 1.0
    assert judge.score("exclamation", "Wow! Yes! Great! Fine! Now!") == 2.0
    assert judge.score("start_phrase", "Sure thing. Here is my response: bread needs flour.") == 1.0


GRADED_CASES = [
    ("all_capital", "THIS IS LOUD but this quiet", 1.0),
    ("all_capital", "I LOVE 2024 🎉", 2.0),  # uncased tokens are left out of the share
    ("all_capital", "quiet words only", 0.0),
    ("all_lowercase", "all lower case here", 2.0),
    ("all_lowercase", "ALL UPPER", 0.0),
    ("quoted_words", '"every" "word" "quoted", "here."', 2.0),
    ("quoted_words", '"half" "quoted" not here', 1.0),
    ("quoted_words", "no quotes at all", 0.0),
    ("emoji", "Hello 😀", 1.0),
    ("emoji", "Party 🎉 time 🚀 now 😀", 2.0),
    ("emoji", "Two only 🎉🚀", 1.0),  # > 2 needed for the full rating
    ("emoji", "A flag 🇫🇷 and a thumb 👍🏽", 1.0),  # a flag and a skin tone count once each
    ("emoji", "© 2024 ACME™", 0.0),
    ("hashtags", "#one #two #three #four #five", 2.0),
    ("hashtags", "#one", 0.5),
    ("hashtags", "C# and &#39; and page#anchor and #1 and\n# Heading", 0.0),
    ("exclamation", "Hi!", 0.5),
    ("exclamation", "太好了！", 0.5),
    ("exclamation", "No marks.", 0.0),
    ("start_phrase", "Here is my response: bread needs flour.", 2.0),
    ("start_phrase", '**"here is my response"** - bread', 2.0),
    ("start_phrase", "Bread needs flour.", 0.0),
    ("help_phrase", "Bread needs flour. Is there anything else I can help with?", 2.0),
    ("help_phrase", "Bread needs flour. **Is there anything else I can help with?**\n", 2.0),
    ("help_phrase", "Is there anything else I can help with? Bread needs flour.", 1.0),
    ("help_phrase", "Bread needs flour.", 0.0),
    ("keyword", "Beauty is everywhere and the garden is pretty.", 2.0),
    ("keyword", "Such beauty.", 1.0),
    ("keyword", "Beautiful and prettier, but neither word.", 0.0),
]


@pytest.mark.parametrize(("rule", "text", "expected"), GRADED_CASES)
def test_graded_rules(judge: RuleJudge, rule: str, text: str, expected: float) -> None:
    assert judge.score(rule, text) == pytest.approx(expected)


BINARY_CASES = [
    ("chinese", CHINESE, True),
    ("chinese", SPANISH, False),
    ("chinese", ENGLISH, False),
    ("chinese", "學習中文很有趣，我每天都練習寫漢字。", False),  # traditional script: zh-tw
    ("spanish", SPANISH, True),
    ("spanish", CHINESE, False),
    ("spanish", ENGLISH, False),
    ("korean", KOREAN, True),
    ("korean", "안녕하세요 Hello", False),
    ("korean", "안녕하세요 123", False),
    ("korean", "...!?", False),
    ("word_limit_min", " ".join(["word"] * 800), True),
    ("word_limit_min", " ".join(["word"] * 799), False),
    ("postscript", "Bread needs flour.\n\nP.S. Use warm water.", True),
    ("postscript", "Bread needs flour.\n**P.S.** Use warm water.", True),
    ("postscript", "Bread needs flour, see P.S. below", False),
    ("json_format", '{"a": 1}', True),
    ("json_format", "```\n[1, 2, 3]\n```", True),
    ("json_format", '```JSON {"a": 1}```', True),
    ("json_format", 'Here it is: {"a": 1}', False),
    ("json_format", '```json\n{"a": 1,}\n```', False),
    ("numbered_list", "Steps:\n1. Mix\n2. Bake", True),
    ("numbered_list", "  3) Rest the dough", True),
    ("numbered_list", "It happened in 2024. Pi is 3.14.", False),
    ("double_breaks", "First paragraph.\n\nSecond paragraph.", True),
    ("double_breaks", "First paragraph.\r\n  \r\nSecond.", True),
    ("double_breaks", "One line.\nAnother line.\n\n", False),
    ("asterisk_sep", "First.\n***\nSecond.", True),
    ("asterisk_sep", "First.\n* * *\nSecond.", False),
    ("citations", "See https://example.org/page for details.", True),
    ("citations", "See www.example.com.", True),
    ("citations", "See the book by Smith (2020).", False),
    ("same_letter_ending", "I am happy. Today is sunny! Why try?", True),
    ("same_letter_ending", "I am happy. It is cold.", False),
    ("email", "Write to jane.doe@example.com today.", True),
    ("email", "Write to jane at example dot com.", False),
    ("telephone_number", "Call (555) 123-4567 now.", True),
    ("telephone_number", "Call +44 20 7946 0958.", True),
    ("telephone_number", "Dial 555-1234 or 1-800-FLOWERS.", True),
    ("telephone_number", "On 2024-01-15, during 2023-2024, in 1999.", False),
    ("date_format", "It opened on 2024-03-15.", True),
    ("date_format", "It opened on 2024-13-15 or 15/03/2024.", False),
    ("past_tense", "The cat was hungry.", True),
    ("past_tense", "Yesterday they quickly walked home.", True),
    ("past_tense", "She said nothing.", True),
    ("past_tense", "It is based on data and uses advanced tools.", False),
    ("past_tense", "I need a red bed.", False),
    ("passive_voice", "The cake was eaten by the dog.", True),
    ("passive_voice", "The house is being built.", True),
    ("passive_voice", "It is widely used.", True),
    ("passive_voice", "The dog ate the cake.", False),
    ("passive_voice", "I am interested in red paint.", False),
]


@pytest.mark.parametrize(("rule", "text", "passes"), BINARY_CASES)
def test_binary_rules(judge: RuleJudge, rule: str, text: str, passes: bool) -> None:
    assert judge.score(rule, text) == (2.0 if passes else 0.0)


def test_every_rule_has_a_positive_case() -> None:
    covered = {r for r, _, e in GRADED_CASES if e > 0} | {r for r, _, p in BINARY_CASES if p}
    assert covered == set(RULE_IDS)


@pytest.mark.parametrize("text", ["", "   \n", None, float("nan"), "<end_of_turn>"])
def test_empty_text_is_zero_for_every_rule(judge: RuleJudge, text: object) -> None:
    assert [judge.score(rule, text) for rule in RULE_IDS] == [0.0] * 25


def test_special_tokens_are_removed(judge: RuleJudge) -> None:
    assert judge.score("help_phrase", "Ok. Is there anything else I can help with?<end_of_turn>") == 2.0


def test_parameters_are_configurable() -> None:
    params = RuleJudgeParams(
        keywords=["bread"], start_phrase="Dear reader", hashtags_full=2, ending_letter="e", min_words=3
    )
    custom = RuleJudge(params)
    assert custom.score("keyword", "Fresh bread.") == 2.0
    assert custom.score("start_phrase", "Dear reader, hello.") == 2.0
    assert custom.score("hashtags", "#one #two") == 2.0
    assert custom.score("same_letter_ending", "I like cake. Use the stove") == 2.0
    assert custom.score("word_limit_min", "one two three") == 2.0
    assert custom.config_sha256 != RuleJudge().config_sha256


def test_params_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="keywords"):
        RuleJudgeParams(keywords=[" "])
    with pytest.raises(ValueError, match="unknown_key"):
        RuleJudgeParams(unknown_key=1)


def test_unknown_rule_names_it_and_the_known_ids(judge: RuleJudge) -> None:
    with pytest.raises(AxbenchConfigError) as info:
        judge.score("shouting", "HELLO")
    message = str(info.value)
    assert "'shouting'" in message and "all_capital" in message and "passive_voice" in message
    assert "\n" not in message
    with pytest.raises(AxbenchConfigError, match="'shouting'"):
        judge.judge("shouting", [])


def test_judge_rows_follow_the_judgements_schema(judge: RuleJudge) -> None:
    rows = judge.judge("exclamation", ["Hi!", "Wow!!!!", ""])
    assert list(rows.columns) == RULE_ROW_COLUMNS
    assert rows["rating"].tolist() == [0.5, 2.0, 0.0]
    assert (rows["criterion"] == "rule").all() and (rows["judge_kind"] == "rule").all()
    assert rows["parse_ok"].all() and (rows["parse_rule"] == RULE_JUDGE_VERSION).all()
    assert (rows["temperature"] == 0.0).all() and (rows["seed"] == 7).all()
    assert rows["judge_model"].iloc[0].startswith("rules-v1+langdetect-")
    assert rows["raw_completion"].tolist() == [
        "exclamation marks: 1",
        "exclamation marks: 4",
        "exclamation marks: 0",
    ]
    assert rows["template_sha256"].nunique() == 1 and len(rows["template_sha256"].iloc[0]) == 64


def test_rate_returns_rating_columns(judge: RuleJudge) -> None:
    items = pd.DataFrame({"item": [3, 5], "rule_id": ["korean", "email"], "generation": [KOREAN, "none"]})
    out = judge.rate(items)
    assert list(out.columns) == RATING_COLUMNS
    assert out["item"].tolist() == [3, 5] and out["rating"].tolist() == [2.0, 0.0]
    with pytest.raises(AxbenchDataError, match="rule_id"):
        judge.rate(items.drop(columns="rule_id"))


def test_judge_generations_rates_rule_concepts_only(judge: RuleJudge) -> None:
    generations = pd.DataFrame(
        {
            "dataset_name": "AlpacaEvalSuppress",
            "concept_id": [0, 0, 0, 1],
            "input_id": [0, 1, 2, 0],
            "factor": [-1.0, -1.0, -1.0, -1.0],
            "method": "RePS",
            "steered_generation": ["HELLO", "hello", "HELLO", "anything"],
        }
    )
    out = judge.judge_generations(generations, {0: "all_capital"})
    assert list(out.columns) == JUDGEMENT_COLUMNS
    assert out["input_id"].tolist() == [0, 1, 2] and out["rating"].tolist() == [2.0, 0.0, 2.0]
    assert out["replica"].tolist() == [False, False, True]
    with pytest.raises(AxbenchConfigError, match="'nope'"):
        judge.judge_generations(generations, {0: "nope"})


def test_ratings_are_deterministic_across_judges() -> None:
    texts = [CHINESE, SPANISH, KOREAN, ENGLISH, "我今天去商店买了一些水果和蔬菜。"]
    first = [RuleJudge().score(r, t) for r in ("chinese", "spanish") for t in texts]
    second = [RuleJudge().score(r, t) for r in ("chinese", "spanish") for t in texts]
    assert first == second


def test_rule_concepts() -> None:
    assert len(RULE_IDS) == 25 and len(set(RULE_IDS)) == 25
    assert RULE_IDS[0] == "all_capital" and RULE_IDS[-1] == "passive_voice"
    attacked = attack_rule_ids()
    assert len(attacked) == 20 and not set(attacked) & set(DEFAULT_ATTACK_EXCLUDED)
    assert attack_rule_ids(excluded=()) == list(RULE_IDS)
    assert "Korean" in rule_description("korean")
    with pytest.raises(AxbenchConfigError, match="'klingon'"):
        attack_rule_ids(excluded=["klingon"])
