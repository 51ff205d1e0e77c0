"""Optional experiment tracking with MLflow: the ``mlflow`` extra (``pip install -e ".[mlflow]"``).

How it fits together
--------------------
* **kedro-mlflow** (the Kedro-native integration, ``kedro-mlflow>=2.0,<3``) registers its ``MlflowHook`` through the
  ``kedro.hooks`` entry point as soon as it is installed; nothing in this project names it. The hook reads
  ``conf/<env>/mlflow.yml`` (``conf/base/mlflow.yml`` here: tracking URI, experiment, parameter flattening), opens one
  MLflow run per ``kedro run`` (``$MLFLOW_TRACKING_URI`` if set, else the file store ``mlruns/`` in the project
  root), logs the parameters each node reads, and closes the run (``FAILED`` when the pipeline raises).
* :class:`MlflowTrackingHooks` (this module, registered in ``settings.py``) adds what kedro-mlflow cannot know:

  - every parameter block of the run (``run``, ``datagen``, ``training``, ``latent_eval``, ``steering_eval``,
    ``reporting``, ...), flattened with ``.`` exactly as kedro-mlflow flattens node parameters (so the keys and
    values agree), also when the pipeline's nodes read only some of them;
  - the detection metrics per method, ``latent.<method>.<column>`` = mean over concepts of each numeric
    ``latent_metrics`` column (``roc_auc``, ``f1``, ``auroc_imb``, ...) plus ``latent.<method>.n_concepts``;
  - the steering metrics per method, ``steering.<method>.<column>`` from ``steering_summary`` (``overall`` and its
    parts ``concept`` / ``instruction`` / ``fluency``, ``perplexity``, ``winrate_vs_prompt``, ``ci_low`` /
    ``ci_high``, ``n_concepts``, ``parse_failures``) and the tag ``axbench.judge_kind``;
  - the files of the reporting pipeline's outputs (leaderboards, detection and steering tables, plots, run card)
    as artifacts under ``reporting/`` (the version written by this run);
  - the wall time per pipeline (node namespace) and of the whole run: ``wall_s.<pipeline>``, ``wall_s.total``.

  Metrics are logged whenever the run *uses* ``latent_metrics`` / ``steering_summary`` (as an output, or as the
  input the reporting pipeline read, honouring ``--load-versions``); artifacts only when the run wrote them.

Without the extra
-----------------
The hook never imports mlflow: it looks for an already imported ``mlflow`` module (kedro-mlflow imports it when
its entry-point hook loads) and an active run, and otherwise returns at once. Without the extra no catalog entry,
config file or import needs mlflow, so the default install and ``kedro run`` behave exactly as before (the
unused ``conf/base/mlflow.yml`` is only read by kedro-mlflow). A failure while logging is reported as a warning and
never fails a benchmark run.

Why a hook rather than kedro-mlflow's catalog wrappers
------------------------------------------------------
``MlflowArtifactDataset`` / ``MlflowMetricsHistoryDataset`` entries in ``catalog*.yml`` would make the catalog fail
to load when kedro-mlflow is not installed, and the metrics wanted here are aggregates of existing datasets rather
than node outputs of their own.

Compatibility (checked with Kedro 1.7.0, kedro-mlflow 2.0.3, MLflow 3.17.2)
--------------------------------------------------------------------------
kedro-mlflow 2.0.3 requires ``kedro>=1,<2`` and ``mlflow>=3,<4`` and its hooks match Kedro 1.7's hook
specifications (``after_context_created``, ``after_catalog_created``, ``before/after_pipeline_run``,
``before_node_run``, ``on_pipeline_error``). Two things need care:

* MLflow 3.x keeps the file store in maintenance mode and raises on ``mlruns/`` unless
  ``MLFLOW_ALLOW_FILE_STORE=true``; ``settings.py`` sets that default (a server or ``sqlite:`` URI is unaffected).
* kedro-mlflow's defaults log dict parameters unflattened and *fail* the run on values longer than MLflow's limit;
  ``conf/base/mlflow.yml`` flattens them and truncates instead. kedro-mlflow flattens only plain dicts: the blocks
  Kedro 1.7 validates into pydantic models (``params:run`` -> ``RunSettings``, ...) it logs as one param holding the
  model's repr (``run`` = ``setting='…' layer=9 seed=42``), next to this hook's flattened ``run.setting`` etc.

Installing the extra pins ``pyarrow<26`` (MLflow's bound) and ``python-dateutil<3`` (graphene, via MLflow's UI
server); ``pip check`` stays clean.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.framework.hooks import hook_impl

if TYPE_CHECKING:  # pandas is imported lazily: settings.py imports this module on every Kedro start
    import pandas as pd

__all__ = [
    "ARTIFACT_PIPELINES",
    "LATENT_METRICS",
    "STEERING_SUMMARY",
    "MlflowTrackingHooks",
    "flatten_params",
    "latent_metric_values",
    "steering_metric_values",
]

logger = logging.getLogger(__name__)

LATENT_METRICS = "latent_metrics"
STEERING_SUMMARY = "steering_summary"
ARTIFACT_PIPELINES = ("reporting",)

# MLflow's limits (mlflow.utils.validation), repeated so that this module never needs mlflow to import.
_MAX_PARAM_VAL_LENGTH = 6000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_KEY_UNSAFE = re.compile(r"[^/\w.\- :]")
# Parameters never hold credentials (those live in credentials.yml / the environment); a leaf named like one is
# still never sent.
_SECRET_LEAF = re.compile(
    r"(^|[_.-])(api_?key|access_key|secret(_access)?_key|password|passwd|secret|token)$", re.I
)

# kedro-mlflow's KedroPipelineModel (a pyfunc model class it defines at import) triggers this MLflow notice. Silenced
# where the settings load before kedro-mlflow (KedroSession from Python, notebooks); the `kedro` CLI imports the
# plugin's commands earlier and still shows it once.
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method", category=UserWarning)


def _mlflow() -> Any:
    """The ``mlflow`` module if something (kedro-mlflow, the user) already imported it, else ``None``.

    Never imports it: no MLflow run can be active before ``mlflow`` is imported, and the default install must not pay
    for (or need) the import.
    """
    return sys.modules.get("mlflow")


def _active_run_id(mlflow: Any) -> str | None:
    """The id of the active MLflow run of this thread, or ``None`` (no mlflow, no run)."""
    if mlflow is None:
        return None
    try:
        run = mlflow.active_run()
    except Exception:
        return None
    return None if run is None else str(run.info.run_id)


def _key(text: Any) -> str:
    """``text`` as an MLflow key: characters MLflow rejects become ``_`` (as kedro-mlflow sanitises names)."""
    return _KEY_UNSAFE.sub("_", str(text))


def _as_plain(value: Any) -> Any:
    """A typed parameter block as a dict: Kedro 1.7 validates ``params:`` inputs into the pydantic models (or
    dataclasses) of the node signatures, so ``parameters`` holds models for the blocks the run's nodes read."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")  # SecretStr fields come out masked
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def flatten_params(params: Mapping[str, Any], sep: str = ".") -> dict[str, str]:
    """Parameters as MLflow params: nested dicts flattened with ``sep``, values as ``str`` (kedro-mlflow's rules).

    Typed blocks (pydantic models, dataclasses) are flattened like dicts, with every field the run used (defaults
    included). Empty dicts yield no key (as in kedro-mlflow), values longer than MLflow's limit are truncated
    (kedro-mlflow's ``long_params_strategy: truncate``), and leaves named like a secret (``api_key``, ``password``,
    ``token``, ...) are dropped.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        value = _as_plain(value)
        if isinstance(value, Mapping):
            for key, sub in value.items():
                walk(f"{prefix}{sep}{key}" if prefix else str(key), sub)
            return
        leaf = prefix.rsplit(sep, 1)[-1]
        if _SECRET_LEAF.search(leaf):
            logger.warning("MLflow tracking: parameter %s looks like a secret and is not logged", prefix)
            return
        out[_key(prefix)] = str(value)[:_MAX_PARAM_VAL_LENGTH]

    for name, value in params.items():
        walk(str(name), value)
    return out


def _method_means(frame: pd.DataFrame | None, prefix: str, counts: bool) -> dict[str, float]:
    """``<prefix>.<method>.<column>``: per-method mean of each numeric column (NaN skipped, all-NaN dropped).

    ``counts``: keep the ``n_*`` columns too.
    """
    import pandas as pd

    if frame is None or not isinstance(frame, pd.DataFrame) or frame.empty or "method" not in frame.columns:
        return {}
    numeric = [
        c
        for c in frame.columns
        if c not in ("concept_id", "method")
        and (counts or not c.startswith("n_"))
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    out: dict[str, float] = {}
    grouped = frame.groupby("method", sort=False)
    means = grouped[numeric].mean() if numeric else pd.DataFrame(index=list(grouped.groups))
    for method, row in means.iterrows():
        for column, value in row.items():
            if pd.notna(value):
                out[f"{prefix}.{_key(method)}.{_key(column)}"] = float(value)
    return out


def latent_metric_values(latent_metrics: pd.DataFrame | None) -> dict[str, float]:
    """Detection metrics per method from ``latent_metrics`` (one row per concept and method).

    Returns:
        ``latent.<method>.<column>`` = mean over the method's concepts of every numeric column except ids and
        ``n_*`` counts (``roc_auc``, ``f1``, ``precision``, ``macro_acc``, ``auroc_imb``, ...), and
        ``latent.<method>.n_concepts``.
    """
    out = _method_means(latent_metrics, "latent", counts=False)
    if out and latent_metrics is not None:
        ids = "concept_id" if "concept_id" in latent_metrics.columns else "method"
        counts = latent_metrics.groupby("method", sort=False)[ids].nunique()
        out.update({f"latent.{_key(m)}.n_concepts": float(n) for m, n in counts.items()})
    return out


def steering_metric_values(steering_summary: pd.DataFrame | None) -> dict[str, float]:
    """Steering metrics per method from ``steering_summary`` (one row per method).

    Returns:
        ``steering.<method>.<column>`` for every numeric column: ``overall`` (the Overall Score), ``concept``,
        ``instruction``, ``fluency``, ``perplexity``, ``winrate_vs_prompt``, ``ci_low``, ``ci_high``,
        ``n_concepts``, ``parse_failures`` (a mean should a method have several rows).
    """
    return _method_means(steering_summary, "steering", counts=True)


def _written_path(dataset: Any) -> Path | None:
    """The local file (or folder) a dataset's last save in this run wrote, or ``None`` (memory / remote / missing).

    Versioned datasets: ``<filepath>/<save version>/<name>``, the session's save version.
    """
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None or getattr(dataset, "_protocol", "file") not in ("file", "", None):
        return None
    path = filepath
    if getattr(dataset, "_version", None) is not None and hasattr(dataset, "resolve_save_version"):
        try:
            path = dataset._get_versioned_path(dataset.resolve_save_version())
        except Exception:  # a dataset with its own versioning scheme: fall back to the plain path
            path = filepath
    local = Path(str(path))
    return local if local.exists() else None


def _registered_outputs(names: Iterable[str]) -> dict[str, str]:
    """Output dataset -> registered pipeline name, for the named registered pipelines (empty outside a project)."""
    try:
        from kedro.framework.project import pipelines
    except Exception:  # pragma: no cover - kedro always ships it
        return {}
    owner: dict[str, str] = {}
    for name in names:
        try:
            registered = pipelines.get(name)
        except Exception:  # no project configured (a bare runner), or a registry that fails to load
            registered = None
        if registered is not None:
            for output in registered.all_outputs():
                owner.setdefault(output, name)
    return owner


class MlflowTrackingHooks:
    """Logs all parameters, per-method detection / steering metrics and the report files to the active MLflow run.

    Args:
        artifact_pipelines: registered pipelines whose outputs (files written by the run) are logged as artifacts,
            each under ``<pipeline name>/``.
    """

    def __init__(self, artifact_pipelines: Iterable[str] = ARTIFACT_PIPELINES) -> None:
        self._artifact_pipelines = tuple(artifact_pipelines)
        self._run_id: str | None = None
        self._lock = threading.Lock()  # node hooks run in worker threads under ThreadRunner
        self._node_start: dict[str, float] = {}
        self._walls: dict[str, float] = {}
        self._run_start = 0.0

    # --- hooks ------------------------------------------------------------------------------------------------------
    @hook_impl(wrapper=True)  # wraps the other before_pipeline_run hooks (kedro-mlflow's opens the run)
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> Any:
        self._run_id = None
        before = _active_run_id(_mlflow())
        try:
            result = yield
        except BaseException:
            # e.g. ProjectHooks' preflight check failed after kedro-mlflow opened the run: Kedro calls no
            # on_pipeline_error for a before_pipeline_run failure, so the run would stay RUNNING and active in this
            # process (where the next KedroSession would log into it).
            self._close_failed_run(before)
            raise
        mlflow = _mlflow()
        run_id = _active_run_id(mlflow)
        if run_id is not None:
            self._run_id = run_id
            self._run_start = time.perf_counter()
            self._node_start.clear()
            self._walls.clear()
            self._guard("parameters", self._log_params, mlflow, catalog)
        return result

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        if self._run_id is not None:
            with self._lock:
                self._node_start[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        if self._run_id is None:
            return
        with self._lock:
            started = self._node_start.pop(node.name, None)
            if started is not None:  # each registered pipeline is a namespace of its own name
                key = node.namespace.split(".")[0] if node.namespace else "other"
                self._walls[key] = self._walls.get(key, 0.0) + time.perf_counter() - started

    @hook_impl(tryfirst=True)  # before kedro-mlflow's after_pipeline_run, which ends the run
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        mlflow = _mlflow()
        if self._run_id is None or mlflow is None:
            self._run_id = None
            return
        try:
            self._guard("metrics", self._log_metrics, mlflow, pipeline, catalog)
            self._guard("artifacts", self._log_artifacts, mlflow, pipeline, catalog)
        finally:
            self._run_id = None

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._run_id = None

    # --- logging ----------------------------------------------------------------------------------------------------
    def _close_failed_run(self, before: str | None) -> None:
        """End, as FAILED, the run opened during a ``before_pipeline_run`` that raised (not one opened earlier)."""
        mlflow = _mlflow()
        run_id = _active_run_id(mlflow)
        if run_id is None or run_id == before:
            return
        try:
            mlflow.end_run(status="FAILED")
            logger.info("MLflow tracking: run %s closed as FAILED (the pipeline did not start)", run_id)
        except Exception as exc:
            logger.warning("MLflow tracking: could not close run %s: %s", run_id, exc)

    def _guard(self, what: str, func: Any, *args: Any) -> None:
        try:
            func(*args)
        except Exception as exc:  # tracking must never fail a benchmark run
            logger.warning("MLflow tracking: could not log the %s of run %s: %s", what, self._run_id, exc)

    def _log_params(self, mlflow: Any, catalog: Any) -> None:
        from mlflow.entities import Param

        if "parameters" not in catalog:
            return
        parameters = catalog.load("parameters") or {}
        client = mlflow.MlflowClient()
        items = [Param(k, v) for k, v in sorted(flatten_params(parameters).items())]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            client.log_batch(self._run_id, params=items[start : start + _PARAMS_PER_BATCH], synchronous=True)
        run = _as_plain(parameters.get("run"))
        if isinstance(run, Mapping) and run.get("setting") is not None:
            client.set_tag(self._run_id, "axbench.setting", str(run["setting"]))
        logger.info("MLflow tracking: %d parameters logged to run %s", len(items), self._run_id)

    def _load_used(self, pipeline: Any, catalog: Any, name: str) -> Any:
        if name not in pipeline.datasets() or name not in catalog or not catalog.exists(name):
            return None
        return catalog.load(name)

    def _log_metrics(self, mlflow: Any, pipeline: Any, catalog: Any) -> None:
        from mlflow.entities import Metric

        client = mlflow.MlflowClient()
        values: dict[str, float] = {}
        latent = self._load_used(pipeline, catalog, LATENT_METRICS)
        values.update(latent_metric_values(latent))
        steering = self._load_used(pipeline, catalog, STEERING_SUMMARY)
        values.update(steering_metric_values(steering))
        if steering is not None and "judge_kind" in getattr(steering, "columns", ()) and len(steering):
            client.set_tag(self._run_id, "axbench.judge_kind", str(steering["judge_kind"].iloc[0]))
        with self._lock:
            values.update({f"wall_s.{_key(name)}": round(wall, 3) for name, wall in self._walls.items()})
        values["wall_s.total"] = round(time.perf_counter() - self._run_start, 3)
        now = int(time.time() * 1000)
        items = [Metric(k, v, now, 0) for k, v in sorted(values.items())]
        for start in range(0, len(items), _METRICS_PER_BATCH):
            client.log_batch(
                self._run_id, metrics=items[start : start + _METRICS_PER_BATCH], synchronous=True
            )
        logger.info("MLflow tracking: %d metrics logged to run %s", len(items), self._run_id)

    def _log_artifacts(self, mlflow: Any, pipeline: Any, catalog: Any) -> None:
        owner = _registered_outputs(self._artifact_pipelines)
        wanted = sorted(set(owner) & set(pipeline.all_outputs()))
        if not wanted:
            return
        client = mlflow.MlflowClient()
        logged = 0
        for name in wanted:
            path = _written_path(catalog.get(name))
            if path is None:
                continue
            if path.is_dir():
                client.log_artifacts(self._run_id, str(path), artifact_path=f"{owner[name]}/{name}")
            else:
                client.log_artifact(self._run_id, str(path), artifact_path=owner[name])
            logged += 1
        logger.info("MLflow tracking: %d report files logged to run %s", logged, self._run_id)
