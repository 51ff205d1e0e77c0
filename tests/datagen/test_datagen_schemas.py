"""Schema validation on load (protocol §1): released layout passes; bad files fail with one line naming file and column."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from axbench_kedro.datagen.io import read_table
from axbench_kedro.datagen.schemas import check_counts, validate_table
from axbench_kedro.errors import AxbenchDataError
from fixtures.released_layout import TEST_COLUMNS, TRAIN_COLUMNS, make_released_frames, write_released_layout


def test_released_layout_passes_unchanged(tmp_path):
    train_path, test_path = write_released_layout(tmp_path, "2b", 10)
    assert train_path == tmp_path / "2b" / "l10" / "train" / "data.parquet"
    train = read_table(train_path, "train_data")
    test = read_table(test_path, "latent_eval_data")
    assert list(train.columns) == TRAIN_COLUMNS and list(test.columns) == TEST_COLUMNS
    assert train.equals(pd.read_parquet(train_path)) and test.equals(pd.read_parquet(test_path))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_column_names_file_and_column(tmp_path):
    train, _ = make_released_frames()
    path = tmp_path / "train.parquet"
    train.drop(columns=["concept_genre"]).to_parquet(path)
    with pytest.raises(AxbenchDataError) as exc:
        read_table(path, "train_data")
    assert _one_line(exc).startswith(f"{path}: column 'concept_genre': missing")


def test_duplicate_concept_ids_fail(tmp_path):
    _, test = make_released_frames()
    test.loc[test.index[0], "output_concept"] = "a different concept text"
    path = tmp_path / "test.parquet"
    test.to_parquet(path)
    with pytest.raises(AxbenchDataError) as exc:
        read_table(path, "latent_eval_data")
    line = _one_line(exc)
    assert line.startswith(f"{path}: column 'concept_id': id 0 carries two concept texts")


def test_hard_negative_and_pool_texts_are_not_duplicates():
    train, test = make_released_frames()
    validate_table(train, "train_data")  # pool rows carry EEEEE with id -1
    validate_table(test, "latent_eval_data")  # hard negatives carry word//meaning


def test_wrong_dtype_and_values_fail():
    train, _ = make_released_frames()
    bad = train.assign(concept_id=train["concept_id"].astype(float))
    with pytest.raises(AxbenchDataError, match="train_data: column 'concept_id': expected int"):
        validate_table(bad, "train_data")
    with pytest.raises(AxbenchDataError, match=r"column 'category': unexpected values 'neutral' \(24 rows\)"):
        validate_table(train.assign(category="neutral"), "train_data")
    with pytest.raises(AxbenchDataError, match="column 'concept_genre'"):
        validate_table(train.assign(concept_genre="poetry"), "train_data")
    with pytest.raises(AxbenchDataError, match="column 'output': expected string"):
        validate_table(train.assign(output=1), "train_data")


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(AxbenchDataError, match="file not found"):
        read_table(tmp_path / "nope.parquet", "train_data")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(AxbenchDataError, match="junk.parquet: cannot be read"):
        read_table(tmp_path / "junk.parquet", "train_data")


def test_concepts_meta_and_preference_schemas():
    meta = pd.DataFrame(
        {
            "concept_id": [0, 0],
            "concept": ["a", "b"],
            "ref": ["null", "null"],
            "sae_id": [-1, -1],
            "concept_genres": [["text"], ["code"]],
        }
    )
    with pytest.raises(AxbenchDataError, match="column 'concept_id': id 0 appears twice"):
        validate_table(meta, "concepts_meta")
    with pytest.raises(AxbenchDataError, match="preference_data: column 'losing_output': missing"):
        validate_table(pd.DataFrame({c: ["x"] for c in ("input", "winning_output")}), "preference_data")


def test_count_mismatch_only_warns(caplog):
    train, test = make_released_frames(positives=4, pool_per_genre=4)
    with caplog.at_level(logging.WARNING):
        assert check_counts(train, "train_data", {"positive": 4, "pool": 4})
        assert not caplog.records
        assert not check_counts(train, "train_data", {"positive": 72, "pool": 72}, "t.parquet")
    assert "t.parquet" in caplog.text and "72" in caplog.text


def test_latent_eval_categories_outside_the_schema_are_named_with_counts(tmp_path):
    """[D 30]: one error naming the file, each unknown value and its row count; nothing dropped or relabelled."""
    _, test = make_released_frames()
    hard = test.index[test["category"] == "hard negative"]
    test.loc[hard[:2], "category"] = "hard negative seen"
    test.loc[hard[2:3], "category"] = "hard negative unseen"
    path = tmp_path / "test" / "data.parquet"
    path.parent.mkdir()
    test.to_parquet(path)
    with pytest.raises(AxbenchDataError) as info:
        read_table(path, "latent_eval_data")
    assert str(info.value) == (
        f"{path}: column 'category': unexpected values 'hard negative seen' (2 rows), "
        "'hard negative unseen' (1 row); allowed: 'hard negative', 'negative', 'positive'"
    )
    missing = test.assign(category=test["category"].where(test.index != 0, None))
    with pytest.raises(AxbenchDataError, match=r"<missing> \(1 row\)"):
        validate_table(missing, "latent_eval_data", "test.parquet")
