"""Backend for any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp server).

One request per HTTP call through the official ``openai`` SDK (``AsyncOpenAI``) with the SDK's own retries
switched off: retrying is the job of :class:`~axbench_kedro.llm.client.LLMClient`. Failures are sorted into
transient ones (429, 408, 409, 5xx, timeouts, connection errors, malformed bodies → ``TransientLLMError``) and
permanent ones (other 4xx → ``LLMCallError`` at once).

Example:
    >>> backend = OpenAICompatibleBackend("gpt-4o-mini", api_key="sk-...", base_url=None)
    >>> backend.location
    'api.openai.com'
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import openai

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.llm.errors import LLMCallError, TransientLLMError, redact
from axbench_kedro.llm.types import LLMRequest, LLMResponse

__all__ = ["OpenAICompatibleBackend", "parse_retry_after", "host_of"]

_RETRYABLE_STATUS = {408, 409, 429}
_MAX_RETRY_AFTER_S = 300.0

# The SDK's HTTP library logs one INFO line per request; at 10^5 judge calls that drowns the run log.
for _name in ("httpx", "httpx2"):
    _logger = logging.getLogger(_name)
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.WARNING)


def host_of(base_url: str | None) -> str:
    """Host (and port) of a base URL, for messages: never the path, query or credentials."""
    if not base_url:
        return "api.openai.com"
    parsed = urlparse(base_url if "://" in base_url else f"http://{base_url}")
    host = parsed.hostname or base_url
    return f"{host}:{parsed.port}" if parsed.port else host


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), else ``None``."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if "retry-after-ms" in lowered:
        try:
            value = float(lowered["retry-after-ms"]) / 1000.0
            if math.isfinite(value) and value >= 0:
                return min(value, _MAX_RETRY_AFTER_S)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        value = email.utils.mktime_tz(parsed) - time.time()
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), _MAX_RETRY_AFTER_S)


class OpenAICompatibleBackend:
    """Chat completions over HTTP, one request per call.

    Args:
        model: model id sent to the server (e.g. ``gpt-4o-mini-2024-07-18``).
        api_key: the key (servers that do not check keys accept any non-empty value).
        base_url: server URL ending in ``/v1``; ``None`` = api.openai.com.
        timeout_s: per-call timeout in seconds, counted from the send (the client may pass a longer one per call,
            see ``complete``).
        max_tokens_param: request field for the token cap (``max_tokens``; newer OpenAI models want
            ``max_completion_tokens``).
        send_seed: also send ``seed = sample_index`` (best-effort determinism on servers that support it).
    """

    name = "openai"
    max_batch_size = 1
    max_in_flight: int | None = None
    # ``complete`` takes ``timeout_s``: the client stretches it with the observed latency.
    per_call_timeout = True

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_tokens_param: str = "max_tokens",
        send_seed: bool = False,
    ) -> None:
        if not model:
            raise AxbenchConfigError("LLM model id is empty: set `model` of the LLM client dataset")
        if not api_key:
            raise AxbenchConfigError(
                "no API key for the OpenAI-compatible backend: set openai.api_key through the OPENAI_API_KEY "
                "environment variable or a git-ignored conf/<env>/credentials.yml (servers that ignore keys accept "
                "any value, e.g. 'none')"
            )
        if timeout_s <= 0:
            raise AxbenchConfigError(f"LLM timeout_s must be > 0, got {timeout_s}")
        if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise AxbenchConfigError(
                f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}"
            )
        self.model = model
        self.base_url = base_url or None
        self.location = host_of(self.base_url)
        self.timeout_s = float(timeout_s)
        self.max_tokens_param = max_tokens_param
        self.send_seed = send_seed
        self.__api_key = api_key
        self._sdks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleBackend(model={self.model!r}, host={self.location!r}, timeout_s={self.timeout_s})"

    # -- SDK client, one per event loop (its connection pool is bound to the loop) ------------------------------
    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        sdk = self._sdks.get(loop)
        if sdk is None:
            sdk = self._sdks[loop] = openai.AsyncOpenAI(
                api_key=self.__api_key,
                base_url=self.base_url,
                timeout=None,  # each call passes its own (see _complete_one)
                max_retries=0,  # our retries are the only ones
            )
        return sdk

    async def aclose(self) -> None:
        """Close the HTTP connections opened in the running event loop."""
        sdk = self._sdks.pop(asyncio.get_running_loop(), None)
        if sdk is not None:
            await sdk.close()

    # -- calls ---------------------------------------------------------------------------------------------------
    def _kwargs(self, req: LLMRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": req.model or self.model,
            "messages": [{"role": role, "content": content} for role, content in req.messages],
            "temperature": req.temperature,
        }
        if req.max_tokens is not None:
            kwargs[self.max_tokens_param] = req.max_tokens
        if req.top_p is not None:
            kwargs["top_p"] = req.top_p
        if self.send_seed:
            kwargs["seed"] = req.sample_index
        return kwargs

    async def complete(
        self, requests: Sequence[LLMRequest], *, timeout_s: float | None = None
    ) -> list[LLMResponse]:
        """One HTTP call per request (the client sends batches of one).

        Args:
            requests: the requests.
            timeout_s: this call's timeout (``None`` = ``self.timeout_s``).
        """
        return [await self._complete_one(req, timeout_s or self.timeout_s) for req in requests]

    async def _complete_one(self, req: LLMRequest, timeout_s: float) -> LLMResponse:
        model = req.model or self.model
        try:
            # The SDK timeout bounds each read; this bounds the whole call (slow-drip replies).
            async with asyncio.timeout(timeout_s + 1.0):
                # `post` is the SDK's documented raw-endpoint call: same auth, timeouts and error types as
                # `chat.completions.create`, minus its parameter transform and pydantic parsing (together
                # ~2 ms of CPU per call, which caps throughput at 10^5 calls); the body is read below.
                raw = await self._client().post(
                    "/chat/completions", body=self._kwargs(req), cast_to=bytes, options={"timeout": timeout_s}
                )
        except (openai.APITimeoutError, TimeoutError) as exc:
            raise TransientLLMError(f"timed out after {timeout_s:g} s", status="timeout") from exc
        except openai.APIConnectionError as exc:
            raise TransientLLMError(
                f"connection error: {type(exc.__cause__ or exc).__name__}", status="connection"
            ) from exc
        except openai.APIStatusError as exc:
            raise self._status_error(exc, model) from None
        except (openai.APIResponseValidationError, ValueError) as exc:  # invalid JSON body
            raise TransientLLMError(f"malformed reply ({type(exc).__name__})", status="malformed") from exc
        return self._to_response(raw, model)

    def _status_error(self, exc: openai.APIStatusError, model: str) -> Exception:
        status = int(exc.status_code)
        detail = redact(_error_message(exc), self.__api_key)
        if status in _RETRYABLE_STATUS or status >= 500:
            retry_after = parse_retry_after(dict(exc.response.headers)) if exc.response is not None else None
            return TransientLLMError(f"HTTP {status}: {detail}", status=status, retry_after=retry_after)
        where = f"model {model!r} at {self.location}"
        if status == 401:
            message = (
                f"LLM call to {where} was refused (HTTP 401, authentication failed): check openai.api_key "
                "(OPENAI_API_KEY or conf/<env>/credentials.yml)"
            )
        elif status == 403:
            message = f"LLM call to {where} was refused (HTTP 403, permission denied): {detail}"
        elif status == 404:
            message = (
                f"LLM call to {where} failed (HTTP 404): unknown model id or endpoint; check `model` and "
                f"`base_url` (it should end in /v1): {detail}"
            )
        else:
            message = f"LLM call to {where} failed (HTTP {status}, not retried): {detail}"
        return LLMCallError(message, model=model, location=self.location, status=status, attempts=1)

    def _to_response(self, raw: bytes, model: str) -> LLMResponse:
        """Read an OpenAI-shaped body; anything unreadable is a transient ``malformed`` error."""
        try:
            body = json.loads(raw)
            choice = body["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            finish_reason = choice.get("finish_reason")
            usage = body.get("usage") or {}
            input_tokens = int(usage.get("prompt_tokens") or 0)
            output_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise TransientLLMError(
                f"malformed reply ({type(exc).__name__}: {exc})"[:200], status="malformed"
            ) from exc
        if not isinstance(text, str):
            raise TransientLLMError("malformed reply (content is not text)", status="malformed")
        return LLMResponse(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached=False,
            model=model,
            finish_reason=str(finish_reason) if finish_reason is not None else None,
        )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(exc)[:300]
