"""Seed pools, seeded sampling, the negative mix and hard-negative positions (protocol §2.2, §2.5, §10.5)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from axbench_kedro.config.datagen import DatagenParams
from axbench_kedro.datagen.instructions import (
    GENRES,
    InstructionPools,
    clean_instruction,
    hard_negative_positions,
    negative_genre_counts,
    stage_rng,
)
from axbench_kedro.datagen.upstream import alpaca_eval_instructions, main, seed_pools_from_upstream
from axbench_kedro.errors import AxbenchDataError

RAW = Path(__file__).resolve().parents[2] / "data" / "01_raw"


def test_negative_mix_for_36_is_26_5_5():  # §10.5
    assert negative_genre_counts(36) == {"text": 26, "math": 5, "code": 5}
    assert DatagenParams().latent_negative_counts == {"text": 26, "math": 5, "code": 5}
    assert negative_genre_counts(6) == {"text": 6, "math": 0, "code": 0}
    assert negative_genre_counts(6, {"math": 1, "code": 1}) == {"text": 4, "math": 1, "code": 1}


def test_hard_negatives_use_instructions_n_to_n_plus_k():  # §10.5
    assert list(hard_negative_positions(36, 3)) == [36, 37, 38]
    assert list(hard_negative_positions(36, 0)) == []
    with pytest.raises(ValueError):
        hard_negative_positions(2, 3)


def test_clean_instruction_strips_spaces_dots_quotes():
    assert clean_instruction('  "Why is the sky blue?". ') == "Why is the sky blue?"
    assert clean_instruction("'List three fruits.'") == "List three fruits"


def test_shipped_seed_pools_are_large_enough():
    frame = pd.read_csv(RAW / "seed_instructions.csv")
    assert list(frame.columns) == ["genre", "split", "input"]
    pools = InstructionPools(frame)
    assert all(pools.sizes()[f"{g}_{s}"] >= 40 for g in GENRES for s in ("train", "test"))
    assert not frame["input"].duplicated().any()
    steering = pd.read_csv(RAW / "steering_instructions.csv")
    assert list(steering.columns) == ["instruction"] and len(steering) >= 40


def test_sampling_is_distinct_seeded_and_per_stage():
    frame = pd.DataFrame(
        {"genre": ["math"] * 30, "split": ["train"] * 30, "input": [f" q{i}. " for i in range(30)]}
    )
    pools = InstructionPools(frame)
    a = pools.sample("math", "train", 12, stage_rng(42, 3, "train"))
    assert a == pools.sample("math", "train", 12, stage_rng(42, 3, "train"))  # reproducible
    assert len(set(a)) == 12 and all(x.startswith("q") for x in a)  # distinct and cleaned
    assert a != pools.sample("math", "train", 12, stage_rng(42, 4, "train"))  # other concept
    assert a != pools.sample("math", "train", 12, stage_rng(42, 3, "latent"))  # other stage
    expected = [f"q{i}" for i in stage_rng(42, 3, "train").sample(range(30), 12)]
    assert a == expected  # uniform indices, k distinct, random.Random.sample


def test_pool_errors_name_the_column():
    with pytest.raises(AxbenchDataError, match="seed_instructions: column 'split'"):
        InstructionPools(pd.DataFrame({"genre": ["text"], "input": ["x"]}))
    with pytest.raises(AxbenchDataError, match="column 'genre': unknown values \\['poetry'\\]"):
        InstructionPools(pd.DataFrame({"genre": ["poetry"], "split": ["train"], "input": ["x"]}))
    pools = InstructionPools(
        pd.DataFrame({"genre": ["text"] * 3, "split": ["test"] * 3, "input": list("abc")})
    )
    with pytest.raises(AxbenchDataError, match="text/test pool has 3 instructions, 4 are needed"):
        pools.sample("text", "test", 4, stage_rng(1, 0, "x"))


def test_seed_pools_from_upstream_filters_and_splits(tmp_path):
    dolly = pd.DataFrame(
        {
            "instruction": ["q0", "q1", "q2", "long " * 200, "q4", "q5"],
            "context": ["", "some context", "", "", None, ""],
            "category": ["open_qa", "open_qa", "brainstorming", "open_qa", "open_qa", "open_qa"],
        }
    )
    gsm = pd.DataFrame({"question": ["m0", "m1", "x" * 600, "m3"]})
    code = pd.DataFrame({"instruction": ["c0", "c1", "c2"], "input": ["", "[1, 2]", ""]})
    pools = seed_pools_from_upstream(dolly, gsm, code, per_split=1)
    assert pools.values.tolist() == [
        ["text", "train", "q0"],
        ["text", "test", "q4"],
        ["math", "train", "m0"],
        ["math", "test", "m1"],
        ["code", "train", "c0"],
        ["code", "test", "c2"],
    ]
    assert alpaca_eval_instructions(pd.DataFrame({"instruction": ["b", "a"], "output": [1, 2]}))[
        "instruction"
    ].tolist() == ["b", "a"]
    dolly.to_json(tmp_path / "dolly.jsonl", orient="records", lines=True)
    gsm.to_json(tmp_path / "gsm.jsonl", orient="records", lines=True)
    code.to_json(tmp_path / "code.json", orient="records")
    out = tmp_path / "pools.csv"
    assert (
        main(
            [
                "seed-pools",
                str(tmp_path / "dolly.jsonl"),
                str(tmp_path / "gsm.jsonl"),
                str(tmp_path / "code.json"),
                str(out),
                "--per-split",
                "1",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(out), pools)
