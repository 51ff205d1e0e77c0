"""Suppression report (protocol §7 item 5): leaderboard, attack table, n-shot figure, run card section, report nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.datasets.results_across_settings import SOURCES_KEY, ResultsAcrossSettingsDataset
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.pipelines.reporting.nodes import make_run_card
from axbench_kedro.pipelines.suppression.report import create_report_pipeline
from axbench_kedro.reporting import suppression as sp

from . import synthetic

ROOT = Path(__file__).resolve().parents[2]
RUN = RunSettings(setting="embedded_270m_l12", layer=12, seed=42)
PARAMS = ReportingParams(n_resamples=200)
REPS = synthetic.SUPPRESSION_REPS
_selection = synthetic.suppression_selection
_summary = synthetic.suppression_summary
_attacks = synthetic.attack_summary


# --- leaderboard ---------------------------------------------------------------------------------------------------


def test_suppression_leaderboard_numbers_order_and_defence_label() -> None:
    long = sp.suppression_leaderboard(_selection(), _summary(), n_resamples=200, confidence=0.95, seed=7)
    assert long["method"].drop_duplicates().tolist() == ["RePS", "Prompt", "SAE"]  # by Avg: 1.0 > 0.5 > 0.2
    cells = long.set_index(["method", "setting"])
    reps = cells.loc[("RePS", RUN.setting)]
    assert reps["overall"] == pytest.approx(1.0)  # the AlpacaEval row (2.0) is left out
    assert reps["n_concepts"] == 4
    assert (reps["ci_low"], reps["ci_high"]) == pytest.approx(bootstrap_ci(REPS, n_resamples=200, seed=7))
    assert cells.loc[("RePS", "Avg"), "overall"] == pytest.approx(1.0)
    prompt = cells.loc[("Prompt", RUN.setting)]
    assert (prompt["overall"], prompt["ci_low"], prompt["ci_high"]) == pytest.approx((0.5, 0.5, 0.5))
    assert prompt["label"] == "Prompt (prompt defence)" and reps["label"] == "RePS"
    assert cells.loc[("SAE", RUN.setting), "overall"] == pytest.approx(0.2)
    assert cells.loc[("SAE", RUN.setting), "judge_kind"] == "unknown"  # not in the summary
    assert reps["judge_kind"] == "llm" and bool(reps["comparable"])

    text = sp.suppression_markdown(long, sp.attack_table(_attacks()), n_resamples=200)
    assert text.startswith("## Suppression leaderboard")
    assert "HM(2 − concept, instruction, fluency)" in text and "[D 23]" in text
    assert "| Prompt (prompt defence) | llm | 0.500 [0.500, 0.500] | 0.500 [0.500, 0.500] |" in text
    assert "0.200 [" in text and "(n=3)" in text  # SAE has fewer concepts than the setting
    assert "`suppression_vs_nshot.png`" in text
    assert "### Attacks on the rule concepts" in text


def test_suppression_leaderboard_of_nothing_is_empty() -> None:
    assert sp.suppression_leaderboard(pd.DataFrame({"setting": []}), None).empty
    text = sp.suppression_markdown(
        sp.suppression_leaderboard(pd.DataFrame({"setting": []}), None), pd.DataFrame()
    )
    assert "*(no suppression results)*" in text and "no rule concepts attacked" in text


# --- attack table --------------------------------------------------------------------------------------------------


def test_attack_table_cells_and_column_order() -> None:
    table = sp.attack_table(_attacks())
    labels = ["no attack", "1-shot", "5-shot", "overwrite (append)", "overwrite (prepend)"]
    assert [c for c in table.columns if not c.endswith(("_ci_low", "_ci_high"))] == [
        "method",
        "kind",
        "n_concepts",
        *labels,
    ]
    assert table["method"].tolist() == ["Prompt", "RePS"]  # by the no-attack score: 1.5 > 1.2
    cells = table.set_index("method")
    assert cells.loc["RePS", "5-shot"] == pytest.approx(1.1)
    assert cells.loc["RePS", "5-shot_ci_low"] == pytest.approx(0.9)
    assert cells.loc["RePS", "5-shot_ci_high"] == pytest.approx(1.2)
    assert cells.loc["Prompt", "overwrite (append)"] == pytest.approx(0.2)
    assert cells.loc["Prompt", "kind"] == "prompt" and int(cells.loc["Prompt", "n_concepts"]) == 3

    text = sp.attack_markdown(table)
    assert (
        "| method | concepts | no attack | 1-shot | 5-shot | overwrite (append) | overwrite (prepend) |"
        in text
    )
    assert (
        "| Prompt (prompt defence) | 3 | 1.500 [1.300, 1.600] | 0.600 [0.400, 0.700] | 0.300 [0.100, 0.400] "
        "| 0.200 [0.000, 0.300] | 0.400 [0.200, 0.500] |" in text
    )


def test_attack_table_missing_cells_labels_and_errors() -> None:
    partial = _attacks().drop(columns="label")
    partial = partial[~((partial["method"] == "RePS") & (partial["attack"] == "prepend"))]
    table = sp.attack_table(partial)
    assert "overwrite (prepend)" in table.columns  # labels derived from attack / n_shot
    assert np.isnan(table.set_index("method").loc["RePS", "overwrite (prepend)"])
    (reps_line,) = [line for line in sp.attack_markdown(table).splitlines() if line.startswith("| RePS |")]
    assert reps_line.startswith("| RePS | 3 | 1.200 [1.000, 1.300] | 1.150 [0.950, 1.250] |")
    assert reps_line.endswith("| 0.900 [0.700, 1.000] | – |")
    for empty in (None, pd.DataFrame(), pd.DataFrame({"setting": []})):
        assert sp.attack_table(empty).empty
        assert "*(no rule concepts attacked)*" in sp.attack_markdown(sp.attack_table(empty))
    with pytest.raises(AxbenchDataError, match="attack_summary: missing column 'score'"):
        sp.attack_table(_attacks().drop(columns="score"))


# --- figure --------------------------------------------------------------------------------------------------------


def _texts(fig: object) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))  # type: ignore[attr-defined]


def test_attack_figure_populated_single_point_and_empty(tmp_path: Path) -> None:
    fig = sp.attack_figure(_attacks(), RUN.setting)
    left, right = fig.axes[:2]
    assert left.get_xscale() == "symlog"
    assert [t.get_text() for t in left.get_xticklabels()] == ["none", "1", "5"]
    handles, names = left.get_legend_handles_labels()
    styles = {name: handle.lines[0].get_linestyle() for handle, name in zip(handles, names, strict=True)}
    assert styles == {"RePS": "-", "Prompt (prompt defence)": "--"}
    assert [t.get_text() for t in right.get_xticklabels()] == [
        "no attack",
        "overwrite (append)",
        "overwrite (prepend)",
    ]
    assert left.get_ylim() == (0.0, 2.0)

    only_reference = sp.attack_figure(_attacks().query("attack == 'none'"), RUN.setting)
    assert len([a for a in only_reference.axes if a.axison]) == 1  # no overwrite panel
    ys = sorted(
        float(line.get_ydata()[0]) for line in only_reference.axes[0].get_lines() if len(line.get_ydata())
    )
    assert 1.2 in ys and 1.5 in ys  # one point per method, both drawn

    empty = sp.attack_figure(pd.DataFrame({"setting": []}), RUN.setting)
    assert "no rule concepts attacked" in _texts(empty)

    for name, figure in (("full", fig), ("one", only_reference), ("empty", empty)):
        dataset = MatplotlibDataset(filepath=str(tmp_path / f"{name}.png"), save_args={"format": "png"})
        dataset.save(figure)
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1024, name


# --- run card ------------------------------------------------------------------------------------------------------


def _card(suppression_results: dict[str, pd.DataFrame] | None) -> str:
    up = synthetic.upstream(RUN.setting)
    leaderboard = pd.DataFrame({"method": ["DiffMean"], "setting": [RUN.setting], "role": ["method"]})
    return make_run_card(
        RUN,
        PARAMS,
        {"generated_at": "now", "packages": {}},
        up["concepts_meta"],
        up["judgements"],
        pd.DataFrame(),
        pd.DataFrame(),
        leaderboard,
        suppression_results=suppression_results,
    )


def _results(*settings: str) -> dict[str, pd.DataFrame]:
    frames = {
        "suppression_selection": pd.concat([_selection(s, shift=0.1 * i) for i, s in enumerate(settings)]),
        "suppression_summary": pd.concat([_summary(s) for s in settings]),
        "attack_summary": pd.concat([_attacks(s) for s in settings]),
    }
    records = [{"setting": s, "dataset": n, "version": "2026-01-01T00.00.00.000Z", "filepath": "f"}
               for s in settings for n in frames]  # fmt: skip
    return {**frames, SOURCES_KEY: pd.DataFrame(records)}


def test_run_card_suppression_section_present() -> None:
    card = _card(_results("gemma2_2b_l20", RUN.setting))
    section = card.split("## Suppression", 1)[1].split("\n## ", 1)[0]
    # This setting only: its Scores are 0.1 above the other setting's.
    low, high = bootstrap_ci(np.add(REPS, 0.1), n_resamples=200, seed=RUN.seed)
    assert f"| RePS | 1.100 | [{low:.3f}, {high:.3f}] | 4 | llm |" in section
    assert "| Prompt (prompt defence) | 0.600 | [0.600, 0.600] | 4 | llm |" in section
    assert "| SAE | 0.300 |" in section and "| 3 | unknown |" in section
    assert "Avg" not in section
    assert "| Prompt (prompt defence) | 3 | 1.500 [1.300, 1.600] |" in section  # attack table
    assert "`suppression_vs_nshot.png`" in section
    assert "attack_summary 2026-01-01T00.00.00.000Z" in section
    assert "kedro run --pipeline suppression" not in section


@pytest.mark.parametrize(
    "results",
    [
        None,
        {"suppression_selection": pd.DataFrame({"setting": []}), "suppression_summary": pd.DataFrame({"setting": []}),
         "attack_summary": pd.DataFrame({"setting": []}), SOURCES_KEY: pd.DataFrame()},
        "other-setting-only",
    ],
)  # fmt: skip
def test_run_card_suppression_section_absent(results: object) -> None:
    if results == "other-setting-only":
        results = _results("gemma2_2b_l20")
    card = _card(results)  # type: ignore[arg-type]
    section = card.split("## Suppression", 1)[1].split("\n## ", 1)[0]
    assert f"Not run for {RUN.setting}" in section
    assert "`kedro run --pipeline suppression`" in section
    assert "| RePS |" not in section


# --- datasets and the report pipeline ------------------------------------------------------------------------------


def test_suppression_results_catalog_entry_keeps_every_setting(tmp_path: Path) -> None:
    catalog = yaml.safe_load((ROOT / "conf/base/catalog_reporting.yml").read_text(encoding="utf-8"))
    entry = catalog["suppression_results"]
    assert entry["current_setting"] is None
    assert set(entry["sources"]) == {"suppression_selection", "suppression_summary", "attack_summary"}
    for name in ("suppression_leaderboard", "attack_table", "suppression_markdown", "attack_plot"):
        assert (
            catalog[name]["versioned"] is True
            and catalog[name]["metadata"]["kedro-viz"]["layer"] == "reporting"
        )
    assert catalog["attack_plot"]["filepath"].endswith(f"/report/{sp.ATTACK_PLOT_FILE}")

    sources = {n: {"filepath": str(tmp_path / "{setting}" / f"{n}.parquet")} for n in entry["sources"]}
    (tmp_path / RUN.setting).mkdir()
    _attacks().to_parquet(tmp_path / RUN.setting / "attack_summary.parquet")
    loaded = ResultsAcrossSettingsDataset(sources=sources, current_setting=entry["current_setting"]).load()
    assert loaded["attack_summary"]["setting"].unique().tolist() == [
        RUN.setting
    ]  # the current setting is kept
    assert loaded["suppression_selection"].empty and "setting" in loaded["suppression_selection"].columns
    _, _, attacks, _ = sp.setting_results(loaded, RUN.setting)
    assert len(attacks) == len(_attacks())


class _Kept(MemoryDataset):
    def _release(self) -> None:
        pass


def test_report_pipeline_writes_leaderboard_markdown_and_plot(tmp_path: Path) -> None:
    pipe = create_report_pipeline()
    assert pipe.inputs() == {
        "suppression_selection", "suppression_summary", "attack_summary", "suppression_results", "params:reporting",
        "params:run",
    }  # fmt: skip
    assert pipe.all_outputs() == {
        "suppression_leaderboard",
        "attack_table",
        "suppression_markdown",
        "attack_plot",
    }
    others = _results("gemma2_2b_l20", "gemma2_9b_l31", RUN.setting)
    others["suppression_selection"] = others["suppression_selection"].assign(
        test_hm=lambda f: np.where(
            f["setting"] == RUN.setting, 0.0, f["test_hm"]
        )  # a stale copy of this setting
    )
    plot = tmp_path / "plot.png"
    catalog = DataCatalog(
        datasets={
            "suppression_selection": MemoryDataset(_selection().drop(columns="setting")),
            "suppression_summary": MemoryDataset(_summary().drop(columns="setting")),
            "attack_summary": MemoryDataset(_attacks()),
            "suppression_results": MemoryDataset(others, copy_mode="assign"),
            "params:reporting": MemoryDataset(ReportingParams(n_resamples=200, settings=["gemma2_2b_*"]),
                                              copy_mode="assign"),
            "params:run": MemoryDataset(RUN, copy_mode="assign"),
            "suppression_leaderboard": _Kept(),
            "attack_table": _Kept(),
            "suppression_markdown": _Kept(),
            "attack_plot": MatplotlibDataset(filepath=str(plot), save_args={"format": "png"}),
        }
    )  # fmt: skip
    SequentialRunner().run(pipe, catalog)
    board = catalog.load("suppression_leaderboard")
    assert set(board["setting"]) == {RUN.setting, "gemma2_2b_l20", "Avg"}  # 9b left out by params.settings
    cells = board.set_index(["method", "setting"])["overall"]
    assert cells[("RePS", RUN.setting)] == pytest.approx(1.0)  # the catalog input, not the stale copy
    assert cells[("RePS", "gemma2_2b_l20")] == pytest.approx(1.0)
    assert cells[("Prompt", "Avg")] == pytest.approx(0.5)
    assert catalog.load("attack_table")["method"].tolist() == ["Prompt", "RePS"]
    text = catalog.load("suppression_markdown")
    assert "## Suppression leaderboard" in text and "| Prompt (prompt defence) | llm |" in text
    assert "### Attacks on the rule concepts" in text and "suppression_vs_nshot.png" in text
    assert plot.read_bytes().startswith(b"\x89PNG")
