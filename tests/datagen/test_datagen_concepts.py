"""Concept-list loaders (Neuronpedia JSON / CSV / TXT), seeded selection and concepts_meta (protocol §1.1, §2.1)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from axbench_kedro.datagen.concepts import (
    ConceptEntry,
    concept_entries,
    concepts_frame,
    concepts_meta_from_jsonl,
    concepts_meta_from_rows,
    metadata_jsonl_lines,
    parse_concept_csv,
    parse_neuronpedia,
    sae_id_from_ref,
    select_concepts,
)
from axbench_kedro.datagen.io import ConceptListDataset, ProtocolDataError, read_concept_file
from axbench_kedro.errors import AxbenchDataError
from fixtures.released_layout import make_released_frames

RAW = Path(__file__).resolve().parents[2] / "data" / "01_raw"


def _np(index, description, layer="20-gemmascope-res-16k", model="gemma-2-2b"):
    return {"modelId": model, "layer": layer, "index": index, "description": description}


def test_neuronpedia_keeps_the_first_description_per_index():
    records = [_np("5", " dogs "), _np("9", "cats"), _np("5", "puppies"), _np(5, "hounds"), _np("2", "birds")]
    entries = parse_neuronpedia(records)
    assert [e.concept for e in entries] == ["dogs", "cats", "birds"]
    assert entries[0].ref == "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/5"
    assert [e.sae_id for e in entries] == [5, 9, 2]


def test_neuronpedia_source_check_and_missing_key():
    with pytest.raises(AxbenchDataError, match="column 'layer'.*10-gemmascope-res-16k"):
        parse_neuronpedia([_np("1", "x")], "export.json", expected_source="gemma-2-2b/10-gemmascope-res-16k")
    with pytest.raises(AxbenchDataError, match="export.json: column 'description'"):
        parse_neuronpedia([{"modelId": "m", "layer": "l", "index": 1}], "export.json")
    with pytest.raises(AxbenchDataError, match="JSON list"):
        parse_neuronpedia({"a": 1}, "export.json")


def test_shipped_neuronpedia_example(tmp_path):
    entries = read_concept_file(RAW / "concepts_demo_neuronpedia.json")
    records = json.loads((RAW / "concepts_demo_neuronpedia.json").read_text())
    assert len(records) > len(entries)  # the example repeats a feature index
    indices = [str(r["index"]) for r in records]
    assert [e.sae_id for e in entries] == [int(i) for i in dict.fromkeys(indices)]
    first = {}
    for r in records:
        first.setdefault(str(r["index"]), r["description"].strip())
    assert [e.concept for e in entries] == list(first.values())


def test_csv_with_and_without_header():
    text = "concept,url\nrental services,https://www.neuronpedia.org/gemma-2-2b/10-gemmascope-res-16k/42\ncats,\n"
    entries = parse_concept_csv(text)
    assert entries == [
        ConceptEntry(
            "rental services", "https://www.neuronpedia.org/gemma-2-2b/10-gemmascope-res-16k/42", 42
        ),
        ConceptEntry("cats", "null", -1),
    ]
    assert parse_concept_csv("rental services,http://x/7\n") == [
        ConceptEntry("rental services", "http://x/7", 7)
    ]
    frame = pd.DataFrame({"concept": [" a "], "url": [None]})
    assert parse_concept_csv(frame) == [ConceptEntry("a")]
    with pytest.raises(AxbenchDataError, match="column 'concept'"):
        parse_concept_csv(pd.DataFrame({"name": ["a"]}), "list.csv")


def test_txt_and_file_dispatch(tmp_path):
    (tmp_path / "c.txt").write_text("cats\n\n  dogs  \n")
    assert [e.concept for e in read_concept_file(tmp_path / "c.txt")] == ["cats", "dogs"]
    (tmp_path / "c.json").write_text(json.dumps([_np("3", "x")]))
    assert read_concept_file(tmp_path / "c.json")[0].sae_id == 3
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(AxbenchDataError, match="bad.json: not valid JSON"):
        read_concept_file(tmp_path / "bad.json")
    with pytest.raises(AxbenchDataError, match="unsupported"):
        (tmp_path / "c.yaml").write_text("x")
        read_concept_file(tmp_path / "c.yaml")
    with pytest.raises(AxbenchDataError, match="not found"):
        read_concept_file(tmp_path / "missing.csv")


def test_concept_list_dataset_reads_each_format(tmp_path):
    entries = concept_entries(ConceptListDataset(str(RAW / "concepts_demo.csv")).load())
    assert len(entries) >= 6 and all(e.ref == "null" for e in entries)
    raw = ConceptListDataset(str(RAW / "concepts_demo_neuronpedia.json")).load()
    assert isinstance(raw, list) and isinstance(raw[0], dict)
    assert concept_entries(raw, expected_source="gemma-2-2b/20-gemmascope-res-16k")[0].sae_id == 1021


def test_selection_is_python_random_42_shuffle():
    entries = [ConceptEntry(f"c{i}") for i in range(50)]
    expected = list(entries)
    random.Random(42).shuffle(expected)
    assert select_concepts(entries, 10) == expected[:10]
    assert select_concepts(entries, 30)[:10] == select_concepts(entries, 10)  # Concept500 ⊂ Concept16K
    assert select_concepts(entries, None) == entries  # no max_concepts: file order
    assert select_concepts(entries, 100) == expected


def test_demo_selection_covers_all_genres():
    chosen = select_concepts(read_concept_file(RAW / "concepts_demo.csv"), 4, 42)
    text = " ".join(e.concept for e in chosen).lower()
    assert "python" in text and "percent" in text and "cats" in text
    # the suppression demo's rule concept (conf/demo: suppression.concepts.concept_ids [0, 3])
    assert [e.rule_id for e in chosen] == [None, None, None, "hashtags"]


def test_sae_id_from_ref():
    assert sae_id_from_ref("https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/123") == 123
    assert sae_id_from_ref("null") == -1
    assert sae_id_from_ref(None) == -1
    assert sae_id_from_ref("https://x/y/abc") == -1


def test_concepts_frame_and_jsonl_roundtrip():
    meta = concepts_frame(
        [ConceptEntry("a", "http://n/m/s/4", 4), ConceptEntry("a")], [["code"], ["text", "math"]]
    )
    assert meta["concept_id"].tolist() == [0, 1] and meta["concept_id"].dtype == "int64"
    lines = metadata_jsonl_lines(meta)
    assert json.loads(lines[0]) == {
        "concept_id": 0,
        "concept": "a",
        "ref": "http://n/m/s/4",
        "concept_genres_map": {"a": ["code"]},
    }
    back = concepts_meta_from_jsonl(lines)
    assert back["concept_genres"].tolist() == [["code"], ["text", "math"]]
    assert back["sae_id"].tolist() == [4, -1]


def test_concepts_meta_derived_from_released_files():
    train, test = make_released_frames(n_concepts=3)
    meta = concepts_meta_from_rows(train, test)
    assert meta["concept_id"].tolist() == [0, 1, 2]
    assert meta["concept_genres"].tolist() == [["text"], ["code"], ["math"]]
    assert meta["sae_id"].tolist() == [4021, 77, 15002]
    assert meta["ref"].str.startswith("https://www.neuronpedia.org/gemma-2-2b/").all()
    only_train = concepts_meta_from_rows(train, None)
    assert only_train["ref"].tolist() == ["null"] * 3 and only_train["sae_id"].tolist() == [-1] * 3
    only_test = concepts_meta_from_rows(None, test)
    assert only_test["concept"].tolist() == meta["concept"].tolist()


# ---- bad concept lists: one line naming the file, before anything is generated --------------------------------------
def _load_error(path: Path) -> str:
    """The message of the error the ``concept_list`` dataset raises on ``path`` (a Kedro ``DatasetError`` that is
    also an ``AxbenchDataError``, so Kedro passes it through and the CLI prints one line)."""
    with pytest.raises(ProtocolDataError) as info:
        ConceptListDataset(str(path)).load()
    assert isinstance(info.value, DatasetError) and isinstance(info.value, AxbenchDataError)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.csv", ""),
        ("header_only.csv", "concept,url\n"),
        ("blank.txt", "\n  \n"),
        ("empty.json", "[]"),
        ("whitespace.json", "  \n"),
    ],
)
def test_empty_concept_list_is_an_error_naming_the_file(tmp_path, name, content):
    (tmp_path / name).write_text(content, encoding="utf-8")
    assert "no concepts" in _load_error(tmp_path / name)
    with pytest.raises(AxbenchDataError, match="concept_list: no concepts"):
        concept_entries([], "concept_list")  # what the datagen node gets, should a dataset hand it nothing


@pytest.mark.parametrize(
    "content",
    [
        "description,url\ncats,https://www.neuronpedia.org/gemma-2-2b/10-gemmascope-res-16k/3\n",
        "name\ncats\ndogs\n",
        "feature,link\ncats,\n",
        "topic,source\ncats,https://www.neuronpedia.org/gemma-2-2b/10-gemmascope-res-16k/3\n",
    ],
)
def test_csv_header_without_concept_column_is_an_error(tmp_path, content):
    path = tmp_path / "concepts.csv"
    path.write_text(content, encoding="utf-8")
    message = _load_error(path)
    assert "column 'concept': missing from the header row" in message


def test_csv_header_columns_are_taken_by_name():
    entries = parse_concept_csv("url,concept\nhttp://x/7,cats\n,dogs\n", "c.csv")
    assert entries == [ConceptEntry("cats", "http://x/7", 7), ConceptEntry("dogs")]
    assert parse_concept_csv("Concept\ncats\n") == [ConceptEntry("cats")]
    # no header: a first row of plain text whose link column is empty or a link is data
    assert [e.concept for e in parse_concept_csv("cats,\ndogs,http://x/2\n")] == ["cats", "dogs"]
    assert [e.ref for e in parse_concept_csv("cats,null\ndogs,http://x/2\n")] == ["null", "http://x/2"]


@pytest.mark.parametrize(
    ("name", "content", "first"),
    [
        ("bom.csv", "concept,url\ncats,\n", "cats"),
        ("bom_no_header.csv", "cats,\ndogs,\n", "cats"),
        ("bom.txt", "cats\ndogs\n", "cats"),
        ("bom.json", json.dumps([_np("3", "cats")]), "cats"),
    ],
)
def test_utf8_bom_is_stripped_silently(tmp_path, name, content, first):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    entries = concept_entries(ConceptListDataset(str(path)).load())
    assert entries[0].concept == first and "\ufeff" not in entries[0].concept


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.txt", "latin1.json"])
def test_non_utf8_file_is_one_line_naming_the_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes("concept\ncafé au lait\n".encode("latin-1"))
    message = _load_error(path)
    assert "not UTF-8 text (byte 0xe9 at offset 11)" in message


# ---- rule concepts (optional rule_id column, protocol §6) --------------------------------------------------------
def test_concept_csv_rule_id_column_marks_rule_concepts(tmp_path):
    path = tmp_path / "concepts.csv"
    path.write_text(
        "concept,url,rule_id\ncats,,\nanswers in capital letters,,all_capital\ndogs,http://x/7,\n"
    )
    entries = read_concept_file(path)
    assert [e.rule_id for e in entries] == [None, "all_capital", None]
    assert entries[2] == ConceptEntry("dogs", "http://x/7", 7)
    meta = concepts_frame(entries)
    assert list(meta.columns) == ["concept_id", "concept", "ref", "sae_id", "concept_genres", "rule_id"]
    assert meta["rule_id"].tolist() == [None, "all_capital", None]
    frame = pd.DataFrame({"concept": ["a", "b"], "rule_id": ["emoji", float("nan")]})
    assert [e.rule_id for e in parse_concept_csv(frame)] == ["emoji", None]


def test_concept_list_without_rule_ids_gives_a_null_rule_id_column():
    meta = concepts_frame([ConceptEntry("a"), ConceptEntry("b", "http://n/m/s/4", 4)])
    assert meta["rule_id"].isna().all() and meta["sae_id"].tolist() == [-1, 4]
    assert parse_concept_csv("concept,url\ncats,http://x/7\n") == [ConceptEntry("cats", "http://x/7", 7)]


def test_unknown_rule_id_is_one_error_naming_file_value_and_row(tmp_path):
    path = tmp_path / "concepts.csv"
    path.write_text("concept,rule_id\ncats,\nshouting,ALL_CAPS\n")
    with pytest.raises(AxbenchDataError) as err:
        read_concept_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "column 'rule_id'" in message and "'ALL_CAPS'" in message and "row 1" in message
    with pytest.raises(DatasetError, match="unknown rule 'ALL_CAPS'"):
        ConceptListDataset(str(path)).load()


def test_neuronpedia_records_and_jsonl_carry_rule_ids():
    entries = parse_neuronpedia([{**_np("5", "shouting"), "rule_id": "all_capital"}, _np("9", "cats")])
    assert [e.rule_id for e in entries] == ["all_capital", None]
    with pytest.raises(AxbenchDataError, match="record 0"):
        parse_neuronpedia([{**_np("5", "shouting"), "rule_id": "loud"}], "export.json")
    meta = concepts_frame(entries, [["text"], ["text"]])
    lines = metadata_jsonl_lines(meta)
    assert json.loads(lines[0])["rule_id"] == "all_capital" and "rule_id" not in json.loads(lines[1])
    back = concepts_meta_from_jsonl(lines)
    assert back["rule_id"].tolist() == ["all_capital", None]
    with pytest.raises(AxbenchDataError, match="column 'rule_id': unknown rule 'loud' at line 1"):
        concepts_meta_from_jsonl([lines[0].replace("all_capital", "loud")])
