"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Order of the full benchmark; `__default__` chains them.
DEFAULT_ORDER = ("datagen", "training", "latent_eval", "steering_eval", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder under ``pipelines/`` plus ``__default__``.

    Returns:
        A mapping from pipeline name to ``Pipeline``.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_ORDER if name in pipelines), start=Pipeline([])
    )
    return pipelines
