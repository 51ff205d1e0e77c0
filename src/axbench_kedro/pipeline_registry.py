"""Project pipelines: each folder under ``pipelines/`` is a modular pipeline in a namespace of its own name."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

__all__ = ["DEFAULT_ORDER", "register_pipelines"]

# Order of the full benchmark; `__default__` chains them.
DEFAULT_ORDER = ("datagen", "training", "latent_eval", "steering_eval", "reporting")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline folder under ``pipelines/`` plus ``__default__``.

    Each pipeline is wrapped in a Kedro namespace named after it, so kedro-viz draws datagen → training →
    latent_eval → steering_eval → reporting as collapsible groups and ``kedro run --namespaces training`` works;
    its nodes also carry a tag of the same name (kedro-viz's tag filter, ``kedro run --tags``).
    Dataset and parameter names are not prefixed (``prefix_datasets_with_namespace=False``): the catalog,
    ``--load-versions`` and ``kedro run --pipeline X`` keep the names they had.

    Returns:
        A mapping from pipeline name to ``Pipeline``.
    """
    found = find_pipelines(raise_errors=True)
    pipelines = {
        name: Pipeline(pipe, namespace=name, tags=name, prefix_datasets_with_namespace=False)
        for name, pipe in found.items()
    }
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_ORDER if name in pipelines), start=Pipeline([])
    )
    return pipelines
