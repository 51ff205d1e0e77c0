"""The registry of methods by name: built-in modules are discovered, plugins come through entry points.

Nothing lists the methods by hand. On the first lookup every public module of :mod:`axbench_kedro.methods` is
imported (a module that decorates a :class:`~axbench_kedro.methods.base.Method` subclass with :func:`register` is a
method module; helpers such as ``base``, ``trainer`` or ``rank1`` register nothing), then every entry point of the
group ``axbench_kedro.methods`` (:data:`ENTRY_POINT_GROUP`): an installed package adds methods with
``[project.entry-points."axbench_kedro.methods"] mymethod = "my_pkg.my_method"``. A plugin that cannot be loaded
stops the run with one :class:`~axbench_kedro.errors.AxbenchConfigError` naming the entry point and distribution.

Example:
    >>> from axbench_kedro.methods import get_method, list_methods
    >>> "DiffMean" in list_methods()
    True
    >>> default_methods()[:3]
    ['DiffMean', 'PCA', 'LAT']
    >>> [m.name for m in steering_methods(["DiffMean", "BoW", "Prompt"])]
    ['DiffMean', 'Prompt']
    >>> method_role("DiffMean"), method_role("Random")
    ('method', 'control')
"""

from __future__ import annotations

from collections.abc import Iterable

from axbench_kedro.methods.base import Method, MethodRole
from axbench_kedro.registry import Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "register",
    "get_method",
    "list_methods",
    "default_methods",
    "method_role",
    "method_note",
    "plugin_source",
    "refresh_methods",
    "steering_methods",
    "detection_methods",
]

ENTRY_POINT_GROUP = "axbench_kedro.methods"
"""Entry-point group of method plugins (each names a module that registers methods, or a Method class)."""

_METHODS: Registry[type[Method]] = Registry(
    "method",
    attribute="name",
    package="axbench_kedro.methods",
    discover=True,
    entry_point_group=ENTRY_POINT_GROUP,
    base=Method,
)

register = _METHODS.register
"""Class decorator: register a :class:`Method` subclass under ``name`` (sets ``cls.name``)."""


def get_method(name: str) -> Method:
    """A fresh instance of the method registered as ``name``.

    Raises:
        AxbenchConfigError: unknown name (the message lists the known ones), or a plugin that fails to load.
    """
    return _METHODS.get(name)()


def list_methods() -> list[str]:
    """Every registered method name (built-ins and plugins), sorted."""
    return _METHODS.names()


def default_methods() -> list[str]:
    """Every registered method in its default order (``training.methods: null``).

    Methods whose class sets its own :attr:`~axbench_kedro.methods.base.Method.order` (not inherited) come first,
    by order (the built-ins: DiffMean, PCA, LAT, Probe, ReFT-r1, SSV, SAE, SAE-A, BoW, Prompt, then the Random
    control); the others (plugins) follow alphabetically.
    """
    classes = _METHODS.classes()

    def rank(name: str) -> tuple[bool, float, str]:
        order = vars(classes[name]).get("order")
        return (order is None, float(order) if order is not None else 0.0, name)

    return sorted(classes, key=rank)


def method_role(name: str) -> MethodRole:
    """The :attr:`~axbench_kedro.methods.base.Method.role` of ``name``: ``"control"`` or ``"method"``.

    A name that is not registered here (e.g. a plugin method of another setting's results, not installed now) counts
    as a ``"method"``; reports never fail on it.
    """
    cls = _METHODS.classes().get(str(name))
    return cls.role if cls is not None else "method"


def method_note(name: str) -> str:
    """The :attr:`~axbench_kedro.methods.base.Method.report_note` of ``name`` (``""`` for none or an unknown name)."""
    cls = _METHODS.classes().get(str(name))
    return str(cls.report_note) if cls is not None else ""


def detection_reported(name: str) -> bool:
    """The :attr:`~axbench_kedro.methods.base.Method.detection_reported` of ``name`` (``True`` for an unknown name)."""
    cls = _METHODS.classes().get(str(name))
    return bool(cls.detection_reported) if cls is not None else True


def subset_baseline(name: str) -> str | None:
    """The :attr:`~axbench_kedro.methods.base.Method.subset_baseline` of ``name`` (``None`` for an unknown name)."""
    cls = _METHODS.classes().get(str(name))
    return cls.subset_baseline if cls is not None else None


def plugin_source(name: str) -> str | None:
    """The entry point (and distribution, with its version) that registered ``name``; ``None`` for a built-in."""
    return _METHODS.plugin_source(name)


def refresh_methods() -> None:
    """Forget the entry-point plugins; the next lookup scans the entry points again."""
    _METHODS.refresh()


def steering_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that steer (order kept; unknown names raise ``AxbenchConfigError``)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.steers]


def detection_methods(names: Iterable[str]) -> list[Method]:
    """The methods among ``names`` that have a detection score (order kept)."""
    methods = [get_method(n) for n in names]
    return [m for m in methods if m.detects]
