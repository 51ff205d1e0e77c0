"""Report figures: curve numbers, and PNGs written through the catalog dataset type (non-empty, > 1 kB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import Version
from kedro_datasets.matplotlib import MatplotlibDataset
from matplotlib.figure import Figure

from axbench_kedro.reporting import plots
from axbench_kedro.reporting.leaderboard import build_leaderboard, concept_scores, judge_labels
from axbench_kedro.reporting.tables import detection_table

from . import synthetic

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(fig: Figure, path: Path) -> bytes:
    MatplotlibDataset(
        filepath=str(path), save_args={"format": "png", "dpi": 80}, version=Version(None, None)
    ).save(fig)
    (file,) = path.glob("*/" + path.name)
    return file.read_bytes()


def test_mean_roc_curves_numbers() -> None:
    # Concept 0 separates perfectly; concept 1 is inverted; hard negatives must be ignored.
    rows = [
        (0, "positive", 0.9),
        (0, "positive", 0.8),
        (0, "negative", 0.1),
        (0, "negative", 0.2),
        (0, "hard negative", 5.0),
        (1, "positive", 0.1),
        (1, "positive", 0.2),
        (1, "negative", 0.8),
        (1, "negative", 0.9),
        (2, "positive", 0.5),
    ]  # fmt: skip  (concept 2: no negatives → skipped)
    frame = pd.DataFrame(rows, columns=["concept_id", "category", "max_act"]).assign(method="M")
    curves = plots.mean_roc_curves(frame, grid_points=11)
    assert len(curves) == 11 and (curves["n_concepts"] == 2).all()
    tpr = curves["tpr"].to_numpy()
    assert tpr[0] == 0.0 and tpr[-1] == 1.0
    # Perfect curve is 1 for FPR > 0, inverted curve is 0 until FPR 1: the mean is 0.5 inside (0, 1).
    assert np.allclose(tpr[1:-1], 0.5)
    # Constant scores give the diagonal.
    flat = pd.DataFrame(
        {"concept_id": 0, "category": ["positive", "negative"] * 3, "max_act": 1.0, "method": "F"}
    )
    diag = plots.mean_roc_curves(flat, grid_points=5)
    assert np.allclose(diag["tpr"], diag["fpr"])


def test_score_vs_factor_means_and_factor_free() -> None:
    up = synthetic.upstream("s")
    free = plots.factor_free_methods(up["steering_selection"])
    assert free == synthetic.FACTOR_FREE
    curves = plots.score_vs_factor(up["steering_scores"], "AlpacaEval", factor_free=free, n_resamples=200)
    diff = curves[(curves["method"] == "DiffMean") & (curves["split"] == "test")]
    assert diff["factor"].tolist() == synthetic.FACTORS
    scores = up["steering_scores"]
    expected = scores[
        (scores["method"] == "DiffMean") & (scores["split"] == "test") & (scores["factor"] == 1.0)
    ]
    got = diff[diff["factor"] == 1.0].iloc[0]
    assert got["mean"] == pytest.approx(expected["lm_judge_rating"].mean())
    assert got["ci_low"] <= got["mean"] <= got["ci_high"]
    prompt = curves[curves["method"] == "Prompt"]
    assert len(prompt) == 2 and prompt["factor"].isna().all()


def test_every_figure_is_a_real_png(tmp_path: Path) -> None:
    up = synthetic.upstream("s1")
    selection = up["steering_selection"].assign(setting="s1")
    long = build_leaderboard(
        concept_scores(selection), judge_labels(up["steering_summary"].assign(setting="s1"))
    )
    detection = detection_table(up["latent_metrics"].assign(setting="s1"))
    free = plots.factor_free_methods(up["steering_selection"])
    figures = {
        "mean_roc.png": plots.mean_roc_figure(plots.mean_roc_curves(up["latent_scores"]), "s1"),
        "score_vs_factor.png": plots.score_vs_factor_figure(
            plots.score_vs_factor(up["steering_scores"], factor_free=free, n_resamples=100), "s1"
        ),
        "components.png": plots.components_figure(up["steering_selection"], "AlpacaEval", "s1"),
        "selected_factor.png": plots.selected_factor_figure(up["steering_selection"], "AlpacaEval", "s1"),
        "auroc_vs_score.png": plots.auroc_vs_score_figure(long, detection),
    }
    for name, fig in figures.items():
        data = _write(fig, tmp_path / name)
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1024, name


def test_empty_inputs_still_draw(tmp_path: Path) -> None:
    empty_scores = pd.DataFrame(columns=["concept_id", "method", "category", "max_act"])
    sel = synthetic.upstream("s")["steering_selection"]
    free_only = sel[sel["method"].isin(synthetic.FACTOR_FREE)]
    figures = [
        plots.mean_roc_figure(plots.mean_roc_curves(empty_scores)),
        plots.selected_factor_figure(free_only),
        plots.components_figure(sel.iloc[0:0]),
    ]
    for i, fig in enumerate(figures):
        data = _write(fig, tmp_path / f"empty{i}.png")
        assert data.startswith(PNG_MAGIC) and len(data) > 1024


def test_method_colours_are_stable_across_subsets() -> None:
    full = plots.method_colors(["DiffMean", "SAE", "Prompt"])
    subset = plots.method_colors(["SAE"])
    assert full["SAE"] == subset["SAE"]
    assert len(set(full.values())) == 3
