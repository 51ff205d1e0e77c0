"""Catalog datasets of datagen: protocol-checked parquet, upstream seed pools, provided released tables."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, Version

from axbench_kedro.datagen.io import (
    ProtocolDataError,
    ProtocolParquetDataset,
    ProvidedTableDataset,
    SeedPoolsDataset,
)
from axbench_kedro.errors import AxbenchDataError
from fixtures.released_layout import make_released_frames, write_released_layout


def test_protocol_parquet_reads_released_files_unchanged(tmp_path):
    train_path, test_path = write_released_layout(tmp_path, "9b", 31)
    for path, schema in ((train_path, "train_data"), (test_path, "latent_eval_data")):
        frame = ProtocolParquetDataset(schema=schema, filepath=str(path)).load()
        pd.testing.assert_frame_equal(frame, pd.read_parquet(path))


def test_protocol_parquet_versioned_roundtrip(tmp_path):
    train, _ = make_released_frames()
    ds = ProtocolParquetDataset(
        schema="train_data", filepath=str(tmp_path / "train.parquet"), version=Version(None, None)
    )
    ds.save(train)
    pd.testing.assert_frame_equal(
        ds.load(), train, check_dtype=False
    )  # parquet strings come back as str dtype
    assert len(list((tmp_path / "train.parquet").iterdir())) == 1  # <timestamp>/train.parquet


def test_protocol_parquet_errors_are_one_line(tmp_path):
    train, test = make_released_frames()
    path = tmp_path / "bad.parquet"
    train.drop(columns=["category"]).to_parquet(path)
    with pytest.raises(ProtocolDataError) as exc:
        ProtocolParquetDataset(schema="train_data", filepath=str(path)).load()
    assert str(exc.value) == (
        f"{path}: column 'category': missing (train_data needs ['input', 'output', 'output_concept', "
        "'concept_genre', 'category', 'dataset_category', 'concept_id'])"
    )
    assert isinstance(exc.value, AxbenchDataError) and isinstance(exc.value, DatasetError)
    dup = test.copy()
    dup.loc[dup.index[0], "output_concept"] = "another text"
    catalog = DataCatalog(
        {
            "latent_eval_data": ProtocolParquetDataset(
                schema="latent_eval_data", filepath=str(tmp_path / "t.parquet")
            )
        }
    )
    with pytest.raises(
        DatasetError, match="t.parquet: column 'concept_id': id 0 carries two concept texts"
    ) as exc:
        catalog.save("latent_eval_data", dup)  # nothing invalid is ever written
    assert "\n" not in str(exc.value) and isinstance(exc.value.__cause__, AxbenchDataError)
    assert not (tmp_path / "t.parquet").exists()
    with pytest.raises(DatasetError, match="schema"):
        ProtocolParquetDataset(schema="nope", filepath=str(path))


def test_seed_pools_dataset_builds_the_paper_pools(tmp_path):
    pd.DataFrame(
        {"instruction": ["a", "b", "c"], "context": ["", "", ""], "category": ["open_qa"] * 3}
    ).to_json(tmp_path / "dolly.jsonl", orient="records", lines=True)
    pd.DataFrame({"question": ["m1", "m2"]}).to_json(tmp_path / "gsm8k.jsonl", orient="records", lines=True)
    pd.DataFrame({"instruction": ["c1", "c2"], "input": ["", ""]}).to_parquet(tmp_path / "code.parquet")
    ds = SeedPoolsDataset(
        dolly=str(tmp_path / "dolly.jsonl"),
        gsm8k=str(tmp_path / "gsm8k.jsonl"),
        python_code=str(tmp_path / "code.parquet"),
        per_split=1,
    )
    assert ds.exists()
    frame = ds.load()
    assert frame.values.tolist() == [
        ["text", "train", "a"], ["text", "test", "b"], ["math", "train", "m1"],
        ["math", "test", "m2"], ["code", "train", "c1"], ["code", "test", "c2"],
    ]  # fmt: skip
    missing = SeedPoolsDataset(dolly=str(tmp_path / "x.jsonl"), gsm8k="g.jsonl", python_code="c.json")
    with pytest.raises(ProtocolDataError, match="x.jsonl: file not found"):
        missing.load()


def _provided_catalog(tmp_path, **provided: str) -> DataCatalog:
    """The provided_* entries of a copy of the project's conf/, with ``provided`` written into a paper
    environment's globals.yml (the documented way to switch to released data)."""
    import shutil

    from kedro.config import OmegaConfigLoader

    from axbench_kedro.settings import CONFIG_LOADER_ARGS
    from fixtures.project_catalog import ROOT

    conf = tmp_path / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    if provided:
        lines = ["", "provided:", *(f"  {name}: {path}" for name, path in provided.items())]
        with (conf / "gemma2_2b_l10" / "globals.yml").open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    args = {**CONFIG_LOADER_ARGS, "default_run_env": "gemma2_2b_l10"}
    config = OmegaConfigLoader(str(conf), **args)["catalog"]
    return DataCatalog.from_config({k: v for k, v in config.items() if k.startswith("provided_")})


def test_provided_entries_load_none_by_default_and_the_released_files_when_set(tmp_path):
    catalog = _provided_catalog(tmp_path)
    assert catalog.load("provided_train_data") is None and catalog.load("provided_latent_eval_data") is None
    train_path, test_path = write_released_layout(tmp_path / "released", "2b", 10)
    catalog = _provided_catalog(tmp_path, train_data=str(train_path), latent_eval_data=str(test_path))
    pd.testing.assert_frame_equal(catalog.load("provided_train_data"), pd.read_parquet(train_path))
    pd.testing.assert_frame_equal(catalog.load("provided_latent_eval_data"), pd.read_parquet(test_path))
    with pytest.raises(DatasetError, match="read-only"):
        catalog.save("provided_train_data", pd.read_parquet(train_path))


def test_provided_entry_errors_name_file_and_column(tmp_path):
    train, _ = make_released_frames()
    path = tmp_path / "train.parquet"
    train.drop(columns=["output"]).to_parquet(path)
    with pytest.raises(DatasetError) as exc:
        ProvidedTableDataset(schema="train_data", filepath=str(path)).load()
    assert str(exc.value).startswith(f"{path}: column 'output': missing") and "\n" not in str(exc.value)
    with pytest.raises(ProtocolDataError, match="nope.parquet: file not found"):
        ProvidedTableDataset(schema="train_data", filepath=str(tmp_path / "nope.parquet")).load()
    with pytest.raises(DatasetError, match="schema"):
        ProvidedTableDataset(schema="preference_data")


def test_unknown_latent_eval_categories_stop_both_catalog_entries(tmp_path):
    """[D 30] through the catalog: ``latent_eval_data`` and ``provided_latent_eval_data`` refuse the file on load."""
    _, test = make_released_frames()
    test.loc[test["category"] == "hard negative", "category"] = "hard negative seen"
    n_bad = int((test["category"] == "hard negative seen").sum())
    path = tmp_path / "data.parquet"
    test.to_parquet(path)
    expected = f"{path}: column 'category': unexpected values 'hard negative seen' ({n_bad} rows)"
    for dataset in (
        ProtocolParquetDataset(schema="latent_eval_data", filepath=str(path)),
        ProvidedTableDataset(schema="latent_eval_data", filepath=str(path)),
    ):
        with pytest.raises(ProtocolDataError) as info:
            dataset.load()
        assert isinstance(info.value, DatasetError) and str(info.value).startswith(expected)
        assert "\n" not in str(info.value)
