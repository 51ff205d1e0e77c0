"""Steering metrics: HM (§10.1), selection and Overall (§10.13), win rates (§5.9)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.metrics.steering import (
    generation_scores,
    harmonic_mean,
    harmonic_means,
    overall_scores,
    select_factors,
    steering_scores,
    win_rates,
)


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ((2, 1, 0), 0.0),
        ((2, 2, 1), 1.5),
        ((2, 2, 2), 2.0),
        ((1, 1, 1), 1.0),
        ((2, 1, 1), 1.2),
        ((0.5, 2, 2), 1.0),
    ],
)
def test_harmonic_mean_examples(ratings: tuple[float, float, float], expected: float) -> None:
    assert harmonic_mean(*ratings) == pytest.approx(expected)
    assert harmonic_means(np.array([ratings]))[0] == pytest.approx(expected)


def _judgements(rows: list[tuple[int, int, float, str, tuple[float, float, float]]]) -> pd.DataFrame:
    out = []
    for concept_id, input_id, factor, method, ratings in rows:
        for criterion, rating in zip(("concept", "instruction", "fluency"), ratings, strict=True):
            out.append(
                {
                    "dataset_name": "AlpacaEval",
                    "concept_id": concept_id,
                    "input_id": input_id,
                    "factor": factor,
                    "method": method,
                    "criterion": criterion,
                    "rating": float(rating),
                }
            )
    return pd.DataFrame(out)


def test_mean_of_hms_not_hm_of_means() -> None:
    judged = _judgements([(0, 0, 1.0, "M", (2, 2, 2)), (0, 1, 1.0, "M", (2, 2, 0))])
    gen = generation_scores(judged)
    scores = steering_scores(gen, n_selection=5)
    assert scores["lm_judge_rating"].tolist() == [1.0]
    assert scores["n"].tolist() == [2]
    assert scores["fluency_ratings"].tolist() == [1.0]


def test_suppression_inverts_the_concept_rating() -> None:
    judged = _judgements([(0, 0, -1.0, "M", (2, 2, 2)), (0, 1, -1.0, "M", (0, 2, 1))])
    gen = generation_scores(judged, inverted=("concept",))
    assert gen.sort_values("input_id")["hm"].tolist() == pytest.approx([0.0, 1.5])
    assert gen.sort_values("input_id")["concept"].tolist() == [2.0, 0.0]


def _scores_table(factors, sel_means, test_means, concept_id=0, method="M") -> pd.DataFrame:
    rows = []
    for split, means in (("selection", sel_means), ("test", test_means)):
        for f, m in zip(factors, means, strict=True):
            rows.append(
                {
                    "concept_id": concept_id,
                    "method": method,
                    "dataset_name": "AlpacaEval",
                    "split": split,
                    "factor": f,
                    "n": 5,
                    "lm_judge_rating": m,
                    "relevance_concept_ratings": m + 0.1,
                    "relevance_instruction_ratings": m + 0.2,
                    "fluency_ratings": m + 0.3,
                }
            )
    return pd.DataFrame(rows)


def test_selection_on_selection_split_score_on_test_split() -> None:
    table = _scores_table([0.2, 0.4, 0.6], [0.8, 1.1, 1.1], [0.5, 0.9, 1.3])
    sel = select_factors(table.sample(frac=1.0, random_state=3))  # input order must not matter
    row = sel.iloc[0]
    assert row["best_index"] == 1 and row["best_factor"] == 0.4
    assert row["selection_hm"] == pytest.approx(1.1)
    assert row["test_hm"] == pytest.approx(0.9)  # not the test maximum 1.3
    assert row["test_concept"] == pytest.approx(1.0)
    assert row["test_fluency"] == pytest.approx(1.2)
    assert math.isnan(row["test_perplexity"])


def test_overall_is_the_mean_of_concept_scores() -> None:
    table = pd.concat(
        [
            _scores_table([0.2, 0.4, 0.6], [0.8, 1.1, 1.1], [0.5, 0.9, 1.3], concept_id=0),
            _scores_table([0.2, 0.4, 0.6], [1.0, 0.2, 0.1], [0.3, 1.9, 1.9], concept_id=1),
        ]
    )
    overall = overall_scores(select_factors(table))
    assert overall["overall"].tolist() == pytest.approx([0.6])
    assert overall["n_concepts"].tolist() == [2]


def test_negative_factor_ties_go_to_the_strongest_suppression() -> None:
    table = _scores_table([-0.6, -0.4, -0.2], [1.0, 1.0, 0.5], [0.7, 0.2, 0.1])
    row = select_factors(table).iloc[0]
    assert row["best_factor"] == -0.6 and row["test_hm"] == pytest.approx(0.7)


def test_factor_free_method_reports_the_test_mean() -> None:
    table = _scores_table([0.2, 0.4], [0.4, 0.4], [0.6, 0.6], method="Prompt")
    row = select_factors(table, factor_free_methods=["Prompt"]).iloc[0]
    assert math.isnan(row["best_factor"]) and row["best_index"] == -1
    assert row["test_hm"] == pytest.approx(0.6)


def test_missing_test_factor_is_an_error() -> None:
    table = _scores_table([0.2, 0.4], [0.9, 0.1], [0.5, 0.5])
    table = table[~((table["split"] == "test") & (table["factor"] == 0.2))]
    with pytest.raises(AxbenchDataError, match="no test rows"):
        select_factors(table)


def test_win_rate_counts_half_ties() -> None:
    sel = pd.DataFrame(
        {
            "concept_id": [0, 1, 2, 3, 0, 1, 2, 3],
            "method": ["A"] * 4 + ["Prompt"] * 4,
            "dataset_name": "AlpacaEval",
            "test_hm": [1.0, 0.5, 0.2, 0.0, 0.5, 0.5, 0.9, 0.0],
        }
    )
    wr = win_rates(sel, baseline="Prompt").set_index("method")
    assert (wr.loc["A", "wins"], wr.loc["A", "ties"], wr.loc["A", "losses"]) == (1, 2, 1)
    assert wr.loc["A", "win_rate"] == pytest.approx(0.5)
    assert wr.loc["Prompt", "win_rate"] == pytest.approx(0.5)
    no_base = win_rates(sel[sel["method"] == "A"], baseline="Prompt")
    assert no_base["n"].tolist() == [0] and math.isnan(no_base["win_rate"].iloc[0])


def test_generation_scores_require_all_criteria() -> None:
    judged = _judgements([(0, 0, 1.0, "M", (2, 2, 2))])
    with pytest.raises(AxbenchDataError, match="criterion"):
        generation_scores(judged[judged["criterion"] != "fluency"])
