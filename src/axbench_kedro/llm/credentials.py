"""The API key and base URL of an OpenAI-compatible server, from Kedro's credentials only, never logged.

The only source is the ``credentials:`` mapping Kedro injects into the catalog dataset (``api_key``,
``base_url``). ``conf/base/credentials.yml`` fills it from the environment through Kedro's ``oc.env`` resolver
(enabled for credentials files only)::

    openai:
      api_key: ${oc.env:OPENAI_API_KEY,""}
      base_url: ${oc.env:OPENAI_BASE_URL,""}

and a git-ignored ``conf/<env>/credentials.yml`` of the run environment replaces that entry. Nothing here reads
a file or the environment. Empty strings count as unset; an explicit ``base_url`` of the dataset wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["OpenAICredentials", "resolve_openai_credentials", "missing_key_error", "KEY_SOURCE"]

KEY_SOURCE = "Kedro credentials"


@dataclass(frozen=True)
class OpenAICredentials:
    """Resolved credentials; ``repr`` never shows the key.

    Attributes:
        api_key: the key, or ``None`` when the credentials mapping has none.
        base_url: server URL, or ``None`` for api.openai.com.
        key_source: where the key came from (for logs), ``None`` without a key.
    """

    api_key: str | None = field(repr=False)
    base_url: str | None
    key_source: str | None


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def resolve_openai_credentials(
    credentials: Mapping[str, Any] | None = None, *, base_url: str | None = None
) -> OpenAICredentials:
    """Key and base URL from the Kedro-injected credentials mapping.

    Args:
        credentials: the mapping Kedro resolved from a ``credentials: <name>`` entry, if any.
        base_url: explicit base URL from the dataset configuration (wins when set).
    """
    creds = credentials or {}
    api_key = _clean(creds.get("api_key"))
    url = _clean(base_url) or _clean(creds.get("base_url"))
    return OpenAICredentials(api_key=api_key, base_url=url, key_source=KEY_SOURCE if api_key else None)


def missing_key_error(model: str) -> AxbenchConfigError:
    """The error for an OpenAI-compatible backend without a key (one line, names ``openai.api_key``)."""
    return AxbenchConfigError(
        f"openai.api_key is not set for the LLM model {model!r}: export the OPENAI_API_KEY environment variable "
        "(conf/base/credentials.yml reads it), or put `openai: {api_key: ...}` in a git-ignored "
        "conf/<env>/credentials.yml of the run environment; servers that do not check keys (vLLM, Ollama, "
        "llama.cpp) accept any value such as 'none'"
    )
