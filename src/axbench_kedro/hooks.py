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


def _as_model(value: Any, model: Any) -> Any:
    """A parameter block as its pydantic model (the context holds validated models, or plain dicts)."""
    return value if isinstance(value, model) else model.model_validate(value or {})


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
        self._preflight(pipeline, catalog, run_params.get("load_versions"))

    def _preflight(self, pipeline: Any, catalog: Any, load_versions: dict[str, str] | None = None) -> None:
        """Check ``--load-versions``, the datagen inputs, the SAE max-activation table, the steering instruction pool,
        the model path, the layer, the SAE file, the LLM credentials and the price table before any work starts
        (datagen's first node answers the negative pool with the target model before it reads the concept list or the
        provided tables; latent_eval reads the table after scoring; training reads the SAE after the activations)."""
        from axbench_kedro import preflight

        used = set(pipeline.datasets())
        preflight.check_load_versions(catalog, load_versions)
        for name in ("concept_list", "provided_train_data", "provided_latent_eval_data", "sae_max_act"):
            if name in used:  # a missing, empty or malformed input stops the run here, in one line
                catalog.load(name)
        if self._context is None:
            return
        globals_ = self._context.config_loader["globals"]
        params = self._context.params
        if "steering_instructions" in used:
            self._check_instruction_pool(used, catalog, params)
        if "target_model" in used:
            from axbench_kedro.lm.loading import read_model_config, validate_layer
            from axbench_kedro.lm.types import ModelSpec

            dims = read_model_config(ModelSpec.from_config(globals_["model"]))
            validate_layer(dims.n_layers, int(globals_["layer"]))
            if "sae_params" in used:  # a wrong SAE file would stop training only after the activations
                from axbench_kedro.config.training import TrainingParams
                from axbench_kedro.methods.registry import get_method

                training = _as_model(params.get("training"), TrainingParams)
                if any("sae" in get_method(name).requires for name in training.method_names()):
                    preflight.check_sae_file(catalog.load("sae_params"), dims.d_model, training.sae_width)
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

    @staticmethod
    def _check_instruction_pool(used: set[str], catalog: Any, params: dict[str, Any]) -> None:
        """Enough steering instructions for the instruction splits of steering_eval and suppression."""
        from axbench_kedro import preflight
        from axbench_kedro.config.steering_eval import SteeringEvalParams

        needs = {}
        if "params:steering_eval" in used:
            split = _as_model(params.get("steering_eval"), SteeringEvalParams).instructions
            needs["steering_eval.instructions"] = split.total
        if "params:suppression.steering" in used:
            suppression = params.get("suppression") or {}
            steering = getattr(suppression, "steering", None) or dict(suppression).get("steering")
            split = _as_model(steering, SteeringEvalParams).instructions
            needs["suppression.steering.instructions"] = split.total
        source = catalog.get("steering_instructions")._describe().get("filepath", "steering_instructions")
        preflight.check_instruction_pool(catalog.load("steering_instructions"), str(source), needs)

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
