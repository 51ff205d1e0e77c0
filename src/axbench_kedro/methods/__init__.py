"""AxBench methods: one module per method, registered by name (see :mod:`axbench_kedro.methods.base`).

No module is listed here: the registry discovers every module of this package on the first lookup, and loads the
entry-point plugins of the group ``axbench_kedro.methods`` (see :mod:`axbench_kedro.methods.registry`). A new
built-in method is one new module that decorates its :class:`Method` subclass with :func:`register`.

Example:
    >>> from axbench_kedro.methods import default_methods, get_method, list_methods
    >>> list_methods()
    ['BoW', 'DiffMean', 'LAT', 'PCA', 'Probe', 'Prompt', 'Random', 'ReFT-r1', 'SAE', 'SAE-A', 'SSV']
    >>> default_methods()
    ['DiffMean', 'PCA', 'LAT', 'Probe', 'ReFT-r1', 'SSV', 'SAE', 'SAE-A', 'BoW', 'Prompt', 'Random']
"""

from axbench_kedro.methods.base import DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.registry import (
    ENTRY_POINT_GROUP,
    default_methods,
    detection_methods,
    get_method,
    list_methods,
    refresh_methods,
    register,
    steering_methods,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "DetectionEncoder",
    "Method",
    "MethodArtifact",
    "default_methods",
    "detection_methods",
    "get_method",
    "list_methods",
    "refresh_methods",
    "register",
    "steering_methods",
]
