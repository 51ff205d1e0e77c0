"""Catalog dataset that hands nodes a ready :class:`~axbench_kedro.llm.client.LLMClient` (read-only).

Catalog example::

    judge_llm:
      type: axbench_kedro.datasets.llm_client.LLMClientDataset
      backend: openai                      # openai | local
      model: ${globals:judge.model}
      base_url: ${globals:judge.base_url}  # null = the credentials' base_url, else api.openai.com
      cache_path: data/02_intermediate/llm_cache/judge.sqlite
      credentials: openai                  # conf/base/credentials.yml: ${oc.env:OPENAI_API_KEY,""}

Construction never needs the key (pipelines that do not use the client must still build the catalog); the key
is looked up at ``load()`` (when the first node needing the client runs) and by :meth:`validate`, which a
run-start hook can call for the pipelines that need the client. ``load()`` is memoized.

The key comes only from the ``credentials:`` entry Kedro injects. The client starts without prices: nodes that use
it take the ``llm_prices`` catalog dataset as an input and hand it over (``LLMClient.use_prices``), so the cost
columns of the usage tables follow the catalog's price table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from kedro.io import AbstractDataset, DatasetError

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.client import LLMClient
from axbench_kedro.llm.credentials import missing_key_error, resolve_openai_credentials
from axbench_kedro.llm.openai_backend import host_of

__all__ = ["LLMClientDataset", "LLMClientConfigError"]

log = logging.getLogger(__name__)

_BACKENDS = ("openai", "local")


class LLMClientConfigError(AxbenchConfigError, DatasetError):
    """A configuration error raised by ``load()``: an ``AxbenchConfigError`` that Kedro passes on unchanged
    (Kedro wraps every other exception of ``load()`` into a ``DatasetError`` with a longer message)."""


class LLMClientDataset(AbstractDataset[None, LLMClient]):
    """An LLM client (cache + retries + concurrency + ledger) as a catalog entry.

    Args:
        backend: ``openai`` (any OpenAI-compatible server) or ``local`` (a transformers model in-process).
        model: model id (OpenAI backend: sent to the server; local: label, the loaded model's name wins).
        base_url: OpenAI-compatible server URL ending in ``/v1``; ``None`` = the credentials' ``base_url``, else
            api.openai.com.
        cache_path: SQLite reply cache (relative paths: current directory, like every Kedro filepath).
        max_concurrency: calls in flight at most.
        max_attempts: attempts per call including the first.
        timeout_s: per-call timeout, counted from the send (OpenAI backend; stretched with observed latency).
        adaptive_concurrency: adapt the calls in flight to the server (AIMD, start at 4); ``False`` = fixed.
            Nodes may override these call settings from their parameters (e.g. ``steering_eval.judge.client``).
        target_model_spec: ``ModelSpec`` fields for the local backend (default: the embedded model).
        credentials: injected by Kedro from a ``credentials:`` entry (``api_key``, ``base_url``); the only
            source of the key.
        local_batch_size: requests per generation batch (local backend).
        prompt_style: ``auto`` | ``raw`` | ``chat`` (local backend; see ``LocalBackend``).
        top_k: top-k cut of sampled replies (local backend; 0 = none). Part of the reply cache key when set.
        seed: seed of the local backend's per-request sampling streams. Part of the reply cache key when set.
        max_tokens_param: ``max_tokens`` or ``max_completion_tokens`` (OpenAI backend).
        metadata: free-form metadata (kedro-viz).
    """

    def __init__(
        self,
        *,
        backend: Literal["openai", "local"] = "openai",
        model: str | None = None,
        base_url: str | None = None,
        cache_path: str = "data/02_intermediate/llm_cache.sqlite",
        max_concurrency: int = 32,
        max_attempts: int = 4,
        timeout_s: float = 60.0,
        adaptive_concurrency: bool = True,
        target_model_spec: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        local_batch_size: int = 16,
        prompt_style: Literal["auto", "raw", "chat"] = "auto",
        top_k: int = 0,
        seed: int = 0,
        max_tokens_param: str = "max_tokens",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if backend not in _BACKENDS:
            raise AxbenchConfigError(f"LLM client `backend` must be one of {_BACKENDS}, got {backend!r}")
        if backend == "openai" and not model:
            raise AxbenchConfigError(
                "LLM client `model` is required for the openai backend (e.g. gpt-4o-mini)"
            )
        for name, value, low in (
            ("max_concurrency", max_concurrency, 1),
            ("max_attempts", max_attempts, 1),
            ("local_batch_size", local_batch_size, 1),
            ("top_k", top_k, 0),
            ("seed", seed, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise AxbenchConfigError(f"LLM client `{name}` must be an integer >= {low}, got {value!r}")
        if not timeout_s or float(timeout_s) <= 0:
            raise AxbenchConfigError(f"LLM client `timeout_s` must be > 0, got {timeout_s!r}")
        if credentials is not None and not isinstance(credentials, dict):
            raise AxbenchConfigError(
                "LLM client `credentials` must be a mapping with api_key / base_url (Kedro resolves a "
                "`credentials: <name>` entry from the credentials files into one)"
            )
        if target_model_spec is not None and not isinstance(target_model_spec, dict):
            raise AxbenchConfigError("LLM client `target_model_spec` must be a mapping of ModelSpec fields")
        self._backend = backend
        self._model = model or None
        self._base_url = base_url or None
        self._cache_path = str(cache_path)
        self._max_concurrency = max_concurrency
        self._max_attempts = max_attempts
        self._timeout_s = float(timeout_s)
        self._adaptive = bool(adaptive_concurrency)
        self._spec = dict(target_model_spec or {})
        self.__credentials = dict(credentials or {})
        self._local_batch_size = local_batch_size
        self._prompt_style = prompt_style
        self._top_k = top_k
        self._seed = seed
        self._max_tokens_param = max_tokens_param
        self.metadata = metadata
        self._client: LLMClient | None = None

    # -- checks --------------------------------------------------------------------------------------------------
    def _credentials(self):  # type: ignore[no-untyped-def]
        return resolve_openai_credentials(self.__credentials, base_url=self._base_url)

    def _model_spec(self):  # type: ignore[no-untyped-def]
        from axbench_kedro.lm.types import ModelSpec

        return ModelSpec.from_config(self._spec, key="target_model_spec")

    def validate(self) -> None:
        """Check what ``load()`` needs without loading a model or calling a server.

        Raises:
            AxbenchConfigError: no API key (names ``openai.api_key``) or a bad model spec.
        """
        if self._backend == "openai":
            if self._credentials().api_key is None:
                raise missing_key_error(str(self._model))
        else:
            from axbench_kedro.lm.loading import validate_spec

            validate_spec(self._model_spec())

    # -- AbstractDataset -----------------------------------------------------------------------------------------
    def load(self) -> LLMClient:
        """The client (built once per dataset instance)."""
        if self._client is None:
            try:
                self._client = self._build()
            except AxbenchConfigError as exc:
                if isinstance(exc, DatasetError):
                    raise
                raise LLMClientConfigError(str(exc)) from exc
        return self._client

    def _build(self) -> LLMClient:
        if self._backend == "openai":
            from axbench_kedro.llm.openai_backend import OpenAICompatibleBackend

            creds = self._credentials()
            if creds.api_key is None:
                raise missing_key_error(str(self._model))
            backend: Any = OpenAICompatibleBackend(
                str(self._model),
                api_key=creds.api_key,
                base_url=creds.base_url,
                timeout_s=self._timeout_s,
                max_tokens_param=self._max_tokens_param,
            )
            log.info("LLM client: %s at %s (key from %s)", self._model, backend.location, creds.key_source)
            if self._top_k:
                log.warning(
                    "LLM client %s: top_k=%d is not sent by the openai backend (the OpenAI API has no top-k)",
                    self._model,
                    self._top_k,
                )
        else:
            from axbench_kedro.llm.local_backend import LocalBackend
            from axbench_kedro.lm.loading import load_target_model

            # The process-wide memoized loader: the model the `target_model` dataset hands the nodes, not a copy.
            tm = load_target_model(self._model_spec())
            if self._model and self._model != tm.name:
                log.warning(
                    "LLM client model %r: the local backend reports the loaded model %r", self._model, tm.name
                )
            backend = LocalBackend(
                tm,
                batch_size=self._local_batch_size,
                prompt_style=self._prompt_style,
                top_k=self._top_k,
                seed=self._seed,
            )
        Path(self._cache_path).parent.mkdir(parents=True, exist_ok=True)
        return LLMClient(
            backend,
            cache=self._cache_path,
            max_concurrency=self._max_concurrency,
            max_attempts=self._max_attempts,
            adaptive_concurrency=self._adaptive,
        )

    def save(self, data: LLMClient) -> None:
        raise DatasetError("LLMClientDataset is read-only: it provides an LLM client, it stores nothing")

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        # Never the key, never the credentials mapping.
        return {
            "backend": self._backend,
            "model": self._model,
            "host": host_of(self._base_url) if self._backend == "openai" and self._base_url else None,
            "cache_path": self._cache_path,
            "max_concurrency": self._max_concurrency,
            "max_attempts": self._max_attempts,
            "timeout_s": self._timeout_s,
            "adaptive_concurrency": self._adaptive,
            **({"top_k": self._top_k, "seed": self._seed} if self._backend == "local" else {}),
        }
