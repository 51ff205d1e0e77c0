"""Prompt templates: text files with ``{identifier}`` placeholders, identified by the SHA-256 of their text.

The files reach nodes through the ``prompt_templates`` catalog dataset (``partitions.PartitionedDataset`` of
``text.TextDataset`` over ``conf/base/prompts``, ``{name: loader}``); :func:`pick_template` turns one entry into a
:class:`PromptTemplate`. Nothing here reads a file.

Only ``{identifier}`` (a Python identifier in single braces) is a placeholder, so code and JSON braces in a
template stay as written; ``{{identifier}}`` writes a literal ``{identifier}``. Substitution is one pass: a
filled-in value is never scanned for placeholders again.

Example:
    >>> t = PromptTemplate.from_text("demo", 'Rate {concept}. Reply as {"rating": N}.')
    >>> t.fields
    ('concept',)
    >>> t.render(concept="dogs")
    'Rate dogs. Reply as {"rating": N}.'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["PromptTemplate", "pick_template", "load_templates", "template_from_entry"]

# `{{name}}` (escaped, literal) or `{name}` (placeholder); other braces never match.
_TOKEN = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _fields_of(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for match in _TOKEN.finditer(text):
        if match.group(2) is not None:
            seen.setdefault(match.group(2), None)
    return tuple(seen)


@dataclass(frozen=True)
class PromptTemplate:
    """A named prompt template.

    Attributes:
        name: template name (file stem).
        text: template text (trailing newlines dropped).
        sha256: hex SHA-256 of ``text`` (UTF-8); store it with every output the template produced.
        fields: placeholder names in order of first appearance.
    """

    name: str
    text: str
    sha256: str
    fields: tuple[str, ...] = field(default=())

    @classmethod
    def from_text(cls, name: str, text: str) -> PromptTemplate:
        """Build a template from a string (trailing newlines dropped, like files)."""
        text = text.rstrip("\n")
        return cls(
            name=name,
            text=text,
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            fields=_fields_of(text),
        )

    def render(self, **values: object) -> str:
        """Fill every placeholder; values that name no placeholder are ignored (so one set of values can
        serve a chat template and its completion-style ``_base`` variant, which may use fewer fields).

        Raises:
            AxbenchConfigError: a placeholder has no value.
        """
        missing = [name for name in self.fields if name not in values]
        if missing:
            raise AxbenchConfigError(
                f"prompt template {self.name!r} needs field(s) {missing}; its fields are {list(self.fields)}"
            )

        def fill(match: re.Match[str]) -> str:
            if match.group(1) is not None:
                return "{" + match.group(1) + "}"
            return str(values[match.group(2)])

        return _TOKEN.sub(fill, self.text)


def _as_text(value: Any, name: str) -> str:
    """The text of one ``prompt_templates`` entry: a string, or a zero-argument loader (``PartitionedDataset``)."""
    if isinstance(value, PromptTemplate):
        return value.text
    if callable(value):
        value = value()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if not isinstance(value, str):
        raise AxbenchConfigError(
            f"prompt_templates: entry {name!r} loaded a {type(value).__name__}, expected text (text.TextDataset)"
        )
    return value.replace("\r\n", "\n")


def _stem(name: str) -> str:
    return name[:-4] if name.endswith(".txt") else name


def template_from_entry(name: str, value: Any) -> PromptTemplate:
    """One :class:`PromptTemplate` from a ``prompt_templates`` entry (a ``PromptTemplate`` passes unchanged)."""
    if isinstance(value, PromptTemplate):
        return value
    return PromptTemplate.from_text(_stem(name), _as_text(value, name))


def pick_template(prompt_templates: Mapping[str, Any], name: str, key: str) -> PromptTemplate:
    """The template ``name`` from the ``prompt_templates`` catalog dataset (only that entry is loaded).

    Args:
        prompt_templates: what the ``prompt_templates`` dataset loads, ``{name: loader}`` (a
            ``partitions.PartitionedDataset`` of ``text.TextDataset``); plain strings or ``PromptTemplate``
            values work too.
        name: template name (file stem, ``.txt`` optional).
        key: the parameter that named the template, for the error message.

    Raises:
        AxbenchConfigError: one line naming ``key``, the missing name and the known templates.
    """
    if not isinstance(prompt_templates, Mapping):
        raise AxbenchConfigError(
            f"{key}: the prompt_templates catalog dataset must load a mapping of template name to text, "
            f"got {type(prompt_templates).__name__}"
        )
    stem = _stem(str(name))
    entries = {_stem(str(k)): v for k, v in prompt_templates.items()}
    if stem not in entries:
        known = sorted(entries)
        raise AxbenchConfigError(
            f"{key}: prompt template {name!r} is not in the prompt_templates catalog dataset "
            f"(known templates: {known or 'none'})"
        )
    return template_from_entry(stem, entries[stem])


def load_templates(prompt_templates: Mapping[str, Any]) -> dict[str, PromptTemplate]:
    """Every entry of the ``prompt_templates`` catalog dataset as a :class:`PromptTemplate`, by name."""
    return {_stem(str(k)): template_from_entry(str(k), v) for k, v in sorted(prompt_templates.items())}
