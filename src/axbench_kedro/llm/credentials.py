"""Find the API key and base URL of an OpenAI-compatible server, without ever logging the key.

Lookup order, per value (empty strings count as unset):

1. the ``credentials:`` entry Kedro injects into the catalog dataset (``api_key``, ``base_url``);
2. the environment: ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``;
3. ``conf/local/credentials.yml`` read directly (section ``openai``): with ``--env <setting>`` Kedro does not
   load ``conf/local``, so the file is read here whatever the environment.

An explicit ``base_url`` of the dataset wins over all three.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.paths import resolve_project_path

__all__ = ["OpenAICredentials", "resolve_openai_credentials", "DEFAULT_CREDENTIALS_FILE", "missing_key_error"]

DEFAULT_CREDENTIALS_FILE = "conf/local/credentials.yml"


@dataclass(frozen=True)
class OpenAICredentials:
    """Resolved credentials; ``repr`` never shows the key.

    Attributes:
        api_key: the key, or ``None`` when no source had one.
        base_url: server URL, or ``None`` for api.openai.com.
        key_source: where the key came from (``catalog credentials``, ``OPENAI_API_KEY``, the file path).
    """

    api_key: str | None = field(repr=False)
    base_url: str | None
    key_source: str | None


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _read_file(path: Path, section: str) -> Mapping[str, Any]:
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AxbenchConfigError(
            f"{path} is not valid YAML (line {getattr(exc, 'problem_mark', '?')})"
        ) from None
    if not isinstance(raw, Mapping):
        raise AxbenchConfigError(f"{path} must be a YAML mapping with an `{section}:` section")
    entry = raw.get(section) or {}
    if not isinstance(entry, Mapping):
        raise AxbenchConfigError(f"{path}: `{section}` must be a mapping with api_key / base_url")
    return entry


def resolve_openai_credentials(
    credentials: Mapping[str, Any] | None = None,
    *,
    base_url: str | None = None,
    credentials_file: str | Path | None = DEFAULT_CREDENTIALS_FILE,
    section: str = "openai",
    environ: Mapping[str, str] | None = None,
) -> OpenAICredentials:
    """Resolve key and base URL (see module docstring for the order).

    Args:
        credentials: Kedro-injected credentials mapping, if any.
        base_url: explicit base URL from the dataset configuration (wins when set).
        credentials_file: YAML file read last (relative paths: project root); ``None`` skips it.
        section: section of that file.
        environ: environment mapping (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    creds = credentials or {}
    file_entry: Mapping[str, Any] = {}
    file_path: Path | None = None
    if credentials_file is not None:
        file_path = resolve_project_path(credentials_file)
        file_entry = _read_file(file_path, section)

    key_candidates = [
        (_clean(creds.get("api_key")), "catalog credentials"),
        (_clean(env.get("OPENAI_API_KEY")), "OPENAI_API_KEY"),
        (_clean(file_entry.get("api_key")), str(file_path)),
    ]
    api_key, key_source = next(((k, s) for k, s in key_candidates if k), (None, None))
    url = next(
        (
            u
            for u in (
                _clean(base_url),
                _clean(creds.get("base_url")),
                _clean(env.get("OPENAI_BASE_URL")),
                _clean(file_entry.get("base_url")),
            )
            if u
        ),
        None,
    )
    return OpenAICredentials(api_key=api_key, base_url=url, key_source=key_source)


def missing_key_error(
    model: str, credentials_file: str | Path | None = DEFAULT_CREDENTIALS_FILE
) -> AxbenchConfigError:
    """The error for an OpenAI-compatible backend without a key (names ``openai.api_key``)."""
    where = credentials_file or DEFAULT_CREDENTIALS_FILE
    return AxbenchConfigError(
        f"openai.api_key is not set for the LLM model {model!r}: put it in {where} (see "
        "conf/local/credentials.example.yml), or export OPENAI_API_KEY; servers that do not check keys "
        "(vLLM, Ollama, llama.cpp) accept any value such as 'none'"
    )
