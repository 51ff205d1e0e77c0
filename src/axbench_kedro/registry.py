"""A tiny generic registry of classes by name, with built-in discovery, entry-point plugins and errors that list
what exists.

Methods and judges both register themselves with it (``@register("DiffMean")``). Nothing is listed by hand: on the
first lookup the registry imports its package, then (``discover=True``) every public module of that package — the
modules that decorate a class with :meth:`Registry.register` are the members, helper modules register nothing — and
then (``entry_point_group``) every entry point of that group, so installed third-party packages add members the
same way (``[project.entry-points."axbench_kedro.methods"] mymethod = "my_pkg.my_method"``). An entry point names a
module (imported; it registers its classes with the decorator) or a class (registered under its own
``attribute`` value, else under the entry point's name). A plugin that fails gives one :class:`AxbenchConfigError`
naming the entry point and its distribution.

Example:
    >>> widgets = Registry("widget", attribute="name", package="axbench_kedro.methods")
    >>> @widgets.register("knob")
    ... class Knob: ...
    >>> widgets.get("knob").name
    'knob'
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Generic, TypeVar

from axbench_kedro.errors import AxbenchConfigError

__all__ = ["Registry", "describe_entry_point"]

T = TypeVar("T", bound=type)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_entry_point(ep: EntryPoint) -> str:
    """``'name = value' (group G, distribution D V)`` — how errors name a plugin."""
    dist = getattr(ep, "dist", None)
    where = f"{dist.name} {dist.version}" if dist is not None else "unknown"
    return f"entry point '{ep.name} = {ep.value}' (group {ep.group}, distribution {where})"


class Registry(Generic[T]):
    """Classes registered under names.

    Args:
        what: what is registered, for error messages ("method", "judge").
        attribute: class attribute set to the registered name.
        package: module imported before any lookup, so that its members have registered themselves.
        key: configuration key named in the unknown-name error (e.g. ``steering_eval.judge.kind``).
        discover: also import every public module (name not starting with ``_``) of ``package`` before the first
            lookup, so that a new built-in member is one new module, listed nowhere.
        entry_point_group: entry-point group whose plugins are loaded before the first lookup (``None``: none).
        base: class every entry-point class must subclass (``None``: not checked).
    """

    def __init__(
        self,
        what: str,
        *,
        attribute: str,
        package: str,
        key: str | None = None,
        discover: bool = False,
        entry_point_group: str | None = None,
        base: type | None = None,
    ) -> None:
        self.what = what
        self.attribute = attribute
        self.package = package
        self.key = key
        self.discover = discover
        self.entry_point_group = entry_point_group
        self.base = base
        self._classes: dict[str, T] = {}
        self._plugins: dict[str, str] = {}  # name → the entry point that registered it
        self._plugin_modules: set[str] = set()
        self._loaded = False
        self._loading = False

    # ---- registration --------------------------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``; a second class under one name is an error."""

        def wrap(cls: T) -> T:
            known = self._classes.get(name)
            if known is not None and known is not cls and not _same_definition(known, cls):
                raise ValueError(
                    f"{self.what} {name!r} is already registered by {known.__module__}.{known.__qualname__}"
                )
            setattr(cls, self.attribute, name)
            self._classes[name] = cls
            return cls

        return wrap

    # ---- lookup --------------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The class registered as ``name`` (``AxbenchConfigError`` listing the known names otherwise)."""
        self.load()
        try:
            return self._classes[name]
        except KeyError:
            prefix = f"{self.key}: " if self.key else ""
            raise AxbenchConfigError(
                f"{prefix}unknown {self.what} {name!r}; known {self.what}s: {', '.join(sorted(self._classes))}"
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self.load()
        return sorted(self._classes)

    def classes(self) -> dict[str, T]:
        """Every registered class by name, in registration order."""
        self.load()
        return dict(self._classes)

    def plugin_source(self, name: str) -> str | None:
        """The entry point that registered ``name`` (see :func:`describe_entry_point`), ``None`` for a built-in."""
        self.load()
        return self._plugins.get(name)

    # ---- loading -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """Import the package, its modules (``discover``) and the entry-point plugins, once.

        Raises:
            AxbenchConfigError: a module or plugin that fails to import, or a plugin that registers nothing.
        """
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            package = importlib.import_module(self.package)
            if self.discover:
                self._discover(package)
            if self.entry_point_group:
                for ep in sorted(entry_points(group=self.entry_point_group), key=lambda e: (e.name, e.value)):
                    self._load_entry_point(ep)
            self._loaded = True
        finally:
            self._loading = False

    def refresh(self) -> None:
        """Forget the entry-point plugins; the next lookup scans the entry points again (after a ``pip install``
        in a running session, or between tests)."""
        for name in self._plugins:
            self._classes.pop(name, None)
        for module in self._plugin_modules:
            for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
                del sys.modules[loaded]
        self._plugins.clear()
        self._plugin_modules.clear()
        self._loaded = False
        importlib.invalidate_caches()

    def _discover(self, package: ModuleType) -> None:
        found = sorted(pkgutil.iter_modules(getattr(package, "__path__", [])), key=lambda m: m.name)
        for info in found:
            if info.name.startswith("_"):
                continue
            module = f"{self.package}.{info.name}"
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise AxbenchConfigError(
                    f"{self.what} module {module} failed to import: {_one_line(exc)}"
                ) from exc

    def _load_entry_point(self, ep: EntryPoint) -> None:
        source = describe_entry_point(ep)
        before = set(self._classes)
        fail = f"{self.what} plugin {source}"
        try:
            obj = ep.load()
        except Exception as exc:
            raise AxbenchConfigError(f"{fail} failed to load: {_one_line(exc)}") from exc
        if isinstance(obj, ModuleType):
            if obj.__name__ != self.package and not obj.__name__.startswith(self.package + "."):
                self._plugin_modules.add(obj.__name__)
            mine = {
                n
                for n, cls in self._classes.items()
                if cls.__module__ == obj.__name__ or cls.__module__.startswith(obj.__name__ + ".")
            }
            added = (set(self._classes) - before) | mine
            if not added:
                raise AxbenchConfigError(
                    f"{fail} registered no {self.what}: module {obj.__name__} must decorate a class with the "
                    f"{self.what} registry's register(name)"
                )
        elif isinstance(obj, type):
            if self.base is not None and not issubclass(obj, self.base):
                raise AxbenchConfigError(
                    f"{fail} names {obj.__qualname__}, not a {self.base.__name__} subclass"
                )
            if not obj.__module__.startswith(self.package + "."):
                self._plugin_modules.add(obj.__module__)
            added = {n for n, cls in self._classes.items() if cls is obj}
            if not added:
                name = vars(obj).get(self.attribute) or ep.name
                try:
                    self.register(str(name))(obj)  # type: ignore[arg-type]
                except ValueError as exc:
                    raise AxbenchConfigError(f"{fail} cannot be registered: {exc}") from None
            added = set(self._classes) - before | {n for n, cls in self._classes.items() if cls is obj}
        else:
            raise AxbenchConfigError(
                f"{fail} names {type(obj).__name__} {obj!r}, neither a module nor a class"
            )
        for name in added:
            if not self._classes[name].__module__.startswith(self.package + "."):
                self._plugins.setdefault(name, source)


def _same_definition(a: type, b: type) -> bool:
    """The same class statement run twice (a re-imported module), not two different classes."""
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__
