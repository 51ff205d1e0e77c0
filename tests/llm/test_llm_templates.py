"""Prompt templates: placeholder substitution, braces left alone, SHA-256, file loading."""

from __future__ import annotations

import hashlib

import pytest

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.paths import project_root
from axbench_kedro.llm.templates import PromptTemplate, default_prompts_dir, load_template


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


def test_load_template_from_folder(tmp_path):
    (tmp_path / "g1_genre.txt").write_text("Genre of {concept}?\n", encoding="utf-8")
    t = load_template("g1_genre", prompts_dir=tmp_path)
    assert (t.name, t.text, t.fields) == ("g1_genre", "Genre of {concept}?", ("concept",))
    assert load_template("g1_genre.txt", prompts_dir=tmp_path) == t


def test_load_template_errors_name_the_file(tmp_path):
    (tmp_path / "j1.txt").write_text("x", encoding="utf-8")
    with pytest.raises(AxbenchConfigError, match=r"missing\.txt.*\['j1'\]"):
        load_template("missing", prompts_dir=tmp_path)
    with pytest.raises(AxbenchConfigError, match="plain file stem"):
        load_template("../secrets", prompts_dir=tmp_path)


def test_default_prompts_dir(monkeypatch, tmp_path):
    assert default_prompts_dir() == project_root() / "conf" / "base" / "prompts"
    assert (project_root() / "conf" / "base").is_dir()
    monkeypatch.setenv("AXBENCH_PROMPTS_DIR", str(tmp_path))
    (tmp_path / "p1.txt").write_text("Write about {concept}.", encoding="utf-8")
    assert load_template("p1").render(concept="cats") == "Write about cats."


def test_project_templates_load():
    folder = project_root() / "conf" / "base" / "prompts"
    for path in sorted(folder.glob("*.txt")):
        t = load_template(path.stem)
        assert t.text and len(t.sha256) == 64
        rendered = t.render(**{name: f"<{name}>" for name in t.fields})
        assert all(f"<{name}>" in rendered for name in t.fields)
