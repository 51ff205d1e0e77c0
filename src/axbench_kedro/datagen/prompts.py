"""The seven data-generation prompts (protocol §2.7, G1–G7) in two styles.

* ``chat``: instructions for an instruction-following generator (``gpt-4o-mini``), templates
  ``gen_<kind>`` of the ``prompt_templates`` catalog dataset; the reply is parsed as it comes.
* ``base``: completion-style few-shot templates for a base model (the embedded ``gemma-3-270m``),
  ``gen_<kind>_base.txt``, sent raw (no chat markup). A base model does not stop after its answer, so the
  completion is cut where the next few-shot block would begin, and the text the template ends on (e.g.
  ``Answer:``) is put back in front so that the protocol's parsing rules apply unchanged. The two
  classification calls (G1 genre, G4 distinctness) are decoded greedily in this style.

Example:
    >>> prompts = DatagenPrompts("chat", templates=catalog.load("prompt_templates"))
    >>> req = prompts.request("genre", concept="cats")
    >>> prompts.reply("genre", "Text")
    'Text'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.templates import PromptTemplate, pick_template
from axbench_kedro.llm.types import LLMRequest

__all__ = ["KINDS", "REQUIRED_FIELDS", "DatagenPrompts", "template_name"]

Kind = Literal[
    "genre", "related_words", "other_meaning", "distinct", "with_concept", "without_concept", "contrast"
]
KINDS: tuple[str, ...] = (
    "genre",
    "related_words",
    "other_meaning",
    "distinct",
    "with_concept",
    "without_concept",
    "contrast",
)
# Inputs of each call (§2.7). Chat templates must use all of them; base templates may leave some out
# (telling a base model what *not* to write only primes it).
REQUIRED_FIELDS: dict[str, frozenset[str]] = {
    "genre": frozenset({"concept"}),
    "related_words": frozenset({"concept"}),
    "other_meaning": frozenset({"word", "concept"}),
    "distinct": frozenset({"meaning", "concept"}),
    "with_concept": frozenset({"instruction", "concept"}),
    "without_concept": frozenset({"instruction", "concept"}),
    "contrast": frozenset({"instruction", "concept", "word", "meaning"}),
}
_RESPONSES = frozenset({"with_concept", "without_concept", "contrast"})


@dataclass(frozen=True)
class _Completion:
    """How a base-style completion is turned back into a reply.

    Attributes:
        stops: the completion is cut at the first of these strings.
        prefix: put in front of the cut completion (the text the template ends on).
        max_tokens: new-token cap (``None`` = the response cap).
        greedy: decode greedily (classification calls: a small base model's label is more reliable without
            sampling noise).
    """

    stops: tuple[str, ...]
    prefix: str = ""
    max_tokens: int | None = None
    greedy: bool = False


_BASE: dict[str, _Completion] = {
    "genre": _Completion(stops=("\n",), max_tokens=4, greedy=True),
    "related_words": _Completion(stops=("\n\n", "\nTopic:"), max_tokens=20),
    "other_meaning": _Completion(stops=("\n",), max_tokens=16),
    "distinct": _Completion(stops=("\n",), prefix="Answer:", max_tokens=4, greedy=True),
    "with_concept": _Completion(stops=("\n\n", "\nTopic:", "\nQuestion:")),
    "without_concept": _Completion(stops=("\n\n", "\nQuestion:")),
    "contrast": _Completion(stops=("\n\n", "\nQuestion:", "\nWord:")),
}


def template_name(kind: str, style: str) -> str:
    """Name of a kind's template: ``gen_<kind>`` (chat) or ``gen_<kind>_base`` (base)."""
    return f"gen_{kind}" if style == "chat" else f"gen_{kind}_base"


class DatagenPrompts:
    """Templates and request/reply adapters for one prompt style.

    Args:
        style: ``chat`` or ``base``.
        templates: the ``prompt_templates`` catalog dataset (``{name: loader}``, or name → text/template).
        temperature: generator sampling temperature.
        top_p: nucleus mass (``None`` = backend default).
        response_max_tokens: new-token cap of G5/G6/G7 replies (``None`` = backend default).

    Raises:
        AxbenchConfigError: unknown style, a template missing from ``templates`` (one line naming
            ``datagen.prompt_style`` and the known templates), or a chat template lacking an input field.
    """

    def __init__(
        self,
        style: str,
        *,
        templates: Mapping[str, Any],
        temperature: float = 1.0,
        top_p: float | None = None,
        response_max_tokens: int | None = None,
    ) -> None:
        if style not in ("chat", "base"):
            raise AxbenchConfigError(f"datagen.prompt_style must be 'chat' or 'base', got {style!r}")
        self.style = style
        self.temperature = float(temperature)
        self.top_p = top_p
        self.response_max_tokens = response_max_tokens
        self.templates: dict[str, PromptTemplate] = {}
        for kind in KINDS:
            template = pick_template(templates, template_name(kind, style), f"datagen.prompt_style={style!r}")
            unknown = set(template.fields) - REQUIRED_FIELDS[kind]
            missing = REQUIRED_FIELDS[kind] - set(template.fields)
            if unknown or (style == "chat" and missing):
                raise AxbenchConfigError(
                    f"prompt template {template.name!r}: fields must be {sorted(REQUIRED_FIELDS[kind])}, "
                    f"found {sorted(template.fields)}"
                )
            self.templates[kind] = template

    @property
    def hashes(self) -> dict[str, str]:
        """Template name → SHA-256, recorded with the outputs."""
        return {t.name: t.sha256 for t in self.templates.values()}

    def render(self, kind: str, **fields: object) -> str:
        """The prompt text of one call (fields a base template does not use are ignored)."""
        template = self.templates[kind]
        return template.render(**{k: v for k, v in fields.items() if k in template.fields})

    def max_tokens(self, kind: str) -> int | None:
        """New-token cap of a call."""
        if self.style == "base" and _BASE[kind].max_tokens is not None:
            return _BASE[kind].max_tokens
        return self.response_max_tokens if kind in _RESPONSES else None

    def request(self, kind: str, sample_index: int = 0, **fields: object) -> LLMRequest:
        """One LLM request (a single user message; raw completion prompt in the base style)."""
        greedy = self.style == "base" and _BASE[kind].greedy
        return LLMRequest.user(
            self.render(kind, **fields),
            temperature=0.0 if greedy else self.temperature,
            max_tokens=self.max_tokens(kind),
            top_p=None if greedy else self.top_p,
            sample_index=sample_index,
            raw_prompt=True if self.style == "base" else None,
        )

    def reply(self, kind: str, text: str | None) -> str:
        """The reply as the protocol's parser expects it (base style: cut and prefixed)."""
        text = text or ""
        if self.style == "chat":
            return text
        rule = _BASE[kind]
        text = text.lstrip()
        cut = len(text)
        for stop in rule.stops:
            at = text.find(stop)
            if at >= 0:
                cut = min(cut, at)
        return rule.prefix + text[:cut]

    def describe(self) -> Mapping[str, object]:
        """Settings that change the replies (part of cache keys)."""
        return {
            "style": self.style,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "response_max_tokens": self.response_max_tokens,
            "templates": self.hashes,
        }
