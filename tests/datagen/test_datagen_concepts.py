"""Concept-list loaders (Neuronpedia JSON / CSV / TXT), seeded selection and concepts_meta (protocol §1.1, §2.1)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

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
from axbench_kedro.datagen.io import ConceptListDataset, read_concept_file
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
