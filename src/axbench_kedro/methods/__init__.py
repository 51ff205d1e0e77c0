"""AxBench methods: one module per method, registered by name (see :mod:`axbench_kedro.methods.base`).

Example:
    >>> from axbench_kedro.methods import get_method, list_methods
    >>> list_methods()
    ['BoW', 'DiffMean', 'LAT', 'PCA', 'Probe', 'Prompt', 'ReFT-r1', 'SAE', 'SAE-A', 'SSV']
"""

from axbench_kedro.methods import bow, diffmean, lat, pca, probe, prompt, reft_r1, sae, ssv  # noqa: F401
from axbench_kedro.methods.base import DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.registry import (
    detection_methods,
    get_method,
    list_methods,
    register,
    steering_methods,
)

__all__ = [
    "DetectionEncoder",
    "Method",
    "MethodArtifact",
    "detection_methods",
    "get_method",
    "list_methods",
    "register",
    "steering_methods",
]
