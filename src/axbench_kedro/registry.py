"""A tiny generic registry of classes by name, with errors that list what exists.

Methods and judges both register themselves with it (``@register("DiffMean")``).

Example:
    >>> widgets = Registry("widget", attribute="name", package="axbench_kedro.methods")
    >>> @widgets.register("knob")
    ... class Knob: ...
    >>> widgets.get("knob").name
    'knob'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Classes registered under names.

    Args:
        what: what is registered, for error messages ("method", "judge").
        attribute: class attribute set to the registered name.
        package: module imported before any lookup, so that its members have registered themselves.
        key: configuration key named in the unknown-name error (e.g. ``steering_eval.judge.kind``).
    """

    def __init__(self, what: str, *, attribute: str, package: str, key: str | None = None) -> None:
        self.what = what
        self.attribute = attribute
        self.package = package
        self.key = key
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``; a second class under one name is an error."""

        def wrap(cls: T) -> T:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.what} {name!r} is already registered by {known.__qualname__}")
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return wrap

    def get(self, name: str) -> T:
        """The class registered as ``name`` (``AxbenchConfigError`` listing the known names otherwise)."""
        importlib.import_module(self.package)
        try:
            return self._classes[name]
        except KeyError:
            prefix = f"{self.key}: " if self.key else ""
            raise AxbenchConfigError(
                f"{prefix}unknown {self.what} {name!r}; known {self.what}s: {', '.join(sorted(self._classes))}"
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        importlib.import_module(self.package)
        return sorted(self._classes)
