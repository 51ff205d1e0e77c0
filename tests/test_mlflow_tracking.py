"""Optional MLflow tracking (``pip install -e ".[mlflow]"``, ``axbench_kedro.tracking``).

* End to end: a real ``KedroSession.run`` of the reporting pipeline on a temporary project copy (synthetic upstream
  results, ``tests/reporting/project.py``) with kedro-mlflow active and ``MLFLOW_TRACKING_URI`` on a temporary file
  store: every parameter block, the per-method detection and steering metrics (numbers recomputed from the frames
  the run read) and the report files end up in one finished MLflow run, and the planted API key nowhere.
* The hook on its own, on a run opened by hand (no kedro-mlflow), and as a no-op when mlflow is not importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node

from axbench_kedro.tracking import (
    MlflowTrackingHooks,
    flatten_params,
    latent_metric_values,
    steering_metric_values,
)
from reporting import synthetic
from reporting.project import (
    CURRENT_SETTING,
    PLANTED_KEY,
    files_containing,
    make_project_copy,
    populate,
    run_reporting,
    session,
)

BLOCKS = ("run", "datagen", "training", "latent_eval", "steering_eval", "reporting", "suppression")
REPORT_FILES = {
    "leaderboard.csv", "leaderboard_wide.csv", "leaderboard.md", "detection.csv", "detection.md",
    "steering_components.csv", "win_rates.csv", "judge_health.csv", "llm_usage.csv", "steering.md", "run_card.md",
    "mean_roc.png", "score_vs_factor.png", "steering_components.png", "selected_factor.png", "auroc_vs_score.png",
}  # fmt: skip


def _end_all_runs(mlflow: Any) -> None:
    while mlflow.active_run() is not None:
        mlflow.end_run()


# --- end to end: kedro-mlflow + the project hook on a real reporting run ---------------------------------------------


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One reporting run of a populated project copy, tracked in a temporary MLflow file store."""
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("kedro_mlflow", reason="the mlflow extra (kedro-mlflow) is not installed")
    base = tmp_path_factory.mktemp("mlflow_tracking")
    store = base / "mlruns"
    uri = store.as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        _end_all_runs(mlflow)
        project = make_project_copy(base / "project")
        populate(project)
        run_reporting(project)
        _end_all_runs(mlflow)
        with session(project) as sess:
            context = sess.load_context()
            params = context.params  # the blocks as the nodes get them (Kedro 1.7: pydantic models)
            raw = context.config_loader["parameters"]  # the YAML values
            latent = context.catalog.load("latent_metrics")
            summary = context.catalog.load("steering_summary")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("axbench_kedro")
    assert experiment is not None, "kedro-mlflow did not create the experiment of conf/base/mlflow.yml"
    runs = client.search_runs([experiment.experiment_id])
    yield {
        "client": client,
        "runs": runs,
        "store": store,
        "project": project,
        "params": params,
        "raw": raw,
        "latent": latent,
        "summary": summary,
    }
    mlflow.set_tracking_uri(None)  # kedro-mlflow set the process-wide URI: leave no trace for other tests


def test_one_finished_run_per_kedro_run(tracked: dict[str, Any]) -> None:
    (run,) = tracked["runs"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["axbench.setting"] == CURRENT_SETTING
    assert run.data.tags["axbench.judge_kind"] == "proxy"
    # The store is the one MLFLOW_TRACKING_URI named, not mlruns/ in the project root.
    assert not (tracked["project"] / "mlruns").exists()


def test_every_parameter_block_is_logged_flattened(tracked: dict[str, Any]) -> None:
    (run,) = tracked["runs"]
    logged = run.data.params
    for block in BLOCKS:
        assert any(key.startswith(f"{block}.") for key in logged), block
    raw = tracked["raw"]
    assert logged["run.setting"] == CURRENT_SETTING
    assert logged["run.layer"] == str(raw["run"]["layer"])
    assert logged["run.seed"] == str(raw["run"]["seed"])
    assert logged["reporting.n_resamples"] == str(raw["reporting"]["n_resamples"])
    assert logged["reporting.model.name_or_path"] == str(raw["reporting"]["model"]["name_or_path"])
    assert logged["datagen.max_concepts"] == str(raw["datagen"]["max_concepts"])
    assert logged["steering_eval.judge.kind"] == str(raw["steering_eval"]["judge"]["kind"])
    # Exactly the run's parameters, flattened (kedro-mlflow's per-node logging agrees with the hook's).
    expected = flatten_params(tracked["params"])
    # Kedro validates (fills the nested defaults of) only the parameters of the pipelines a run runs: this reporting
    # run leaves the suppression block as the YAML spells it, so only its unspelled defaults may be missing.
    missing = set(expected) - set(logged)
    assert all(key.startswith("suppression.") for key in missing), sorted(missing)[:5]
    assert {k: logged[k] for k in expected if k in logged} == {
        k: v for k, v in expected.items() if k in logged
    }


def test_detection_and_steering_metrics_per_method(tracked: dict[str, Any]) -> None:
    (run,) = tracked["runs"]
    metrics = run.data.metrics
    latent, summary = tracked["latent"], tracked["summary"]
    assert set(latent["method"]) == set(synthetic.DETECTORS)
    for method, group in latent.groupby("method"):
        for column in ("roc_auc", "f1", "precision", "recall", "macro_acc", "auroc_imb"):
            assert metrics[f"latent.{method}.{column}"] == pytest.approx(group[column].mean()), (
                method,
                column,
            )
        assert metrics[f"latent.{method}.n_concepts"] == group["concept_id"].nunique()
    parts = [
        "overall",
        "concept",
        "instruction",
        "fluency",
        "perplexity",
        "winrate_vs_prompt",
        "ci_low",
        "ci_high",
    ]
    parts = [c for c in parts if c in summary.columns]  # the synthetic summary has the Score and its parts
    assert {"overall", "concept", "instruction", "fluency"} <= set(parts)
    assert set(summary["method"]) == set(synthetic.RANK1 + synthetic.FACTOR_FREE)
    for rec in summary.to_dict("records"):
        method = rec["method"]
        for column in parts:
            if pd.notna(rec[column]):
                assert metrics[f"steering.{method}.{column}"] == pytest.approx(rec[column]), (method, column)
        assert metrics[f"steering.{method}.n_concepts"] == rec["n_concepts"]
    assert metrics["wall_s.reporting"] > 0 and metrics["wall_s.total"] >= metrics["wall_s.reporting"]


def test_report_files_are_artifacts(tracked: dict[str, Any]) -> None:
    (run,) = tracked["runs"]
    client, project = tracked["client"], tracked["project"]
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "reporting")}
    assert logged >= REPORT_FILES, REPORT_FILES - logged
    # The artifact is the file this run wrote (the version under data/08_reporting/<setting>/report/).
    local = Path(client.download_artifacts(run.info.run_id, "reporting/leaderboard.csv", str(project / "dl")))
    (written,) = (project / "data" / "08_reporting" / CURRENT_SETTING / "report" / "leaderboard.csv").glob(
        "*/*"
    )
    assert local.read_bytes() == written.read_bytes()


def test_no_secret_reaches_mlflow(tracked: dict[str, Any]) -> None:
    (run,) = tracked["runs"]
    assert files_containing(tracked["store"], PLANTED_KEY) == []
    assert not [v for v in {**run.data.params, **run.data.tags}.values() if PLANTED_KEY in v]
    # The reporting block embeds the model / generator / judge globals: no credential key in there.
    reporting = flatten_params({"reporting": tracked["raw"]["reporting"]})
    assert not [
        k for k in reporting if any(s in k.lower() for s in ("api_key", "password", "secret", "token."))
    ]


# --- the hook alone ---------------------------------------------------------------------------------------------------


def _latent_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "concept_id": [0, 1, 0, 1],
            "method": ["DiffMean", "DiffMean", "Probe", "Probe"],
            "roc_auc": [0.9, 0.7, 0.6, None],
            "f1": [0.5, 0.25, 0.4, 0.2],
            "n_positive": [6, 6, 6, 6],
        }
    ).astype({"roc_auc": "float64"})


def test_metric_values_are_means_over_concepts() -> None:
    values = latent_metric_values(_latent_frame())
    assert values == pytest.approx(
        {
            "latent.DiffMean.roc_auc": 0.8, "latent.DiffMean.f1": 0.375, "latent.DiffMean.n_concepts": 2,
            "latent.Probe.roc_auc": 0.6, "latent.Probe.f1": 0.3, "latent.Probe.n_concepts": 2,
        }
    )  # fmt: skip
    summary = pd.DataFrame(
        {"method": ["SAE-A"], "judge_kind": ["proxy"], "overall": [0.5], "n_concepts": [4]}
    )
    assert steering_metric_values(summary) == {
        "steering.SAE-A.overall": 0.5,
        "steering.SAE-A.n_concepts": 4.0,
    }
    assert latent_metric_values(pd.DataFrame()) == {} and steering_metric_values(None) == {}


def test_flatten_params_drops_secret_like_leaves() -> None:
    flat = flatten_params({"a": {"b": [1, 2], "api_key": "x", "max_tokens": 3, "empty": {}}, "c": "y" * 7000})
    assert flat == {"a.b": "[1, 2]", "a.max_tokens": "3", "c": "y" * 6000}


def _tiny() -> tuple[Pipeline, DataCatalog]:
    catalog = DataCatalog(
        {
            "parameters": MemoryDataset({"run": {"setting": "tiny", "layer": 3, "seed": 1}, "x": {"y": 2}}),
            "latent_scores": MemoryDataset(_latent_frame()),
        }
    )
    pipe = Pipeline([node(lambda frame: frame, "latent_scores", "latent_metrics", name="metrics")])
    return pipe, catalog


def _manager(*hooks: Any) -> Any:
    """A Kedro hook manager with ``hooks`` registered in this order (pluggy calls the last registered first)."""
    from kedro.framework.hooks.manager import _create_hook_manager

    manager = _create_hook_manager()
    for hook in hooks:
        manager.register(hook)
    return manager


def _session_like_run(manager: Any, pipe: Pipeline, catalog: Any) -> None:
    """What ``KedroSession.run`` does around the runner."""
    from kedro.runner import SequentialRunner

    manager.hook.before_pipeline_run(run_params={}, pipeline=pipe, catalog=catalog)
    SequentialRunner().run(pipe, catalog, manager)
    manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=pipe, catalog=catalog)


@pytest.fixture
def local_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    _end_all_runs(mlflow)
    mlflow.set_experiment("tiny")  # the process-wide experiment may still point into another test's store
    try:
        yield mlflow, uri
    finally:
        _end_all_runs(mlflow)
        mlflow.set_tracking_uri(None)


def test_hook_logs_to_a_run_opened_by_hand(local_store: tuple[Any, str]) -> None:
    mlflow, uri = local_store
    pipe, catalog = _tiny()
    with mlflow.start_run() as run:
        _session_like_run(_manager(MlflowTrackingHooks()), pipe, catalog)
    data = mlflow.MlflowClient(tracking_uri=uri).get_run(run.info.run_id).data
    assert data.params == {"run.setting": "tiny", "run.layer": "3", "run.seed": "1", "x.y": "2"}
    assert data.metrics["latent.DiffMean.roc_auc"] == pytest.approx(0.8)
    assert data.metrics["latent.Probe.f1"] == pytest.approx(0.3)
    assert {"wall_s.other", "wall_s.total"} <= set(data.metrics)
    assert data.tags["axbench.setting"] == "tiny"


class _OpensRun:
    """Stands in for kedro-mlflow's hook: opens the MLflow run in ``before_pipeline_run``."""

    @hook_impl
    def before_pipeline_run(self) -> None:
        import mlflow

        mlflow.start_run()


class _FailsPreflight:
    """Stands in for ProjectHooks' preflight check failing."""

    @hook_impl
    def before_pipeline_run(self) -> None:
        raise RuntimeError("preflight failed")


def test_run_opened_for_a_pipeline_that_never_starts_is_closed_as_failed(
    local_store: tuple[Any, str],
) -> None:
    mlflow, uri = local_store
    pipe, catalog = _tiny()
    manager = _manager(
        _FailsPreflight(), MlflowTrackingHooks(), _OpensRun()
    )  # opener runs first, as kedro-mlflow
    with pytest.raises(RuntimeError, match="preflight"):
        manager.hook.before_pipeline_run(run_params={}, pipeline=pipe, catalog=catalog)
    assert mlflow.active_run() is None
    (run,) = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [mlflow.get_experiment_by_name("tiny").experiment_id]
    )
    assert run.info.status == "FAILED"
    # A run the caller opened before the session is the caller's: left open.
    with mlflow.start_run() as own:
        with pytest.raises(RuntimeError):
            _manager(_FailsPreflight(), MlflowTrackingHooks()).hook.before_pipeline_run(
                run_params={}, pipeline=pipe, catalog=catalog
            )
        assert mlflow.active_run().info.run_id == own.info.run_id


class _Untouchable:
    """A catalog that fails the test when the hook touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the hook used the catalog ({name}) without an MLflow run")

    def __contains__(self, name: str) -> bool:
        raise AssertionError("the hook used the catalog without an MLflow run")


def _noop_calls(hook: MlflowTrackingHooks) -> None:
    manager = _manager(hook)
    pipe = Pipeline([node(lambda x: x, "a", "latent_metrics", name="n")])
    manager.hook.before_pipeline_run(run_params={}, pipeline=pipe, catalog=_Untouchable())
    manager.hook.before_node_run(
        node=pipe.nodes[0], catalog=_Untouchable(), inputs={}, is_async=False, run_id="r"
    )
    manager.hook.after_node_run(
        node=pipe.nodes[0], catalog=_Untouchable(), inputs={}, outputs={}, is_async=False, run_id="r"
    )
    manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=pipe, catalog=_Untouchable())
    assert hook._run_id is None and not hook._walls


def test_hook_is_a_noop_without_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    _noop_calls(MlflowTrackingHooks())


def test_hook_is_a_noop_without_an_active_run() -> None:
    mlflow = pytest.importorskip("mlflow")
    _end_all_runs(mlflow)
    _noop_calls(MlflowTrackingHooks())


_WITHOUT_EXTRA = """
import importlib.abc, importlib.metadata as md, sys
from pathlib import Path

HIDDEN = {"mlflow", "mlflow-skinny", "mlflow-tracing", "kedro-mlflow"}


class Block(importlib.abc.MetaPathFinder):  # as if the extra were not installed: `import mlflow` fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"mlflow", "kedro_mlflow"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, Block())
_all = md.distributions  # pluggy looks up the `kedro.hooks` entry points through importlib.metadata
md.distributions = lambda **kw: (
    d for d in _all(**kw) if (d.metadata["Name"] or "").lower().replace("_", "-") not in HIDDEN
)
sys.path.insert(0, sys.argv[1])
from reporting.project import make_project_copy, populate, run_reporting

project = make_project_copy(Path(sys.argv[2]))
populate(project)
run_reporting(project)
assert "mlflow" not in sys.modules and "kedro_mlflow" not in sys.modules
assert not (project / "mlruns").exists()
board = project / "data" / "08_reporting" / "embedded_270m_l12" / "report" / "leaderboard.csv"
assert len(list(board.glob("*/leaderboard.csv"))) == 1
print("REPORT OK")
"""


def test_reporting_runs_unchanged_without_the_extra(tmp_path: Path) -> None:
    """mlflow / kedro-mlflow hidden (not importable, no entry point): the same reporting run, no MLflow trace."""
    tests_dir = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, tests_dir, str(tmp_path / "project")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MLFLOW_TRACKING_URI": (tmp_path / "never").as_uri()},
    )
    assert done.returncode == 0 and "REPORT OK" in done.stdout, (done.stdout + done.stderr)[-3000:]
    assert not (tmp_path / "never").exists()


def test_settings_never_import_mlflow() -> None:
    """The default install pays nothing: loading the project settings (and the hook) does not import mlflow."""
    code = "import sys, axbench_kedro.settings as s; assert 'mlflow' not in sys.modules, 'mlflow imported'; print(s.HOOKS)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MlflowTrackingHooks" in done.stdout
