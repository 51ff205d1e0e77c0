"""Method roles in the reports: a ``role`` column in the CSV tables, ``<name> (control)`` in the Markdown.

The role comes from the registry (``Method.role``): Random is the built-in control; the reporting code never names it.
"""

from __future__ import annotations

import pandas as pd

from axbench_kedro.reporting import plots
from axbench_kedro.reporting.leaderboard import (
    build_leaderboard,
    concept_scores,
    leaderboard_markdown,
    leaderboard_wide,
)
from axbench_kedro.reporting.roles import CONTROL_NOTE, label_methods, method_label, role_of, with_roles
from axbench_kedro.reporting.tables import (
    detection_markdown,
    detection_table,
    judge_health,
    llm_usage,
    steering_components,
    steering_markdown,
    win_rates,
)

from . import synthetic

NOTE = "not methods of the AxBench paper"


def _selection(methods: tuple[str, ...] = ("DiffMean", "Random")) -> pd.DataFrame:
    rows = []
    for setting in ("s1", "s2"):
        for k, method in enumerate(methods):
            for c in range(3):
                rows.append(
                    {
                        "setting": setting,
                        "method": method,
                        "concept_id": c,
                        "test_hm": 1.0 - 0.3 * k + 0.01 * c,
                        "test_concept": 1.0,
                        "test_instruction": 1.5,
                        "test_fluency": 1.2,
                    }
                )
    return pd.DataFrame(rows)


def test_roles_come_from_the_registry() -> None:
    assert role_of("Random") == "control" and role_of("DiffMean") == "method"
    assert role_of("SomePluginNotInstalled") == "method"
    assert method_label("Random") == "Random (control)" and method_label("DiffMean") == "DiffMean"
    assert method_label("DiffMean", "control") == "DiffMean (control)"  # a frame's own role wins
    frame = with_roles(pd.DataFrame({"method": ["Random", "PCA"], "x": [1, 2]}))
    assert list(frame.columns) == ["method", "role", "x"] and frame["role"].tolist() == ["control", "method"]
    shown = label_methods(frame.assign(opponent="Random"))
    assert shown["method"].tolist() == ["Random (control)", "PCA"] and "role" not in shown
    assert set(shown["opponent"]) == {"Random (control)"}
    empty = with_roles(pd.DataFrame(columns=["method", "x"]))
    assert list(empty.columns) == ["method", "role", "x"]


def test_leaderboard_long_wide_and_markdown_mark_the_control() -> None:
    long = build_leaderboard(concept_scores(_selection()), n_resamples=50)
    assert long.set_index(["method", "setting"])["role"].xs("Avg", level="setting").to_dict() == {
        "DiffMean": "method",
        "Random": "control",
    }
    wide = leaderboard_wide(long)
    assert list(wide.columns[:2]) == ["method", "role"]
    assert wide.set_index("method")["role"].to_dict() == {"DiffMean": "method", "Random": "control"}
    md = leaderboard_markdown(long, n_resamples=50)
    assert "| Random (control) | unknown |" in md and "| DiffMean | unknown |" in md
    assert CONTROL_NOTE in md
    # a leaderboard written before roles existed (no role column) is labelled through the registry
    old = long.drop(columns="role")
    assert "| Random (control) |" in leaderboard_markdown(old)
    assert leaderboard_wide(old)["role"].tolist() == wide["role"].tolist()
    plain = build_leaderboard(concept_scores(_selection(("DiffMean", "PCA"))), n_resamples=50)
    assert NOTE not in leaderboard_markdown(plain) and set(plain["role"]) == {"method"}


def test_detection_table_and_markdown_mark_the_control() -> None:
    metrics = pd.DataFrame(
        [
            {"setting": s, "concept_id": c, "method": m, "roc_auc": auc}
            for s in ("s1", "s2")
            for c in range(2)
            for m, auc in (("DiffMean", 0.95), ("Random", 0.5))
        ]
    )
    table = detection_table(metrics)
    assert list(table.columns[:3]) == ["method", "role", "setting"]
    assert table.drop_duplicates("method").set_index("method")["role"].to_dict() == {
        "DiffMean": "method",
        "Random": "control",
    }
    md = detection_markdown(table)
    assert "| DiffMean | 0.950 | 0.950 | 0.950 |" in md
    assert "| Random (control) | 0.500 | 0.500 | 0.500 |" in md
    assert "| Random (control) | s1 | 2 |" in md  # balanced / imbalanced tables too
    assert "| role |" not in md and CONTROL_NOTE in md
    assert NOTE not in detection_markdown(detection_table(metrics[metrics["method"] != "Random"]))


def test_steering_tables_mark_the_control() -> None:
    selection = _selection(("DiffMean", "Random", "Prompt"))
    components = steering_components(selection)
    rates = win_rates(selection, ["Random"])
    judgements = synthetic.judgements(1, seed=3)
    judgements = pd.concat([judgements, judgements.assign(method="Random")], ignore_index=True)
    health = judge_health(judgements)
    for frame in (components, rates, health):
        assert list(frame.columns).index("role") == list(frame.columns).index("method") + 1
        assert set(frame.loc[frame["method"] == "Random", "role"]) <= {"control"}
        assert set(frame.loc[frame["method"] != "Random", "role"]) == {"method"}
    assert "Random" in set(health["method"])
    md = steering_markdown(components, rates, health, llm_usage(None))
    assert "| Random (control) | s1 |" in md  # components
    assert "| s1 | DiffMean | Random (control) |" in md  # win rates: method then opponent (role dropped)
    assert "| role |" not in md and CONTROL_NOTE in md


def test_empty_steering_tables_keep_the_role_column() -> None:
    empty = _selection().iloc[0:0]
    assert "role" in steering_components(empty).columns and "role" in win_rates(empty, ["Prompt"]).columns


def test_plot_legends_label_the_control() -> None:
    curves = pd.DataFrame(
        {
            "method": ["DiffMean"] * 2 + ["Random"] * 2,
            "fpr": [0.0, 1.0] * 2,
            "tpr": [0.0, 1.0] * 2,
            "n_concepts": 3,
        }
    )
    fig = plots.mean_roc_figure(curves, "s1")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("Random (control) (area") for label in labels)
    assert any(label.startswith("DiffMean (area") for label in labels)
