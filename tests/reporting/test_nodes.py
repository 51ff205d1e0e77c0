"""Reporting nodes: combining the current setting with the other settings' results."""

from __future__ import annotations

import pandas as pd

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.reporting import ReportingParams
from axbench_kedro.datasets.results_across_settings import SOURCES_KEY
from axbench_kedro.pipelines.reporting.nodes import combine_settings, make_leaderboard

from . import synthetic

RUN = RunSettings(setting="embedded_270m_l12", layer=12, seed=42)


def _others() -> dict[str, pd.DataFrame]:
    frames: dict[str, list[pd.DataFrame]] = {
        "steering_selection": [],
        "steering_summary": [],
        "latent_metrics": [],
    }
    records = []
    for i, setting in enumerate(["gemma2_2b_l10", "gemma2_9b_l31", "embedded_270m_l12", "scratch_run"]):
        up = synthetic.upstream(setting, seed=i)
        for name in frames:
            frames[name].append(up[name].assign(setting=setting))
            records.append({"setting": setting, "dataset": name, "version": "v", "filepath": "f"})
    out = {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}
    out[SOURCES_KEY] = pd.DataFrame(records)
    return out


def test_combine_keeps_current_and_chosen_settings() -> None:
    up = synthetic.upstream(RUN.setting, seed=9)
    args = (up["steering_selection"], up["steering_summary"], up["latent_metrics"], _others())
    selection, summary, metrics, sources = combine_settings(*args, ReportingParams(), RUN)
    assert sorted(selection["setting"].unique()) == [
        "embedded_270m_l12",
        "gemma2_2b_l10",
        "gemma2_9b_l31",
        "scratch_run",
    ]
    # The current setting comes from the catalog input only, never from the folder copy.
    current = selection[selection["setting"] == RUN.setting]
    pd.testing.assert_frame_equal(
        current.drop(columns="setting").reset_index(drop=True),
        up["steering_selection"].reset_index(drop=True),
    )
    selection, summary, metrics, sources = combine_settings(
        *args, ReportingParams(settings=["gemma2_*"]), RUN
    )
    for frame in (selection, summary, metrics):
        assert sorted(frame["setting"].unique()) == ["embedded_270m_l12", "gemma2_2b_l10", "gemma2_9b_l31"]
    assert set(sources["setting"]) == {"gemma2_2b_l10", "gemma2_9b_l31"}


def test_leaderboard_node_uses_run_seed_and_params() -> None:
    up = synthetic.upstream(RUN.setting)
    selection, summary, *_ = combine_settings(
        up["steering_selection"], up["steering_summary"], up["latent_metrics"], {}, ReportingParams(), RUN
    )
    board = make_leaderboard(selection, summary, ReportingParams(n_resamples=50), RUN)
    assert set(board["setting"]) == {RUN.setting, "Avg"}
    assert set(board["judge_kind"]) == {"proxy"} and not board["comparable"].any()
    again = make_leaderboard(selection, summary, ReportingParams(n_resamples=50), RUN)
    pd.testing.assert_frame_equal(board, again)
