"""``ResultsAcrossSettingsDataset`` (latest / pinned versions of other settings) and ``MarkdownDataset`` previews."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError, Version
from kedro_datasets.pandas import ParquetDataset

from axbench_kedro.datasets.markdown import MarkdownDataset
from axbench_kedro.datasets.results_across_settings import SOURCES_KEY, ResultsAcrossSettingsDataset
from axbench_kedro.errors import AxbenchConfigError


def _save(path: Path, frame: pd.DataFrame, version: str) -> None:
    ParquetDataset(filepath=str(path), version=Version(None, version)).save(frame)


def _dataset(root: Path, **kwargs: object) -> ResultsAcrossSettingsDataset:
    return ResultsAcrossSettingsDataset(
        sources={
            "steering_selection": {"filepath": str(root / "{setting}" / "steering_selection.parquet")},
            "latent_metrics": str(root / "{setting}" / "latent_metrics.parquet"),
        },
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "08_reporting"
    for setting, value in (("current", 0.0), ("gemma2_2b_l10", 1.0), ("gemma2_9b_l31", 2.0)):
        path = root / setting / "steering_selection.parquet"
        _save(
            path,
            pd.DataFrame({"concept_id": [0], "method": ["M"], "test_hm": [value]}),
            "2025-01-01T00.00.00.000Z",
        )
        _save(
            path,
            pd.DataFrame({"concept_id": [0], "method": ["M"], "test_hm": [value + 0.5]}),
            "2025-02-01T00.00.00.000Z",
        )
    # An unversioned latent_metrics file in one setting only, and a setting folder with nothing in it.
    (root / "gemma2_2b_l10").mkdir(exist_ok=True)
    pd.DataFrame({"concept_id": [0], "method": ["M"], "roc_auc": [0.9], "setting": ["wrong"]}).to_parquet(
        root / "gemma2_2b_l10" / "latent_metrics.parquet"
    )
    (root / "empty_setting").mkdir()
    (root / "notes.txt").write_text("not a setting folder")
    return root


def test_latest_version_of_every_other_setting(results: Path) -> None:
    loaded = _dataset(results, current_setting="current").load()
    sel = loaded["steering_selection"].sort_values("setting")
    assert sel["setting"].tolist() == ["gemma2_2b_l10", "gemma2_9b_l31"]  # current skipped
    assert sel["test_hm"].tolist() == [1.5, 2.5]  # latest versions
    lm = loaded["latent_metrics"]
    assert lm["setting"].tolist() == ["gemma2_2b_l10"]  # folder wins over a stale column
    sources = loaded[SOURCES_KEY].set_index(["setting", "dataset"])
    assert sources.loc[("gemma2_2b_l10", "steering_selection"), "version"] == "2025-02-01T00.00.00.000Z"
    assert sources.loc[("gemma2_2b_l10", "latent_metrics"), "version"] == "unversioned"


def test_pinned_version_and_bad_pin(results: Path) -> None:
    pins = {"gemma2_9b_l31": {"steering_selection": "2025-01-01T00.00.00.000Z"}}
    sel = _dataset(results, current_setting="current", load_versions=pins).load()["steering_selection"]
    assert sel.set_index("setting")["test_hm"].to_dict() == {"gemma2_2b_l10": 1.5, "gemma2_9b_l31": 2.0}
    bad = {"gemma2_9b_l31": {"steering_selection": "1999-01-01T00.00.00.000Z"}}
    # Kedro wraps load errors in DatasetError; the message keeps the one line naming the key.
    with pytest.raises(
        DatasetError, match=r"load_versions\.gemma2_9b_l31\.steering_selection: version '1999"
    ):
        _dataset(results, current_setting="current", load_versions=bad).load()


def test_no_current_setting_keeps_all_and_missing_root_is_empty(tmp_path: Path, results: Path) -> None:
    assert len(_dataset(results).load()["steering_selection"]) == 3
    loaded = _dataset(tmp_path / "nowhere").load()
    assert loaded["steering_selection"].empty and "setting" in loaded["steering_selection"].columns
    assert loaded[SOURCES_KEY].empty


def test_bad_templates_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(AxbenchConfigError, match="sources.x.filepath must hold"):
        ResultsAcrossSettingsDataset(sources={"x": str(tmp_path / "a.parquet")})
    with pytest.raises(AxbenchConfigError, match="unsupported file type"):
        ResultsAcrossSettingsDataset(sources={"x": str(tmp_path / "{setting}" / "a.json")})
    with pytest.raises(AxbenchConfigError, match="at least one source"):
        ResultsAcrossSettingsDataset(sources={})


def test_read_only_and_preview_is_json_table(results: Path) -> None:
    ds = _dataset(results, current_setting="current")
    with pytest.raises(DatasetError, match="read-only"):
        ds.save({})
    preview = ds.preview()
    json.dumps(preview)  # kedro-viz must be able to serialise it
    assert preview["columns"] == ["setting", "dataset", "version", "filepath"]
    assert len(preview["data"]) == 3


def test_markdown_dataset_versions_and_html_preview(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    MarkdownDataset(filepath=str(path), version=Version(None, "2025-01-01T00.00.00.000Z")).save("# Old <b>")
    MarkdownDataset(filepath=str(path), version=Version(None, "2025-02-01T00.00.00.000Z")).save(
        "# New <b> | x |"
    )
    latest = MarkdownDataset(filepath=str(path), version=Version(None, None))
    assert latest.load() == "# New <b> | x |"
    preview = latest.preview()
    assert preview.startswith("<pre") and "# New &lt;b&gt; | x |" in preview
    old = MarkdownDataset(filepath=str(path), version=Version("2025-01-01T00.00.00.000Z", None))
    assert old.load() == "# Old <b>"
