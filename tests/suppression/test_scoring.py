"""Suppression scoring (protocol §6 [D 24], §10.2): HM(2 − concept, instruction, fluency) with the zero veto, rule
concepts HM(instruction, fluency, 2 − rule), selection on ids 0–4 and report on 5–9."""

from __future__ import annotations

import pandas as pd
import pytest

from axbench_kedro.suppression.scoring import suppression_generation_scores, suppression_selection


def _judgements(rows: list[tuple[int, int, float, str, float]]) -> pd.DataFrame:
    """rows: (concept_id, input_id, factor, criterion, rating)."""
    return pd.DataFrame(
        [
            {
                "dataset_name": "AlpacaEvalSuppress",
                "concept_id": c,
                "input_id": i,
                "factor": f,
                "method": "RePS",
                "criterion": crit,
                "rating": r,
            }
            for c, i, f, crit, r in rows
        ]
    )


def _gen(c: int, i: int, f: float, concept: float, instr: float, flu: float, crit: str = "concept") -> list:
    return [(c, i, f, crit, concept), (c, i, f, "instruction", instr), (c, i, f, "fluency", flu)]


def test_suppression_hm_10_2() -> None:
    j = _judgements(_gen(0, 0, -2.0, 2, 2, 2) + _gen(0, 1, -2.0, 0, 2, 1))
    gen = suppression_generation_scores(j)
    assert gen["hm"].tolist() == [0.0, pytest.approx(1.5)]  # HM(0,2,2) = 0; HM(2,2,1) = 1.5
    assert gen["concept"].tolist() == [2.0, 0.0]  # stored as judged
    assert set(gen["concept_criterion"]) == {"concept"}


def test_rule_concepts_use_the_rule_rating_in_place_of_the_concept() -> None:
    j = _judgements(
        _gen(0, 0, -2.0, 1, 2, 2)
        + [(7, 0, -2.0, "rule", 0.5), (7, 0, -2.0, "instruction", 2), (7, 0, -2.0, "fluency", 1)]
        + [(7, 1, -2.0, "rule", 2), (7, 1, -2.0, "instruction", 2), (7, 1, -2.0, "fluency", 2)]
    )
    gen = suppression_generation_scores(j).set_index(["concept_id", "input_id"])
    assert gen.loc[(0, 0), "hm"] == pytest.approx(3 / (1 / 1 + 1 / 2 + 1 / 2))
    assert gen.loc[(7, 0), "hm"] == pytest.approx(3 / (1 / 2 + 1 / 1 + 1 / 1.5))  # HM(instr, flu, 2 − rule)
    assert gen.loc[(7, 1), "hm"] == 0.0  # rule fully followed: vetoed
    assert gen.loc[(7, 0), "concept_criterion"] == "rule" and gen.loc[(7, 0), "concept"] == 0.5


def test_selection_uses_ids_0_to_4_and_reports_5_to_9() -> None:
    rows = []
    # factor −4: good on the selection split, poor on the test split; factor −2: the reverse
    for i in range(10):
        sel = i < 5
        rows += _gen(0, i, -4.0, 0, 2, 2 if sel else 1)
        rows += _gen(0, i, -2.0, 2 if sel else 0, 2, 2)
    scores, selection = suppression_selection(suppression_generation_scores(_judgements(rows)), n_selection=5)
    assert set(scores["n"]) == {5}
    best = selection.iloc[0]
    assert best["best_factor"] == -4.0 and best["best_index"] == 0
    assert best["selection_hm"] == pytest.approx(2.0)
    assert best["test_hm"] == pytest.approx(
        1.5
    )  # reported on 5–9 at the selected factor, not the test maximum 2.0


def test_ties_go_to_the_strongest_suppression() -> None:
    rows = [r for i in range(10) for f in (-50.0, -2.0) for r in _gen(0, i, f, 0, 2, 2)]
    _, selection = suppression_selection(suppression_generation_scores(_judgements(rows)), n_selection=5)
    assert selection.iloc[0]["best_factor"] == -50.0
