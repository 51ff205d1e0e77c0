"""benchmarks/capacity_plan.py: hand-checked counts, cost and device-hours from a small fake measurement set."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import capacity_plan as cp  # noqa: E402

from axbench_kedro.llm.ledger import Price  # noqa: E402
from axbench_kedro.methods.registry import get_method  # noqa: E402

UNITS = cp.Units(
    gen_tok_s=100.0, gen_batch=16, train_s_per_concept_method=2.0, train_methods=("DiffMean",),
    train_rows_per_concept=10.0, train_prompt_tokens=20.0, train_answer_tokens=30.0, model="m",
    model_params=1e9, machine="test box", device="cpu", dtype="float32", commit="abc", date="2026-12-01",
)  # fmt: skip
WORK = cp.Workload(
    setting="s", model="big", model_params=2e9,
    steering={"A": (0.5, 1.0, 2.0), "B": (1.0, 2.0), "Free": ()},
    n_instructions=4, replicates=2, max_new_tokens=128, trained=("A", "B", "C"),
    train_positives=15, train_negatives=15, answer_tokens=30.0, judge_model="j",
)  # fmt: skip


def test_plan_row_hand_checked() -> None:
    # per concept: A 4×3 + B 4×2 + Free 4×2 (replicates) = 28 generations
    assert cp.generations_per_concept(WORK) == 28
    p = cp.plan_row("Concept500", 10, WORK, UNITS, (100.0, 50.0), Price(0.15, 0.60))
    assert (p.generations, p.judge_calls) == (280, 840)
    assert (p.input_tokens, p.output_tokens) == (84_000, 42_000)
    assert p.cost_usd == pytest.approx(84_000 * 0.15e-6 + 42_000 * 0.60e-6)  # 0.0378
    assert p.batch_cost_usd == pytest.approx(0.0189)
    # generation: 280 × 128 tokens ÷ 100 tok/s × (2e9 / 1e9) = 716.8 s
    assert p.gen_hours == pytest.approx(716.8 / 3600)
    # training: 10 concepts × 3 methods × 2 s × data (30 rows × 50 tokens ÷ 10 × 50 = 3) × size 2 = 360 s
    assert p.train_hours == pytest.approx(360 / 3600)


def test_a_concept_limit_caps_the_methods_training_and_steering() -> None:
    limited = dataclasses.replace(WORK, concept_limit={"Free": 3, "C": 4})  # e.g. SFT's max_concepts
    # generations: 10 × (A 12 + B 8) + 3 × Free 8 = 224 (not 280); a limit above the concepts changes nothing
    assert cp.generations(limited, 10) == 224 and cp.generations(limited, 2) == 2 * 28
    p = cp.plan_row("Concept500", 10, limited, UNITS, (100.0, 50.0), Price(0.15, 0.60))
    assert (p.generations, p.judge_calls, p.input_tokens) == (224, 672, 67_200)
    assert p.gen_hours == pytest.approx(224 * 128 / 100 * 2 / 3600)
    # training: (A 10 + B 10 + C 4) concept-trainings × 2 s × data 3 × size 2 = 288 s
    assert cp.trained_concepts(limited, 10) == 24 and p.train_hours == pytest.approx(288 / 3600)


def test_judge_tokens_count_template_text_and_placeholders() -> None:
    templates = {"fluency": "x" * 40 + "{generation}", "concept": "y" * 80 + "{concept}{generation}"}
    tin, tout = cp.judge_tokens_per_call(templates, max_new_tokens=100)
    # fluency 10 + 100, concept 20 + 12 + 100 → mean 121
    assert tin == pytest.approx(121.0) and tout == cp.ASSUMED["judge_output_tokens"]


def test_paper_setting_workload_follows_its_configuration() -> None:
    w = cp.workload("gemma2_9b_l31")
    assert (w.n_instructions, w.replicates, w.max_new_tokens, w.model_params) == (10, 1, 128, 9.24e9)
    assert (w.train_positives, w.train_negatives, w.answer_tokens) == (72, 72, 160.0)
    assert w.steering["DiffMean"] == (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0)
    assert w.steering["RePS"][-1] == 50.0 and w.steering["Prompt"] == ()
    free = [m for m in w.steering if get_method(m).factor_free]
    assert cp.generations_per_concept(w) == 10 * 14 * (len(w.steering) - len(free)) + 10 * len(free)


def test_sft_runs_on_20_concepts_on_2b_and_not_at_all_on_9b() -> None:
    """Protocol §8: SFT trains (and so steers) the first 20 concepts on 2B and is not run on 9B."""
    small, big = cp.workload("gemma2_2b_l20"), cp.workload("gemma2_9b_l20")
    assert "SFT" in small.trained and small.steering["SFT"] == () and small.concept_limit == {"SFT": 20}
    assert "SFT" not in big.trained and "SFT" not in big.steering and big.concept_limit == {}
    assert len(big.trained) == len(small.trained) - 1 and "LoRA" in big.trained
    # 500 concepts on 2B: SFT's 10 generations per concept (factor-free, 1 replicate) on 20 of them only, and
    # HyperSteer's on its 50 held-out concepts (held_out 0.1) only
    hyper = cp.method_generations(small, "HyperSteer")
    assert cp.steered_concepts(small, "HyperSteer", 500) == 50
    assert cp.generations(small, 500) == 500 * cp.generations_per_concept(small) - 480 * 10 - 450 * hyper
    assert cp.trained_concepts(small, 500) == 500 * len(small.trained) - 480
    assert cp.generations(big, 500) == 500 * cp.generations_per_concept(big) - 450 * hyper
    assert cp.trained_concepts(big, 16_000) == 16_000 * len(big.trained)


def _measurements(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "meta": {
                    "model": "m",
                    "model_params": 2.61e8,
                    "device": "cpu",
                    "dtype": "float32",
                    "cpus": 2,
                    "torch_threads": 2,
                    "machine": "test box",
                    "commit": "abc",
                    "date": "2026-12-01",
                },
                "P1": {"steered_tok_s": 50.0, "rows": 16},
                "Dask": {"sequential_s": 24.0, "concepts": 4, "methods": ["DiffMean", "Probe", "ReFT-r1"]},
                "training_units": {
                    "positives_per_concept": 6,
                    "negatives_per_concept": 6,
                    "tokens_per_row": 60,
                    "output_tokens_per_row": 40,
                },
            }  # fmt: skip
        )
    )
    return path


def test_main_writes_the_generated_plan(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "capacity_plan.md"
    assert cp.main(["--measurements", str(_measurements(tmp_path / "m.json")), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!-- Generated by benchmarks/capacity_plan.py")
    assert cp.COMMAND in text and "test box" in text and "2.00 s per concept and method" in text
    small, big = cp.workload("gemma2_2b_l10"), cp.workload("gemma2_9b_l20")
    gens = cp.generations(small, 500)
    hyper = cp.method_generations(small, "HyperSteer")
    # SFT on 20 concepts, HyperSteer on its 50 held-out ones
    assert gens == 500 * cp.generations_per_concept(small) - 480 * 10 - 450 * hyper
    assert f"| Concept500 | gemma2_2b_l10 | 500 | {gens:,} | {3 * gens:,} |" in text
    gens_16k = 16_000 * cp.generations_per_concept(big) - 14_400 * hyper  # HyperSteer: 1,600 held out
    assert f"| Concept16K | gemma2_9b_l20 | 16,000 | {gens_16k:,} |" in text
    assert "HyperSteer steers 50 of 500" in text


def test_missing_measurements_is_one_error_and_nothing_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "plan.md"
    assert cp.main(["--measurements", str(tmp_path / "none.json"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "none.json" in err and "\n" not in err and not out.exists()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"meta": {}, "P1": {}}))
    assert cp.main(["--measurements", str(bad), "--out", str(out)]) == 1
    assert "missing figure" in capsys.readouterr().err and not out.exists()


def test_a_method_that_steers_only_held_out_concepts_is_charged_for_those() -> None:
    held_out = dataclasses.replace(WORK, steered={"B": lambda n: max(1, round(0.1 * n))})  # HyperSteer-like
    # generations: 10 × (A 12 + Free 8) + 1 × B 8 = 208; training still counts B on every concept
    assert cp.generations(held_out, 10) == 208 and cp.trained_concepts(held_out, 10) == 30
    hypersteer = get_method("HyperSteer")
    hp = hypersteer.Params(held_out=0.1)
    assert hypersteer.steered_concept_count(hp, 500) == 50
    assert hypersteer.steered_concept_count(hypersteer.Params(held_out=3), 500) == 3
    assert hypersteer.steered_concept_count(hypersteer.Params(held_out_ids=[4, 9]), 500) == 2
    sft = get_method("SFT")
    assert sft.steered_concept_count(sft.Params(max_concepts=20), 500) == 20
    assert get_method("DiffMean").steered_concept_count(None, 500) == 500
