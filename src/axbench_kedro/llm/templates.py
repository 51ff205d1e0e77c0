"""Prompt templates: text files with ``{identifier}`` placeholders, identified by the SHA-256 of their text.

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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.paths import project_root

__all__ = ["PromptTemplate", "load_template", "default_prompts_dir", "PROMPTS_DIR_ENV"]

PROMPTS_DIR_ENV = "AXBENCH_PROMPTS_DIR"
# `{{name}}` (escaped, literal) or `{name}` (placeholder); other braces never match.
_TOKEN = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


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


def default_prompts_dir() -> Path:
    """``$AXBENCH_PROMPTS_DIR`` if set, else ``<project root>/conf/base/prompts``."""
    env = os.environ.get(PROMPTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return project_root() / "conf" / "base" / "prompts"


def load_template(name: str, prompts_dir: str | Path | None = None) -> PromptTemplate:
    """Read ``<prompts_dir>/<name>.txt``.

    Args:
        name: template name, with or without ``.txt``.
        prompts_dir: folder of templates; default :func:`default_prompts_dir`.

    Raises:
        AxbenchConfigError: a bad name or a missing file (the message lists the templates that exist).
    """
    stem = name[:-4] if name.endswith(".txt") else name
    if not _NAME.match(stem):
        raise AxbenchConfigError(
            f"prompt template name {name!r} must be a plain file stem (letters, digits, _ . -)"
        )
    folder = Path(prompts_dir).expanduser() if prompts_dir is not None else default_prompts_dir()
    path = folder / f"{stem}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        raise AxbenchConfigError(
            f"prompt template file not found: {path} (templates there: {known or 'none'})"
        )
    return PromptTemplate.from_text(stem, path.read_text(encoding="utf-8"))
