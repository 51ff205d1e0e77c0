"""Released dictionaries (protocol §3.16): file checks, concept matching, the missing-concept rule, detection equal
to the rank-1 method's, and a run through training → latent_eval → steering_eval on the tiny model."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.dictionaries import ReleasedDictionariesDataset
from axbench_kedro.detection.summary import magnitude_table
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods import MethodArtifact, get_method
from axbench_kedro.methods.dictionary_file import (
    DictionaryRow,
    DictionarySource,
    feature_path,
    match_concepts,
)
from axbench_kedro.pipelines.training import create_pipeline as training_pipeline
from fixtures.tiny_models import make_tiny_target_model

from .pipeline_inputs import (
    LAYER,
    run_latent,
    run_steering,
    training_catalog,
    write_dictionary,
)
from .synthetic_data import CONCEPTS

RTR, DMD = "Dictionary(ReFT-r1 16K)", "Dictionary(DiffMean 16K)"
RUN = RunSettings(setting="tiny", layer=LAYER, seed=42)
NP = "https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/"


def _rows(*items: tuple[str, str | None]) -> list[DictionaryRow]:
    return [DictionaryRow(i, text, feature_path(ref)) for i, (text, ref) in enumerate(items)]


# ---- concept matching -------------------------------------------------------------------------------------------
def test_match_by_text_then_ref_then_lowest_row() -> None:
    rows = _rows(
        ("other", None), ("cats", NP + "5"), ("dogs", NP + "9"), ("cats", NP + "7"), ("cats", NP + "7")
    )
    m = match_concepts(
        rows,
        [(10, " cats ", "gemma-2-2b/20-gemmascope-res-16k/7"), (11, "dogs", None), (12, "cats", None)],
        "concept",
        "D",
    )
    assert m.concept_ids == (10, 11, 12)
    # cats with ref 7: rows 3 and 4 remain → the lowest (one duplicate); dogs: row 2; cats without ref: rows 1,3,4 → 1
    assert m.rows == (3, 2, 1) and m.duplicate_rows == (1, 0, 2)


def test_match_on_concept_id_checks_the_text() -> None:
    rows = _rows(("a", None), ("b", None))
    assert match_concepts(rows, [(1, "b", None), (0, "a", None)], "concept_id", "D").rows == (1, 0)
    with pytest.raises(AxbenchDataError, match=r"dictionary D: row 1 is 'b' but concept_id 1 is 'x'"):
        match_concepts(rows, [(1, "x", None)], "concept_id", "D")


def test_missing_concepts_are_one_error_listing_them() -> None:
    rows = _rows(("a", None))
    concepts = [(0, "a", None)] + [(i, f"gone {i}", None) for i in range(1, 25)]
    with pytest.raises(AxbenchDataError) as err:
        match_concepts(rows, concepts, "concept", "Dictionary(X)")
    msg = str(err.value)
    assert msg.startswith("dictionary Dictionary(X): 24 concept(s) have no row")
    assert "1: 'gone 1'" in msg and "20: 'gone 20'" in msg and "21: 'gone 21'" not in msg
    assert "and 4 more" in msg and msg.endswith("restrict the run to concept_ids: [0]")


def test_feature_path() -> None:
    assert feature_path(NP + "12") == "gemma-2-2b/20-gemmascope-res-16k/12"
    assert feature_path("null") is None and feature_path(None) is None


# ---- files --------------------------------------------------------------------------------------------------------
def _folder(tmp_path, name="dict", n=3, d=8):
    texts = [f"c{i}" for i in range(n)]
    write_dictionary(
        tmp_path / name / "l1", torch.randn(n, d, generator=torch.Generator().manual_seed(0)), texts
    )
    return tmp_path / name / "l1"


def test_load_checks_and_hashes(tmp_path) -> None:
    folder = _folder(tmp_path)
    src = ReleasedDictionariesDataset(path=str(tmp_path)).load()
    assert src.missing_reason("dict", 1) is None and "nothing/l1" in src.missing_reason("nothing", 1)
    d = src.load("dict", 1, d_model=8)
    assert d.weight.shape == (3, 8) and d.weight.dtype == torch.float32 and d.bias is None
    assert [r.concept for r in d.rows] == ["c0", "c1", "c2"] and d.max_act == {0: 1.0, 1: 2.0, 2: 3.0}
    assert d.sha256["weight.pt"] == hashlib.sha256((folder / "weight.pt").read_bytes()).hexdigest()
    assert set(d.sha256) == {"weight.pt", "metadata.jsonl", "acts.json"}
    with pytest.raises(
        AxbenchDataError, match=r"weight.pt: width d=8 but the target model's hidden size is 16"
    ):
        DictionarySource(str(tmp_path)).load("dict", 1, d_model=16)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (
            lambda f: torch.save(torch.zeros(3, 2, 2), f / "weight.pt"),
            r"weight.pt: weight has shape \(3, 2, 2\)",
        ),
        (lambda f: torch.save({"w": torch.zeros(3, 8)}, f / "weight.pt"), r"weight.pt: holds a dict"),
        (
            lambda f: torch.save(torch.zeros(4, 8), f / "weight.pt"),
            r"metadata.jsonl: 3 lines but .* has 4 rows",
        ),
        (
            lambda f: (f / "metadata.jsonl").write_text('{"concept_id": 1, "concept": "x"}\n'),
            r"metadata.jsonl: line 1 has concept_id 1, expected 0",
        ),
        (
            lambda f: (f / "acts.json").write_text(json.dumps({"max_act": {"7": 1.0}})),
            r"acts.json: max_act has id\(s\) \[7\] outside the 3 rows",
        ),
    ],
)
def test_bad_files_are_one_error_naming_the_file(tmp_path, breakage, message) -> None:
    breakage(_folder(tmp_path))
    with pytest.raises(AxbenchDataError, match=message):
        DictionarySource(str(tmp_path)).load("dict", 1, d_model=8)


def test_trainer_side_names_and_bias_file(tmp_path) -> None:
    folder = _folder(tmp_path)
    (folder / "weight.pt").rename(folder / "LsReFT_weight.pt")
    torch.save(torch.tensor([0.5, -1.0, 2.0]), folder / "LsReFT_bias.pt")
    d = DictionarySource(str(tmp_path)).load("dict", 1)
    assert d.weight.shape == (3, 8) and torch.equal(d.bias, torch.tensor([0.5, -1.0, 2.0]))


# ---- detection equals the rank-1 method's -------------------------------------------------------------------------
@pytest.mark.parametrize(("dictionary", "rank1"), [(RTR, "ReFT-r1"), (DMD, "DiffMean")])
def test_detection_equals_the_rank1_method(dictionary, rank1) -> None:
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))
    meta = {"status": "ok", "concept_ids": [0, 1, 2]}
    art = {"weight": weight, "bias": torch.zeros(3)}
    h = torch.randn(5, 16, generator=torch.Generator().manual_seed(4))
    ours = get_method(dictionary).detection_encoder(MethodArtifact(dictionary, art, meta))
    theirs = get_method(rank1).detection_encoder(MethodArtifact(rank1, art, meta))
    assert torch.equal(
        ours.apply(h @ ours.weight.T + ours.bias), theirs.apply(h @ theirs.weight.T + theirs.bias)
    )
    assert get_method(dictionary).magnitude_source == get_method(rank1).magnitude_source == "latent_eval"


def test_reft_r1_dictionary_uses_a_bias_file_diffmean_does_not() -> None:
    art = {"weight": torch.eye(2), "bias": torch.tensor([-0.5, 1.0])}
    meta = {"status": "ok", "concept_ids": [0, 1]}
    h = torch.tensor([[1.0, -2.0]])
    reft = get_method(RTR).detection_encoder(MethodArtifact(RTR, art, meta))
    diff = get_method(DMD).detection_encoder(MethodArtifact(DMD, art, meta))
    assert reft.apply(h @ reft.weight.T + reft.bias).tolist() == [[0.5, 0.0]]  # ReLU(h·w + b)
    assert diff.apply(h @ diff.weight.T + diff.bias).tolist() == [[1.0, -2.0]]  # h·w


# ---- pipelines ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tm():
    return make_tiny_target_model("gemma3", n_layers=3, hidden=64, seed=4)


def test_missing_folder_skips_visibly(tm, tmp_path) -> None:
    params = TrainingParams(methods=["DiffMean", RTR, DMD])
    catalog = training_catalog(tm, None, tmp_path / "cache", params, dictionaries=str(tmp_path / "absent"))
    SequentialRunner().run(training_pipeline(), catalog)
    arts = catalog.load("method_artifacts")
    summary = catalog.load("training_summary").set_index("method")
    assert arts["DiffMean"].ok
    for name, folder in ((RTR, "reft-r1-16k"), (DMD, "diffmean-16k")):
        assert arts[name].status == "skipped" and arts[name].tensors == {}
        assert f"absent/{folder}/l{LAYER}" in arts[name].skip_reason
        assert summary.loc[name, "status"] == "skipped"


def test_missing_concept_stops_training(tm, tmp_path) -> None:
    root = tmp_path / "dicts"
    write_dictionary(
        root / "diffmean-16k" / f"l{LAYER}", torch.randn(2, 64), [CONCEPTS[0][0], "something else"]
    )
    params = TrainingParams(methods=[DMD])
    catalog = training_catalog(tm, None, tmp_path / "cache", params, dictionaries=str(root))
    with pytest.raises(Exception) as err:
        SequentialRunner().run(training_pipeline(), catalog)
    msg = str(err.value)
    assert f"dictionary {DMD}: 2 concept(s) have no row" in msg
    assert f"1: {CONCEPTS[1][0]!r}" in msg and f"2: {CONCEPTS[2][0]!r}" in msg and "concept_ids: [0]" in msg


@pytest.mark.slow
def test_dictionaries_of_trained_rows_score_and_steer_like_the_rank1_methods(tm, tmp_path) -> None:
    # 1) train ReFT-r1 and DiffMean, 2) release their rows as dictionaries (shuffled, with a duplicate and an
    # unrelated row), 3) import them: detection scores must equal the trained methods', then steer them.
    first = training_catalog(tm, None, tmp_path / "c1", TrainingParams(methods=["ReFT-r1", "DiffMean"]))
    SequentialRunner().run(training_pipeline(), first)
    trained = first.load("method_artifacts")
    texts = [c for c, _ in CONCEPTS]
    order = [2, 0, 1]  # dictionary rows 1..3 hold concepts 2, 0, 1; row 4 repeats concept 0 (never picked)
    root = tmp_path / "released"
    for method, folder in (("ReFT-r1", "reft-r1-16k"), ("DiffMean", "diffmean-16k")):
        w = trained[method].tensors["weight"]
        weight = torch.cat([torch.randn(1, 64), w[order], torch.randn(1, 64)])
        write_dictionary(
            root / folder / f"l{LAYER}", weight, ["unrelated", *[texts[i] for i in order], texts[0]]
        )
    second = training_catalog(
        tm, None, tmp_path / "c2", TrainingParams(methods=[RTR, DMD]), dictionaries=str(root)
    )
    SequentialRunner().run(training_pipeline(), second)
    imported = second.load("method_artifacts")
    for name, method in ((RTR, "ReFT-r1"), (DMD, "DiffMean")):
        art = imported[name]
        assert art.ok and art.concept_ids == [0, 1, 2]
        assert torch.equal(art.tensors["weight"], trained[method].tensors["weight"])
        assert art.meta["dictionary_row"] == [2, 3, 1] and art.meta["duplicate_rows"] == [1, 0, 0]
        assert art.meta["released_max_act"] == [3.0, 4.0, 2.0]  # write_dictionary: max_act of row r = r + 1
        assert art.meta["match_on"] == "concept" and set(art.meta["dictionary_sha256"]) >= {"weight.pt"}
    assert (
        imported[RTR].meta["dictionary_kind"] == "reft_r1"
        and imported[DMD].meta["dictionary_kind"] == "diffmean"
    )
    arts = {**trained, **imported}
    concepts_meta = second.load("concepts_meta")

    latent = run_latent(tmp_path, tm=tm, concepts_meta=concepts_meta, artifacts=arts, run=RUN)
    scores, mags = latent["latent_scores"], latent["max_activations"]
    for name, method in ((RTR, "ReFT-r1"), (DMD, "DiffMean")):
        ours = scores[scores["method"] == name].set_index(["concept_id", "row_id"])["max_act"].sort_index()
        theirs = (
            scores[scores["method"] == method].set_index(["concept_id", "row_id"])["max_act"].sort_index()
        )
        assert len(ours) == len(theirs) > 0
        pd.testing.assert_series_equal(ours, theirs)
        m_ours = mags[mags["method"] == name].set_index("concept_id")["magnitude_base"].sort_index()
        m_theirs = mags[mags["method"] == method].set_index("concept_id")["magnitude_base"].sort_index()
        pd.testing.assert_series_equal(m_ours, m_theirs)
    assert set(latent["latent_metrics"]["method"]) >= {RTR, DMD}

    steering_params = SteeringEvalParams.model_validate(
        {
            "methods": [RTR, DMD],
            "factors": [0.5, 1.0],
            "instructions": {"n_selection": 1, "n_test": 1},
            "generation": {"max_new_tokens": 4, "batch_size": 16},
            "judge": {"kind": "llm", "model": "gpt-4o-mini"},
            "n_resamples": 50,
        }
    )
    instructions = [f"tell me about the {w}" for w in ("sea", "city", "train", "music", "school", "river")]
    steering = run_steering(
        tmp_path,
        tm=tm,
        concepts_meta=concepts_meta,
        artifacts=arts,
        max_activations=mags,
        params=steering_params,
        instructions=instructions,
        run=RUN,
        judge_reply=lambda body: "Fine.\nRating: [[1]]",
    )
    gens = steering["steering_generations"]
    assert set(gens["method"]) == {RTR, DMD}
    for name in (RTR, DMD):
        rows = gens[gens["method"] == name].merge(mags[mags["method"] == name], on="concept_id")
        assert len(rows) == 3 * 2 * 2  # concepts × instructions × factors
        assert (rows["strength"] - rows["factor"] * rows["magnitude_base"]).abs().max() < 1e-3  # h + f·m·w
    assert set(steering["steering_selection"]["method"]) == {RTR, DMD}


# ---- magnitude_source: released, file hashes on the run card ----------------------------------------------------
def _released_artifact(max_acts: list[float | None], source: str = "released") -> MethodArtifact:
    meta = {
        "status": "ok",
        "concept_ids": [4, 7],
        "dictionary_row": [11, 2],
        "released_max_act": max_acts,
        "magnitude_source": source,
        "dictionary_folder": "data/01_raw/dictionaries/s/diffmean-16k/l3",
        "dictionary_sha256": {"acts.json": "a" * 64, "weight.pt": "b" * 64},
    }
    return MethodArtifact(DMD, {"weight": torch.ones(2, 4), "bias": torch.zeros(2)}, meta)


def test_released_magnitudes_come_from_acts_json_with_the_nonpositive_rule() -> None:
    table = magnitude_table(
        pd.DataFrame(columns=["method", "concept_id", "max_act"]), {DMD: _released_artifact([3.5, -1.0])}
    )
    rows = table.set_index("concept_id")
    assert rows["magnitude_base"].to_dict() == {4: 3.5, 7: 50.0}  # ≤ 0 → 50 (§3.0)
    assert set(rows["source"]) == {"released_table"}
    assert (
        "diffmean-16k/l3/acts.json" in rows.loc[4, "source_ref"]
        and "aaaaaaaaaaaa" in rows.loc[4, "source_ref"]
    )


def test_released_magnitudes_without_a_value_name_the_parameter() -> None:
    with pytest.raises(
        AxbenchDataError, match=r"Dictionary\(DiffMean 16K\)\.magnitude_source.*concept_id 7 \(row 2\)"
    ):
        magnitude_table(pd.DataFrame(), {DMD: _released_artifact([3.5, None])})


def test_latent_eval_magnitudes_ignore_the_released_table() -> None:
    latent = pd.DataFrame({"method": [DMD] * 3, "concept_id": [4, 4, 7], "max_act": [1.0, 2.5, 0.0]})
    table = magnitude_table(latent, {DMD: _released_artifact([3.5, 9.0], source="latent_eval")})
    assert table.set_index("concept_id")["magnitude_base"].to_dict() == {4: 2.5, 7: 50.0}
    assert set(table["source"]) == {"latent_eval"}


def test_dictionary_file_hashes_reach_the_training_summary_and_the_run_card() -> None:
    from axbench_kedro.methods.trainer import _source_files
    from axbench_kedro.reporting.run_card import _source_files_section

    text = _source_files(DMD, _released_artifact([1.0, 2.0]))
    assert text == (
        f"data/01_raw/dictionaries/s/diffmean-16k/l3/acts.json sha256={'a' * 64}; "
        f"data/01_raw/dictionaries/s/diffmean-16k/l3/weight.pt sha256={'b' * 64}"
    )
    summary = pd.DataFrame({"method": ["DiffMean", DMD], "source_files": ["", text]})
    lines = _source_files_section(summary)
    assert lines[0] == "## Method source files"
    assert [ln for ln in lines if ln.startswith("- ")] == [
        f"- **{DMD}**: `data/01_raw/dictionaries/s/diffmean-16k/l3/acts.json sha256={'a' * 64}`",
        f"- **{DMD}**: `data/01_raw/dictionaries/s/diffmean-16k/l3/weight.pt sha256={'b' * 64}`",
    ]
    assert _source_files_section(summary.assign(source_files="")) == []
