"""The ``reporting`` pipeline end to end on a temporary project copy with synthetic upstream results.

Covers: every output written (versioned), results of another setting combined, a rerun adding a version without
touching the old one, ``--load-versions`` reproducing the first report, pinning another setting's version through
``--params``, and no secret anywhere under ``data/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import Version
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from axbench_kedro.pipelines.reporting import create_pipeline
from axbench_kedro.pipelines.suppression.report import create_report_pipeline
from reporting import synthetic
from reporting.project import (
    CURRENT_SETTING,
    OTHER_SETTING,
    PLANTED_KEY,
    files_containing,
    make_project_copy,
    populate,
    run_reporting,
    save_through_catalog,
    session,
    versions,
)

REPORT = f"data/08_reporting/{CURRENT_SETTING}/report"
TABLES = ["leaderboard.csv", "leaderboard_wide.csv", "detection.csv", "steering_components.csv", "win_rates.csv",
          "judge_health.csv", "llm_usage.csv"]  # fmt: skip
MARKDOWN = ["leaderboard.md", "detection.md", "steering.md", "run_card.md"]
PLOTS = [
    "mean_roc.png",
    "score_vs_factor.png",
    "steering_components.png",
    "selected_factor.png",
    "auroc_vs_score.png",
]


def _only(project: Path, name: str) -> Path:
    (version,) = versions(project, f"{REPORT}/{name}")
    return project / REPORT / name / version / name


def _catalog_path(project: Path, name: str) -> str:
    with session(project) as sess:
        return sess.load_context().config_loader["catalog"][name]["filepath"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = make_project_copy(tmp_path_factory.mktemp("reporting") / "project")
    populate(copy)
    return copy


def test_pipeline_wiring_reads_protocol_inputs() -> None:
    pipe = create_pipeline()
    assert {
        "concepts_meta", "latent_metrics", "latent_scores", "steering_scores", "steering_selection",
        "steering_summary", "judgements", "datagen_llm_usage", "latent_eval_llm_usage", "steering_llm_usage",
        "params:run", "params:reporting", "results_across_settings", "prompt_steering_texts", "suppression_results",
        "training_summary",
    } == pipe.inputs()  # fmt: skip
    assert {"leaderboard", "leaderboard_table", "leaderboard_markdown", "detection_table", "run_card",
            "mean_roc_plot", "score_vs_factor_plot", "auroc_vs_score_plot"} <= pipe.all_outputs()  # fmt: skip


@pytest.mark.slow
def test_reporting_run_rerun_and_load_versions(project: Path) -> None:
    run_reporting(project)
    for name in TABLES + MARKDOWN:
        assert _only(project, name).stat().st_size > 0, name
    for name in PLOTS:
        data = _only(project, name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1024, name

    first_path = _only(project, "leaderboard.csv")
    first_bytes = first_path.read_bytes()
    first = pd.read_csv(first_path)
    assert set(first["setting"]) == {CURRENT_SETTING, OTHER_SETTING, "Avg"}
    assert {"method", "setting", "overall", "ci_low", "ci_high", "n_concepts"} <= set(first.columns)
    # The other setting was judged by an LLM, this one by the proxy: Avg rows are labelled mixed, not comparable.
    labels = first.set_index(["method", "setting"])
    assert labels.loc[("DiffMean", OTHER_SETTING), "judge_kind"] == "llm"
    assert labels.loc[("DiffMean", CURRENT_SETTING), "judge_kind"] == "proxy"
    assert not labels.loc[("DiffMean", "Avg"), "comparable"]
    card = _only(project, "run_card.md").read_text()
    assert f"| {OTHER_SETTING} | steering_selection |" in card
    assert "| max_tokens | none (no cap, as upstream) |" in card  # P1 replies read from the catalog [D 31]
    # Wall times are logged by the hooks, outside the graph: the card read from the catalog has no such section.
    assert "## Wall time per pipeline" not in card
    # No suppression results on disk: the card says so and names the command (read through suppression_results).
    assert f"Not run for {CURRENT_SETTING}" in card and "`kedro run --pipeline suppression`" in card

    # A new upstream version of this setting's selection, then a rerun: a second report version, the first intact.
    selection_path = _catalog_path(project, "steering_selection")
    (old_selection,) = versions(project, selection_path)
    changed = synthetic.upstream(CURRENT_SETTING)["steering_selection"]
    changed["test_hm"] = (changed["test_hm"] + 0.25).clip(upper=2.0)
    save_through_catalog(project, {"steering_selection": changed})
    run_reporting(project)
    board_versions = versions(project, f"{REPORT}/leaderboard.csv")
    assert len(board_versions) == 2
    assert first_path.read_bytes() == first_bytes
    second = pd.read_csv(project / REPORT / "leaderboard.csv" / board_versions[-1] / "leaderboard.csv")
    paired = first.merge(second, on=["method", "setting"], suffixes=("_old", "_new"))
    assert len(paired) == len(first)
    current = paired[paired["setting"] == CURRENT_SETTING]
    assert (current["overall_new"] > current["overall_old"]).all()  # every Score rose (clipped at 2)
    other = paired[paired["setting"] == OTHER_SETTING]
    assert (other["overall_new"] == other["overall_old"]).all()  # the other setting's results did not change
    assert not second.equals(first)

    # --load-versions steering_selection:<old> rebuilds the first report exactly.
    run_reporting(project, load_versions={"steering_selection": old_selection})
    board_versions = versions(project, f"{REPORT}/leaderboard.csv")
    assert len(board_versions) == 3
    third = pd.read_csv(project / REPORT / "leaderboard.csv" / board_versions[-1] / "leaderboard.csv")
    pd.testing.assert_frame_equal(third, first)

    assert files_containing(project / "data", PLANTED_KEY) == []


@pytest.mark.slow
def test_other_settings_can_be_pinned_with_params(project: Path) -> None:
    pins = {"across_settings_versions": {OTHER_SETTING: {"steering_selection": "2025-01-01T00.00.00.000Z"}}}
    with session(project, runtime_params=pins) as sess:
        dataset = sess.load_context().catalog.get("results_across_settings")
    assert dataset._describe()["load_versions"] == {
        OTHER_SETTING: {"steering_selection": "2025-01-01T00.00.00.000Z"}
    }
    with session(project) as sess:
        assert sess.load_context().catalog.get("results_across_settings")._describe()["load_versions"] == {}


@pytest.mark.slow
def test_suppression_report_and_run_card_section(project: Path) -> None:
    """The report nodes write through the real catalog; the run card then shows this setting's suppression rows."""
    frames = {
        "suppression_selection": synthetic.suppression_selection().drop(columns="setting"),
        "suppression_summary": synthetic.suppression_summary().drop(columns="setting"),
    }
    save_through_catalog(project, frames)
    attack_path = project / f"data/08_reporting/{CURRENT_SETTING}/attack_summary.parquet"
    with session(project) as sess:
        catalog = sess.load_context().catalog
        if "attack_summary" in catalog:
            catalog.save("attack_summary", synthetic.attack_summary())
        else:  # the suppression helper's catalog entry is not there yet: write where it will point
            ParquetDataset(filepath=str(attack_path), version=Version(None, None)).save(
                synthetic.attack_summary()
            )
        SequentialRunner().run(create_report_pipeline(), catalog)
    board = pd.read_csv(_only(project, "suppression_leaderboard.csv"))
    reps = board.set_index(["method", "setting"]).loc[("RePS", CURRENT_SETTING)]
    assert reps["overall"] == pytest.approx(1.0) and reps["n_concepts"] == 4
    assert "| Prompt (prompt defence) |" in _only(project, "suppression.md").read_text()
    assert _only(project, "attack_table.csv").stat().st_size > 0
    assert _only(project, "suppression_vs_nshot.png").read_bytes().startswith(b"\x89PNG")

    run_reporting(project)
    (*_, latest) = versions(project, f"{REPORT}/run_card.md")
    card = (project / REPORT / "run_card.md" / latest / "run_card.md").read_text()
    section = card.split("## Suppression", 1)[1].split("\n## ", 1)[0]
    assert (
        "| RePS | 1.000 |" in section
        and "| Prompt (prompt defence) | 0.500 | [0.500, 0.500] | 4 | llm |" in section
    )
    assert "| Prompt (prompt defence) | 3 | 1.500 [1.300, 1.600] |" in section
    assert "kedro run --pipeline suppression" not in section
