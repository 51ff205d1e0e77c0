"""Errors of the LLM layer: a permanent failure the user reads, and a transient one the client retries."""

from __future__ import annotations

import re

__all__ = ["LLMCallError", "TransientLLMError", "redact"]

_KEY_PATTERN = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*]{6,}")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with the given secrets and anything shaped like an API key replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


class LLMCallError(RuntimeError):
    """An LLM call failed for good (non-retryable status, or the last retry failed).

    The message names the model, the server host and the last status; never the API key.

    Attributes:
        model: model id.
        location: server host (or ``in-process``).
        status: last HTTP status, or a short word (``timeout``, ``connection``, ``malformed``).
        attempts: attempts made.
        requested, answered, failed, not_sent: for a ``complete_many`` of several calls, how many were asked for,
            answered (and cached), failed for good, and never sent (``answered + failed + not_sent ==
            requested``); ``None`` for a single call.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        location: str,
        status: int | str | None,
        attempts: int,
        requested: int | None = None,
        answered: int | None = None,
        failed: int | None = None,
        not_sent: int | None = None,
    ):
        super().__init__(message)
        self.model = model
        self.location = location
        self.status = status
        self.attempts = attempts
        self.requested = requested
        self.answered = answered
        self.failed = failed
        self.not_sent = not_sent


class TransientLLMError(Exception):
    """A failure worth retrying: 429, 5xx, timeout, connection error, malformed reply.

    Attributes:
        status: HTTP status or a short word (``timeout``, ``connection``, ``malformed``).
        retry_after: seconds the server asked us to wait (``Retry-After``), if any.
    """

    def __init__(self, message: str, *, status: int | str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
