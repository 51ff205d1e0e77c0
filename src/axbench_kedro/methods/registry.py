"""A tiny registry of methods by name, with errors that list what exists.

Example:
    >>> from axbench_kedro.methods import get_method, list_methods
    >>> "DiffMean" in list_methods()
    True
    >>> [m.name for m in steering_methods(["DiffMean", "BoW", "Prompt"])]
    ['DiffMean', 'Prompt']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.methods.base import Method

__all__ = ["register", "get_method", "list_methods", "steering_methods", "detection_methods"]

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a :class:`Method` subclass under ``name`` (sets ``cls.name``)."""

    def wrap(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _ensure_loaded() -> None:
    import axbench_kedro.methods  # noqa: F401  (imports every method module, which registers itself)


def get_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name``.

    Raises:
        AxbenchConfigError: unknown name (the message lists the known ones).
    """
    _ensure_loaded()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise AxbenchConfigError(
            f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))}"
        ) from None


def list_methods() -> list[str]:
    """Every registered method name, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def steering_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that steer (order kept; unknown names raise ``AxbenchConfigError``)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.steers]


def detection_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that have a detection score (order kept)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.detects]
