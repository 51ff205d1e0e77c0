"""The G1–G7 templates in both styles: fields, request settings, base-style reply adapters."""

from __future__ import annotations

import pytest

from axbench_kedro.datagen.parsing import is_distinct, parse_genres, parse_related_words
from axbench_kedro.datagen.prompts import KINDS, REQUIRED_FIELDS, DatagenPrompts, template_name
from axbench_kedro.errors import AxbenchConfigError
from fixtures.project_catalog import project_prompt_templates, templates_from_folder


def _prompts(style: str, **kw) -> DatagenPrompts:
    return DatagenPrompts(style, templates=project_prompt_templates(), **kw)


@pytest.mark.parametrize("style", ["chat", "base"])
def test_templates_load_with_their_fields(style):
    prompts = _prompts(style)
    assert set(prompts.templates) == set(KINDS)
    for kind, template in prompts.templates.items():
        assert template.name == template_name(kind, style)
        assert set(template.fields) <= REQUIRED_FIELDS[kind]
        if style == "chat":
            assert set(template.fields) == REQUIRED_FIELDS[kind]
    assert len(set(prompts.hashes.values())) == len(KINDS)


def test_chat_templates_ask_for_the_protocol_output_formats():
    t = _prompts("chat").templates
    assert "<NONE>" in t["genre"].text and all(g in t["genre"].text for g in ("Text", "Code", "Math"))
    assert "<NONE>" in t["related_words"].text and "one word per line" in t["related_words"].text
    assert "<NONE>" in t["other_meaning"].text
    assert "Answer: <YES>" in t["distinct"].text and "Answer: <NO>" in t["distinct"].text
    assert "<FINAL>" in t["contrast"].text


def test_requests_carry_sampling_settings_and_style():
    chat = _prompts("chat", temperature=1.0)
    req = chat.request("with_concept", sample_index=3, instruction="Name a fruit", concept="cats")
    assert req.messages[0][0] == "user" and len(req.messages) == 1  # one user message, no system message
    assert "Name a fruit" in req.text and "cats" in req.text
    assert (req.temperature, req.max_tokens, req.sample_index, req.raw_prompt) == (1.0, None, 3, None)
    base = _prompts("base", temperature=0.7, top_p=0.9, response_max_tokens=40)
    req = base.request("without_concept", instruction="Name a fruit", concept="cats")
    assert req.raw_prompt is True and req.max_tokens == 40 and req.top_p == 0.9
    assert "cats" not in req.text  # the base template does not prime the concept it must avoid
    genre = base.request("genre", concept="cats")
    assert (
        genre.max_tokens == 4 and genre.temperature == 0.0 and genre.top_p is None
    )  # classification: greedy
    assert base.request("distinct", meaning="a b", concept="cats").temperature == 0.0
    assert chat.request("genre", concept="cats").temperature == 1.0  # chat style: protocol T for every call


def test_base_replies_are_cut_and_prefixed_for_the_protocol_parsers():
    base = _prompts("base")
    assert parse_genres(base.reply("genre", " Code\n\nTopic: x\nKind: Math")) == ["code"]
    words = base.reply("related_words", "\nwhiskers\nkitten\n\nTopic: dogs\nWords:\nbone")
    assert parse_related_words(words) == ["whiskers", "kitten"]
    assert is_distinct(base.reply("distinct", " <YES>\n\nA: x\nB: y\nAnswer: <NO>"))
    assert not is_distinct(base.reply("distinct", " <NO>\n\nA: x\nB: y\nAnswer: <YES>"))
    assert base.reply("with_concept", " Cats nap.\nThey purr.\n\nTopic: x") == "Cats nap.\nThey purr."
    assert base.reply("with_concept", " Cats nap.\nQuestion: next") == "Cats nap."
    assert _prompts("chat").reply("genre", "Code\nMath") == "Code\nMath"  # chat replies untouched


def test_bad_style_and_template_fields(tmp_path):
    with pytest.raises(AxbenchConfigError, match="prompt_style"):
        _prompts("instruct")
    for kind in KINDS:
        fields = " ".join("{" + f + "}" for f in sorted(REQUIRED_FIELDS[kind]))
        (tmp_path / f"{template_name(kind, 'chat')}.txt").write_text(f"x {fields}")
    (tmp_path / "gen_genre.txt").write_text("Classify {concept} for {audience}")
    with pytest.raises(AxbenchConfigError, match="gen_genre"):
        DatagenPrompts("chat", templates=templates_from_folder(tmp_path))
    (tmp_path / "gen_genre.txt").write_text("Classify it")
    with pytest.raises(AxbenchConfigError, match="gen_genre"):
        DatagenPrompts("chat", templates=templates_from_folder(tmp_path))
    # the base style's templates are not in that folder: one line naming the parameter and the known templates
    with pytest.raises(AxbenchConfigError) as info:
        DatagenPrompts("base", templates=templates_from_folder(tmp_path))
    message = str(info.value)
    assert "\n" not in message and message.startswith("datagen.prompt_style='base': prompt template 'gen_")
    assert "gen_contrast" in message and "known templates" in message
