"""Project hooks: fail fast on bad configuration before any node runs, and time each pipeline."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from kedro.framework.hooks import hook_impl

from axbench_kedro.errors import AxbenchConfigError

logger = logging.getLogger(__name__)

__all__ = ["ProjectHooks"]

TIMINGS_DATASET = "pipeline_timings"


def _pipeline_of_nodes() -> dict[str, str]:
    """Map each node name to the first registered (non-default) pipeline that holds it."""
    from kedro.framework.project import pipelines

    from axbench_kedro.pipeline_registry import DEFAULT_ORDER

    owner: dict[str, str] = {}
    names = [n for n in DEFAULT_ORDER if n in pipelines] + [n for n in pipelines if n not in DEFAULT_ORDER]
    for name in names:
        if name == "__default__":
            continue
        for node in pipelines[name].nodes:
            owner.setdefault(node.name, name)
    return owner


class ProjectHooks:
    """Hooks registered in ``settings.py``."""

    def __init__(self) -> None:
        self._context: Any = None
        self._node_start: dict[str, float] = {}
        self._walls: dict[str, float] = defaultdict(float)
        self._owner: dict[str, str] = {}
        self._run_start = 0.0

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._run_start = time.perf_counter()
        self._walls.clear()
        self._owner = _pipeline_of_nodes()
        self._preflight(pipeline, catalog)
        self._save_timings(catalog)

    def _preflight(self, pipeline: Any, catalog: Any) -> None:
        """Check the model path, the layer and the LLM credentials before any work starts."""
        if self._context is None:
            return
        globals_ = self._context.config_loader["globals"]
        used = set(pipeline.datasets())
        if "target_model" in used:
            from axbench_kedro.lm.loading import check_model_spec
            from axbench_kedro.lm.types import ModelSpec

            try:
                spec = ModelSpec(**globals_["model"])
            except TypeError as exc:
                raise AxbenchConfigError(f"globals.yml: bad key under 'model': {exc}") from None
            check_model_spec(spec, int(globals_["layer"]))
        needed_clients = []
        if "generator_llm" in used:
            needed_clients.append("generator_llm")
        if "judge_llm" in used and globals_.get("judge", {}).get("kind") == "llm":
            needed_clients.append("judge_llm")
        for name in needed_clients:
            dataset = catalog.get(name)
            validate = getattr(dataset, "validate", None)
            if callable(validate):
                validate()

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any) -> None:
        started = self._node_start.pop(node.name, None)
        if started is None:
            return
        self._walls[self._owner.get(node.name, "other")] += time.perf_counter() - started
        self._save_timings(catalog)

    @hook_impl
    def after_pipeline_run(self, catalog: Any) -> None:
        total = time.perf_counter() - self._run_start
        parts = ", ".join(f"{name} {wall:.1f}s" for name, wall in self._walls.items())
        logger.info("Wall time per pipeline: %s; whole run %.1fs", parts or "none", total)

    def _save_timings(self, catalog: Any) -> None:
        """Merge this run's walls into the ``pipeline_timings`` dataset (earlier runs' pipelines are kept)."""
        if TIMINGS_DATASET not in catalog:
            return
        previous: dict[str, Any] = {}
        try:
            if catalog.exists(TIMINGS_DATASET):
                previous = dict(catalog.load(TIMINGS_DATASET) or {})
        except Exception:  # a corrupt timings file must never stop a run
            previous = {}
        previous.update({name: round(wall, 2) for name, wall in self._walls.items()})
        catalog.save(TIMINGS_DATASET, previous)
