"""Errors the user is meant to read: one line naming the key or file at fault."""

from __future__ import annotations

__all__ = ["AxbenchConfigError", "AxbenchDataError"]


class AxbenchConfigError(ValueError):
    """A parameter, credential or model path is wrong; raised before any work starts."""


class AxbenchDataError(ValueError):
    """An input file does not follow the protocol schema (names the file and the column)."""
