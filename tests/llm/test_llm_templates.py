"""Prompt templates: placeholder substitution, braces left alone, SHA-256, the `prompt_templates` catalog dataset."""

from __future__ import annotations

import hashlib

import pytest

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.templates import PromptTemplate, load_templates, pick_template
from fixtures.project_catalog import ROOT, project_prompt_templates, templates_from_folder


def test_render_fills_only_identifier_placeholders():
    text = 'Concept: {concept}\nReply as JSON: {"rating": 2, "why": {"short": true}}\nCode: f(x) { return x; } {0} { }'
    t = PromptTemplate.from_text("demo", text)
    assert t.fields == ("concept",)
    out = t.render(concept="rental services")
    assert out == text.replace("{concept}", "rental services")


def test_escaped_placeholder_and_single_pass():
    t = PromptTemplate.from_text("demo", "Fill {{name}} with {value}; again {value}.")
    assert t.fields == ("value",)
    # a value that looks like a placeholder is not substituted again
    assert t.render(value="{value}") == "Fill {name} with {value}; again {value}."


def test_missing_field_is_a_clear_error_and_extra_values_are_ignored():
    t = PromptTemplate.from_text("judge_concept", "Concept {concept}; text {generation}.")
    with pytest.raises(AxbenchConfigError, match=r"judge_concept.*\['generation'\]"):
        t.render(concept="x")
    assert t.render(concept="x", generation="y", instruction="z") == "Concept x; text y."


def test_sha256_is_of_the_text():
    t = PromptTemplate.from_text("demo", "Hello {who}\n\n")
    assert t.text == "Hello {who}"
    assert t.sha256 == hashlib.sha256(b"Hello {who}").hexdigest()


def test_templates_come_from_the_catalog_dataset(tmp_path):
    (tmp_path / "g1_genre.txt").write_text("Genre of {concept}?\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("not a template", encoding="utf-8")
    entries = templates_from_folder(tmp_path)  # the project's PartitionedDataset entry, another folder
    assert sorted(entries) == ["g1_genre"] and callable(entries["g1_genre"])  # {name: loader}, .txt only
    t = pick_template(entries, "g1_genre", "some.key")
    assert (t.name, t.text, t.fields) == ("g1_genre", "Genre of {concept}?", ("concept",))
    assert pick_template(entries, "g1_genre.txt", "some.key") == t
    assert load_templates(entries) == {"g1_genre": t}
    assert (
        pick_template({"p1": "Write about {concept}.\n"}, "p1", "k").render(concept="cats")
        == "Write about cats."
    )


def test_missing_template_is_one_line_naming_the_key_and_known_templates(tmp_path):
    (tmp_path / "j1.txt").write_text("x", encoding="utf-8")
    with pytest.raises(AxbenchConfigError) as info:
        pick_template(templates_from_folder(tmp_path), "missing", "steering_eval.judge.templates.concept")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("steering_eval.judge.templates.concept: prompt template 'missing'")
    assert "prompt_templates" in message and "['j1']" in message


def test_project_templates_through_the_catalog_keep_their_sha256():
    entries = project_prompt_templates()
    folder = ROOT / "conf" / "base" / "prompts"
    files = sorted(folder.glob("*.txt"))
    assert sorted(entries) == [p.stem for p in files]
    for path in files:
        t = pick_template(entries, path.stem, "test")
        # what the former path-based loader stored: SHA-256 of the file text without trailing newlines
        before = path.read_text(encoding="utf-8").rstrip("\n")
        assert t.text == before and t.sha256 == hashlib.sha256(before.encode("utf-8")).hexdigest()
        rendered = t.render(**{name: f"<{name}>" for name in t.fields})
        assert all(f"<{name}>" in rendered for name in t.fields)


def test_windows_line_ends_read_as_newlines(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"Line {a}\r\nLine two\r\n")
    t = pick_template(templates_from_folder(tmp_path), "w", "k")
    assert t.text == "Line {a}\nLine two"
