"""benchmarks/report.py: the performance table from raw figures (Markdown + CSV), and a cheap real subset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import report  # noqa: E402

META = {
    "commit": "0123456789abcdef",
    "date": "2026-12-01 06:00:00Z",
    "model": "google/gemma-3-270m",
    "model_params": 268_000_000,
    "device": "cpu",
    "dtype": "float32",
    "cpus": 2,
    "torch_threads": 2,
    "machine": "x86_64 Linux, no GPU",
    "note": "shared machine",
}
RAW = {
    "P1": {"steered_tok_s": 30.0, "plain_tok_s": 25.0, "ratio": 1.2, "step_ratio": 1.1},
    "P2": {
        "ours_s": 10.0,
        "upstream_s": 14.0,
        "speedup": 1.4,
        "ours_generations": 64,
        "upstream_generations": 96,
    },
    "P3": {"forward_s": 2.0, "training_s": 3.0, "ratio": 1.5, "rows": 42},
    "P4": {"one_s": 1.0, "all_s": 1.1, "ratio": 1.1, "methods": 5},
    "P5": None,
    "P6": {"calls": 1002, "wall_s": 8.5, "parsed": 1002, "latency_ms": 200.0},
    "P7": {
        "first_s": 540.0,
        "second_s": 30.0,
        "ratio": 0.0556,
        "first_calls": 148,
        "second_calls": 0,
        "source": "last measured 2026-11-30 at abcdef12",
    },  # fmt: skip
    "Dask": {
        "sequential_s": 20.0,
        "dask_s": 12.5,
        "warmup_s": 4.0,
        "speedup": 1.6,
        "workers": 2,
        "concepts": 4,
        "methods": ["DiffMean", "ReFT-r1"],
        "identical": True,
    },  # fmt: skip
}


def test_rows_carry_values_targets_and_verdicts() -> None:
    rows = {(r.id, r.unit): r for r in report.rows_from(RAW, "cpu")}
    assert [r.id for r in report.rows_from(RAW, "cpu")] == [
        "P1",
        "P2",
        "P3",
        "P4",
        "P5",
        "P5",
        "P6",
        "P7",
        "Dask",
    ]
    assert (rows["P1", "ratio"].value, rows["P1", "ratio"].target, rows["P1", "ratio"].meets) == (
        1.2,
        "≥ 0.95",
        "yes",
    )
    assert (rows["P2", "×"].target, rows["P2", "×"].meets) == ("≥ 1.3", "yes")
    assert report.rows_from(RAW, "cuda:0")[1].target == "≥ 5"  # the GPU target of P2
    assert report.rows_from(RAW, "cuda:0")[1].meets == "no"
    assert (rows["P3", "ratio"].target, rows["P3", "ratio"].meets) == ("≤ 1.3", "no")
    assert rows["P5", "calls"].value is None and rows["P5", "calls"].meets == "–"
    assert (rows["P6", "s"].value, rows["P6", "s"].meets) == (8.5, "yes")
    assert rows["P7", "s"].value == 540.0 and rows["P7", "s"].target == "≤ 600"
    assert "abcdef12" in rows["P7", "s"].detail
    assert rows["Dask", "×"].target == "–" and "identical artifacts: yes" in rows["Dask", "×"].detail


def test_markdown_and_csv_hold_the_table_and_the_run(tmp_path: Path) -> None:
    rows = report.rows_from(RAW, "cpu")
    md = report.table_markdown(rows, META)
    assert "- commit: `0123456789abcdef`" in md and "2 CPUs" in md and "shared machine" in md
    assert "| P1 | steered ÷ plain generation tokens/s | 1.2 | ratio | ≥ 0.95 | yes |" in md
    assert "| P5 | rerun: LLM calls of the second run | not measured | calls | ≤ 0 | – |" in md
    assert "| P7 | default `kedro run` wall (fresh clone, cold data caches) | 540 | s | ≤ 600 | yes |" in md

    paths = report.write_report(rows, META, RAW, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["perf_20261201T060000Z_01234567.md", "perf_20261201T060000Z_01234567.csv", "latest.md", "latest.csv",
         "measurements.json"]
    )  # fmt: skip
    frame = pd.read_csv(tmp_path / "latest.csv")
    assert list(frame.columns) == report.CSV_COLUMNS
    assert frame["id"].tolist() == ["P1", "P2", "P3", "P4", "P5", "P5", "P6", "P7", "Dask"]
    assert (frame["commit"] == "0123456789abcdef").all() and (frame["cpus"] == 2).all()
    assert frame.loc[frame["id"] == "P4", "value"].item() == pytest.approx(1.1)
    assert frame.loc[frame["id"] == "P3", "meets_target"].item() == "no"
    assert frame.loc[frame["id"] == "P5", "value"].isna().all()
    saved = json.loads((tmp_path / "measurements.json").read_text())
    assert saved["meta"]["commit"] == "0123456789abcdef" and saved["Dask"]["sequential_s"] == 20.0


def test_unknown_id_is_refused() -> None:
    with pytest.raises(SystemExit):
        report.parse_args(["--only", "P1,P9"])


def test_tiny_subset_measures_and_reads_back_the_last_kedro_run(tmp_path: Path) -> None:
    last = {"first_s": 500.0, "second_s": 25.0, "ratio": 0.05, "first_calls": 148, "second_calls": 0,
            "commit": "feedbeef00", "date": "2026-11-30 10:00:00Z"}  # fmt: skip
    (tmp_path / report.KEDRO_RUN_FILE).write_text(json.dumps(last))
    report.main(["--tiny", "--only", "P1,P5,P6,P7", "--out", str(tmp_path), "--latency", "0.01"])
    frame = pd.read_csv(tmp_path / "latest.csv").set_index(["id", "unit"])
    assert frame.index.tolist() == [
        ("P1", "ratio"),
        ("P5", "ratio"),
        ("P5", "calls"),
        ("P6", "s"),
        ("P7", "s"),
    ]
    raw = json.loads((tmp_path / "measurements.json").read_text())
    assert frame.loc[("P1", "ratio"), "value"] == pytest.approx(
        raw["P1"]["steered_tok_s"] / raw["P1"]["plain_tok_s"]
    )
    assert raw["P6"]["calls"] == 102 and raw["P6"]["parsed"] == 102  # 34 generations × 3 criteria
    assert frame.loc[("P7", "s"), "value"] == 500.0 and "feedbeef" in frame.loc[("P7", "s"), "detail"]
    assert frame.loc[("P5", "calls"), "value"] == 0 and frame.loc[("P5", "calls"), "meets_target"] == "yes"
    assert frame["model"].iloc[0].startswith("tiny random Gemma-3") and raw["training_units"]["concepts"] == 4


def test_a_failed_figure_is_a_row_not_a_lost_table() -> None:
    rows = report.rows_from({"P3": {"error": "RuntimeError: out of memory"}, "P1": RAW["P1"]}, "cpu")
    assert [(r.id, r.measure, r.value, r.meets) for r in rows] == [
        ("P1", "steered ÷ plain generation tokens/s", 1.2, "yes"),
        ("P3", "failed", None, "–"),
    ]
    assert rows[1].detail == "failed: RuntimeError: out of memory"
