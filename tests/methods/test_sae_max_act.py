"""The optional Neuronpedia max-activation table (protocol §1.5, [D 13]): formats, the Neuronpedia column names,
"no file = no table", one clear error per malformed file, and the catalog entry of every environment."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, DatasetError

from axbench_kedro.datasets.sae_max_act import SAEMaxActDataset
from axbench_kedro.detection.sae_max_act import read_sae_max_act
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[2] / "conf"
TABLE = pd.DataFrame({"sae_id": [0, 3, 11], "max_act": [1.5, 42.25, 7.0]})


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=path.suffix == ".jsonl")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_each_format_loads_the_same_table(tmp_path, suffix) -> None:
    path = _write(TABLE, tmp_path / f"sae_max_act{suffix}")
    table = read_sae_max_act(path)
    assert table.available
    assert [table.value(f) for f in (0, 3, 11)] == [1.5, 42.25, 7.0]
    assert table.value(4) is None  # no row: the caller decides (an error for a present table [D 12])
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert table.sha256 == sha and table.describe() == f"{path} (sha256 {sha[:12]}, 3 rows)"


def test_a_neuronpedia_style_export_is_mapped(tmp_path) -> None:
    """Neuronpedia lists features with a string ``index`` and ``maxValue`` (plus other fields, ignored)."""
    export = pd.DataFrame(
        {
            "modelId": "gemma-2-2b",
            "layer": "10-gemmascope-res-16k",
            "index": ["0", "3", "11"],
            "maxValue": [1.5, 42.25, 7.0],
            "maxValueTokenIndex": [4, 9, 2],
        }  # fmt: skip
    )
    table = read_sae_max_act(_write(export, tmp_path / "export.json"))
    assert table.values.index.dtype == "int64" and table.values.to_dict() == {0: 1.5, 3: 42.25, 11: 7.0}


@pytest.mark.parametrize(
    ("frame", "column", "detail"),
    [
        (pd.DataFrame({"sae_id": [0, 1]}), "max_act", "missing column"),
        (pd.DataFrame({"feature": [0], "max_act": [1.0]}), "sae_id", "missing column"),
        (pd.DataFrame({"sae_id": [0, 1.5], "max_act": [1.0, 2.0]}), "sae_id", r"not a feature index.*1\.5"),
        (pd.DataFrame({"sae_id": ["7", "abc"], "max_act": [1.0, 2.0]}), "sae_id", "not a feature index.*abc"),
        (pd.DataFrame({"sae_id": [3, -1], "max_act": [1.0, 2.0]}), "sae_id", "not a feature index.*-1"),
        (pd.DataFrame({"sae_id": [3, 5, 3], "max_act": [1.0, 2.0, 3.0]}), "sae_id", r"duplicate id.*\[3\]"),
        (
            pd.DataFrame({"sae_id": [3, 5], "max_act": [1.0, float("nan")]}),
            "max_act",
            r"not a finite.*sae_id \[5\]",
        ),
        (pd.DataFrame({"sae_id": [3, 5], "max_act": [float("inf"), 1.0]}), "max_act", r"not a finite.*\[3\]"),
        (pd.DataFrame({"sae_id": [3, 5], "max_act": ["1.0", "high"]}), "max_act", "not a finite.*high"),
        (pd.DataFrame({"sae_id": pd.Series([], dtype="int64"), "max_act": []}), "sae_id", "no rows"),
    ],
)
def test_a_malformed_table_is_one_error_naming_file_and_column(tmp_path, frame, column, detail) -> None:
    path = _write(frame, tmp_path / "bad.csv")
    with pytest.raises(
        AxbenchDataError, match=rf"^sae_max_act: {path}: (?=.*'{column}')(?=.*{detail})"
    ) as err:
        read_sae_max_act(path)
    assert "\n" not in str(err.value)


def test_unreadable_or_unknown_files_are_one_error(tmp_path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not a parquet file")
    with pytest.raises(AxbenchDataError, match=rf"^sae_max_act: {broken}: cannot be read"):
        read_sae_max_act(broken)
    other = _write(TABLE, tmp_path / "table.csv").rename(tmp_path / "table.tsv")
    with pytest.raises(AxbenchDataError, match=r"unsupported file type '\.tsv'"):
        read_sae_max_act(other)


def test_dataset_absent_file_is_no_table_and_a_bad_file_stops_the_load(tmp_path) -> None:
    entry = {"type": "axbench_kedro.datasets.sae_max_act.SAEMaxActDataset"}
    catalog = DataCatalog.from_config(
        {
            "missing": {**entry, "filepath": str(tmp_path / "none.csv")},
            "unset": {**entry, "filepath": None},
            "good": {**entry, "filepath": str(_write(TABLE, tmp_path / "good.parquet"))},
            "bad": {**entry, "filepath": str(_write(TABLE.assign(sae_id=[1, 1, 2]), tmp_path / "bad.csv"))},
        }
    )
    missing = catalog.load("missing")
    assert not missing.available and missing.value(3) is None
    assert (
        missing.missing_reason
        == f"no sae_max_act table (catalog entry `sae_max_act`: {tmp_path}/none.csv does not exist)"
    )
    assert "no path configured" in catalog.load("unset").missing_reason
    assert catalog.load("good").value(3) == 42.25
    # One line naming file and column; the project CLI prints the AxbenchDataError found in the cause chain
    with pytest.raises(DatasetError) as err:
        catalog.load("bad")
    cause = err.value.__cause__
    assert isinstance(cause, AxbenchDataError) and "\n" not in str(cause)
    assert re.match(r"^sae_max_act: .*bad\.csv: column 'sae_id': 1 duplicate id", str(cause))
    with pytest.raises(Exception, match="read-only"):
        SAEMaxActDataset(filepath=None).save(pd.DataFrame())


@pytest.mark.parametrize("env", ["demo", "gemma2_2b_l10", "gemma2_9b_l31"])
def test_catalog_entry_defaults_to_the_setting_folder(env) -> None:
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(CONF), env=env, **args)
    entry = loader["catalog"]["sae_max_act"]
    assert entry["type"] == "axbench_kedro.datasets.sae_max_act.SAEMaxActDataset"
    assert entry["filepath"] == f"data/01_raw/{loader['globals']['setting']}/sae_max_act.csv"
    assert entry["metadata"]["kedro-viz"]["layer"] == "raw"


def test_a_global_points_the_entry_elsewhere(tmp_path) -> None:
    """``sae_max_act: <path>`` in an environment's globals.yml replaces the default path."""
    entry = yaml.safe_load((CONF / "base" / "catalog_latent_eval.yml").read_text(encoding="utf-8"))[
        "sae_max_act"
    ]
    for env, text in (("base", "setting: s1\n"), ("mine", "sae_max_act: /data/np/s1.parquet\n")):
        (tmp_path / env).mkdir()
        (tmp_path / env / "globals.yml").write_text(text, encoding="utf-8")
    (tmp_path / "base" / "catalog.yml").write_text(yaml.safe_dump({"sae_max_act": entry}), encoding="utf-8")
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    default = OmegaConfigLoader(str(tmp_path), env="base", **args)["catalog"]["sae_max_act"]
    assert default["filepath"] == "data/01_raw/s1/sae_max_act.csv"
    custom = OmegaConfigLoader(str(tmp_path), env="mine", **args)["catalog"]["sae_max_act"]
    assert custom["filepath"] == "/data/np/s1.parquet"
