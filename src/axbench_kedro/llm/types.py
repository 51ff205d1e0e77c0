"""Value objects and the backend protocol of the LLM layer.

Example:
    >>> req = LLMRequest.user("Name a colour.", model="gpt-4o-mini", temperature=0.0)
    >>> req.messages
    (('user', 'Name a colour.'),)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["LLMRequest", "LLMResponse", "Backend", "ROLES"]

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class LLMRequest:
    """One chat-completion request.

    Attributes:
        messages: ``(role, content)`` pairs; roles are ``system``, ``user`` or ``assistant``.
        model: model id; empty = the client's model.
        temperature: sampling temperature; 0 means greedy.
        max_tokens: cap on generated tokens (``None`` = the backend default).
        top_p: nucleus sampling mass (``None`` = the backend default).
        sample_index: which independent sample of an otherwise identical request this is; part of the
            cache key, and the seed of the local backend.
        raw_prompt: local backend only: ``True`` feeds the message text as is after ``<bos>`` (completion
            style), ``False`` applies the chat format, ``None`` lets the backend decide (base models → raw).
    """

    messages: tuple[tuple[str, str], ...]
    model: str = ""
    temperature: float = 1.0
    max_tokens: int | None = None
    top_p: float | None = None
    sample_index: int = 0
    raw_prompt: bool | None = None

    def __post_init__(self) -> None:
        messages = tuple((str(role), str(content)) for role, content in self.messages)
        if not messages:
            raise ValueError("LLMRequest.messages is empty")
        for role, _ in messages:
            if role not in ROLES:
                raise ValueError(f"LLMRequest message role must be one of {ROLES}, got {role!r}")
        object.__setattr__(self, "messages", messages)
        if self.temperature < 0:
            raise ValueError(f"LLMRequest.temperature must be >= 0, got {self.temperature}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"LLMRequest.max_tokens must be >= 1, got {self.max_tokens}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"LLMRequest.top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def user(cls, text: str, *, model: str = "", **kwargs: Any) -> LLMRequest:
        """A request made of one user message (the AxBench shape: no system message)."""
        return cls(messages=(("user", text),), model=model, **kwargs)

    @property
    def text(self) -> str:
        """All message contents joined by blank lines (what a completion-style prompt shows)."""
        return "\n\n".join(content for _, content in self.messages)

    def key_payload(self) -> dict[str, Any]:
        """Everything that determines the reply: the content of the cache key."""
        payload = asdict(self)
        payload["messages"] = [list(m) for m in self.messages]
        return payload


@dataclass(frozen=True)
class LLMResponse:
    """One reply, with its token usage.

    Attributes:
        text: the generated text.
        input_tokens: prompt tokens billed (the backend's count).
        output_tokens: generated tokens billed.
        cached: ``True`` when it came from the persistent cache (no call was made, cost 0).
        model: the model id that produced it.
        finish_reason: why generation stopped, as the backend reports it: ``stop`` (natural end), ``length`` (cut at
            ``max_tokens`` or the backend's default cap), another server value (e.g. ``content_filter``), or
            ``None`` when unknown (a reply cached before finish reasons were recorded, a server that omits it).
    """

    text: str
    input_tokens: int
    output_tokens: int
    cached: bool
    model: str
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        """``True`` when the reply was cut at the token cap (``finish_reason == "length"``)."""
        return self.finish_reason == "length"


@runtime_checkable
class Backend(Protocol):
    """What :class:`~axbench_kedro.llm.client.LLMClient` wraps.

    ``complete`` returns one response per request, in order, with ``cached=False``. Transient failures are
    raised as :class:`~axbench_kedro.llm.errors.TransientLLMError`, permanent ones as
    :class:`~axbench_kedro.llm.errors.LLMCallError`; the client retries the former.
    """

    name: str  # backend kind, e.g. "openai" / "local"
    model: str  # model id used in cache keys, prices and reports
    max_batch_size: int  # requests per ``complete`` call (OpenAI: 1; local: e.g. 16)
    max_in_flight: int | None  # at most this many ``complete`` calls at once (None = client limit only)
    location: str  # where the calls go (host of the base URL, or "in-process"); never a secret

    async def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResponse]: ...

    async def aclose(self) -> None: ...
