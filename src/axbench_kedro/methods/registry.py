"""A tiny registry of methods by name, with errors that list what exists.

Example:
    >>> from axbench_kedro.methods import get_method, list_methods
    >>> "DiffMean" in list_methods()
    True
    >>> [m.name for m in steering_methods(["DiffMean", "BoW", "Prompt"])]
    ['DiffMean', 'Prompt']
"""

from __future__ import annotations

from collections.abc import Iterable

from axbench_kedro.methods.base import Method
from axbench_kedro.registry import Registry

__all__ = ["register", "get_method", "list_methods", "steering_methods", "detection_methods"]

_METHODS: Registry[type[Method]] = Registry("method", attribute="name", package="axbench_kedro.methods")

register = _METHODS.register
"""Class decorator: register a :class:`Method` subclass under ``name`` (sets ``cls.name``)."""


def get_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name``.

    Raises:
        AxbenchConfigError: unknown name (the message lists the known ones).
    """
    return _METHODS.get(name)()


def list_methods() -> list[str]:
    """Every registered method name, sorted."""
    return _METHODS.names()


def steering_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that steer (order kept; unknown names raise ``AxbenchConfigError``)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.steers]


def detection_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that have a detection score (order kept)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.detects]
