"""Project hooks: fail fast on bad configuration before any node runs, and log each pipeline's wall time.

The wall times stay outside the graph: they describe this run's process, not a result, so they are logged (and
recorded by the MLflow tracking hook when it is active) rather than written to a catalog dataset.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

__all__ = ["ProjectHooks"]


class ProjectHooks:
    """Hooks registered in ``settings.py``."""

    def __init__(self) -> None:
        self._context: Any = None
        self._node_start: dict[str, float] = {}
        self._walls: dict[str, float] = defaultdict(float)
        self._run_start = 0.0

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._run_start = time.perf_counter()
        self._walls.clear()
        self._preflight(pipeline, catalog)

    def _preflight(self, pipeline: Any, catalog: Any) -> None:
        """Check the datagen inputs, the SAE max-activation table, the model path, the layer, the LLM credentials and
        the price table before any work starts (datagen's first node answers the negative pool with the target model
        before it reads the concept list or the provided tables; latent_eval reads the table after scoring)."""
        used = set(pipeline.datasets())
        for name in ("concept_list", "provided_train_data", "provided_latent_eval_data", "sae_max_act"):
            if name in used:  # a missing, empty or malformed input stops the run here, in one line
                catalog.load(name)
        if self._context is None:
            return
        globals_ = self._context.config_loader["globals"]
        if "target_model" in used:
            from axbench_kedro.lm.loading import check_model_spec
            from axbench_kedro.lm.types import ModelSpec

            spec = ModelSpec.from_config(globals_["model"])
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
        if needed_clients and "llm_prices" in used:
            from axbench_kedro.llm.ledger import PriceTable

            PriceTable.from_config(catalog.load("llm_prices"))  # a bad price table stops the run here

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any) -> None:
        started = self._node_start.pop(node.name, None)
        if started is None:
            return
        # Each registered pipeline is a namespace (pipeline_registry), so a node's namespace names its pipeline.
        self._walls[node.namespace or "other"] += time.perf_counter() - started

    @hook_impl
    def after_pipeline_run(self, catalog: Any) -> None:
        total = time.perf_counter() - self._run_start
        parts = ", ".join(f"{name} {wall:.1f}s" for name, wall in self._walls.items())
        logger.info("Wall time per pipeline: %s; whole run %.1fs", parts or "none", total)
