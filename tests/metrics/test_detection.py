"""Detection metrics: protocol §10.10 and §10.11 worked examples, edge cases, the mean ROC curve."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from axbench_kedro.metrics.detection import (
    concept_metrics,
    f1_threshold,
    imbalanced_metrics,
    mean_roc_curve,
    minmax_normalise,
    roc_auc,
    youden_threshold,
)

SCORES = [0.9, 0.4, 0.5, 0.1, 0.95]
CATS = ["positive", "positive", "negative", "negative", "hard negative"]


def test_worked_example_10_10() -> None:
    assert minmax_normalise(SCORES) == pytest.approx([0.941, 0.353, 0.471, 0.0, 1.0], abs=1e-3)
    m = concept_metrics(SCORES, CATS)
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(roc_auc_score([1, 1, 0, 0], SCORES[:4]))
    assert roc_auc_score([1, 1, 0, 0, 0], SCORES) == pytest.approx(
        0.5
    )  # what counting the hard negative gives
    assert m["youden_threshold"] == pytest.approx(0.941, abs=1e-3)
    assert m["positive_acc_youden"] == 0.5 and m["hard_negative_acc_youden"] == 0.0
    assert m["hardneg_macro_acc"] == 0.25
    assert m["pr_threshold"] == pytest.approx(0.353, abs=1e-3)
    assert (m["precision"], m["recall"]) == (0.5, 1.0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["overall_accuracy"] == pytest.approx(0.6)
    assert (m["positive_acc"], m["negative_acc"], m["hard_negative_acc"]) == (1.0, 0.5, 0.0)
    assert m["macro_acc"] == 0.5
    assert (m["max_act"], m["min_act"]) == (0.95, 0.1)
    assert (m["n_positive"], m["n_negative"], m["n_hard_negative"]) == (2, 2, 1)


def test_f1_threshold_on_positive_negative_rows_is_the_raw_0_4() -> None:
    norm = minmax_normalise(SCORES)[:4]
    tau = f1_threshold([1, 1, 0, 0], norm)
    assert tau == pytest.approx(norm[1])


def test_worked_example_10_11_imbalanced() -> None:
    m = imbalanced_metrics([0.9, 0.4], [0.1] * 198 + [0.95] * 2)
    assert (m["precision_imb"], m["recall_imb"]) == (0.5, 1.0)
    assert m["f1_imb"] == pytest.approx(2 / 3)
    assert m["auroc_imb"] == pytest.approx(
        roc_auc_score([1, 1] + [0] * 200, [0.9, 0.4] + [0.1] * 198 + [0.95] * 2)
    )


def test_constant_scores_give_auroc_one_half() -> None:
    m = concept_metrics([0.3] * 4, ["positive", "negative", "positive", "negative"])
    assert m["roc_auc"] == 0.5
    assert m["youden_threshold"] is None  # the first maximum of tpr - fpr is at the infinite threshold


def test_without_hard_negatives_the_hard_metrics_are_null_not_zero() -> None:
    m = concept_metrics([0.9, 0.2, 0.1], ["positive", "negative", "negative"])
    assert m["hard_negative_acc_youden"] is None and m["hardneg_macro_acc"] is None
    assert m["hard_negative_acc"] is None
    assert m["macro_acc"] == pytest.approx((m["positive_acc"] + m["negative_acc"]) / 2)


def test_auroc_matches_sklearn_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = rng.normal(size=50).round(1)  # ties included
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert youden_threshold([1, 0], [0.2, 0.2]) == np.inf  # ties only: the first maximum is the inf threshold


def test_missing_class_gives_null_metrics() -> None:
    m = concept_metrics([0.9, 0.8], ["positive", "positive"])
    assert m["roc_auc"] is None and m["f1"] is None
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_mean_roc_curve() -> None:
    fpr, tpr = mean_roc_curve(
        [([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]), ([1, 0], [0.1, 0.9]), ([1, 1], [0.2, 0.3])]
    )
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert tpr[50] == pytest.approx(0.5)  # perfect concept (1.0) and inverted concept (0.0) average to 0.5
    _, empty = mean_roc_curve([([1, 1], [0.1, 0.2])])
    assert np.isnan(empty).all()


def test_unknown_categories_are_an_error_never_dropped() -> None:
    """[D 30]: upstream's evaluators disagree on `hard negative seen` (AUROC: a negative; LatentStats: NaN label)."""
    from axbench_kedro.errors import AxbenchDataError

    cats = [*CATS[:4], "hard negative seen"]
    with pytest.raises(AxbenchDataError) as info:
        concept_metrics(SCORES, cats)
    assert "unexpected values 'hard negative seen' (1 row)" in str(info.value)
    with pytest.raises(AxbenchDataError, match="5 scores for 4 categories"):
        concept_metrics(SCORES, CATS[:4])


def _score_rows(ratings: list[float], categories: list[str], concept_id: int) -> dict[str, list]:
    return {
        "concept_id": [concept_id] * len(ratings),
        "category": categories,
        "max_act": ratings,
    }


def test_latent_metrics_count_prompt_parse_failures_per_concept_and_method() -> None:
    """[D 29]: every unusable PromptDetection rating (unparsable, `[[nan]]`, `[[inf]]`, out of range) is −1 and
    counted per concept and method; an activation method's −1 is a score, not a failure."""
    import pandas as pd

    from axbench_kedro.detection.summary import latent_metrics_frame
    from axbench_kedro.errors import AxbenchDataError
    from axbench_kedro.methods.prompt import parse_detection_rating

    replies = ["Rating: [[2]]", "Rating: [[nan]]", "Rating: [[inf]]", "Rating: [[0]]", "Rating: [[-inf]]"]
    ratings = [parse_detection_rating(r) for r in replies]
    assert ratings == [2.0, -1.0, -1.0, 0.0, -1.0]
    cats = ["positive", "positive", "negative", "negative", "hard negative"]
    rows = []
    for method, concept_scores in (("Prompt", {0: ratings, 1: [2.0, 2.0, 0.0, -1.0, 0.0]}),
                                   ("DiffMean", {0: [-1.0, 0.5, -1.0, -2.0, 0.1]})):  # fmt: skip
        for cid, scores in concept_scores.items():
            frame = pd.DataFrame(_score_rows(scores, cats, cid))
            rows.append(frame.assign(method=method, row_id=range(len(scores))))
    latent_scores = pd.concat(rows, ignore_index=True)
    metrics = latent_metrics_frame(latent_scores, pd.DataFrame(), 0).set_index(["method", "concept_id"])
    assert metrics.loc[("Prompt", 0), "n_parse_failures"] == 3
    assert metrics.loc[("Prompt", 1), "n_parse_failures"] == 1
    assert metrics.loc[("DiffMean", 0), "n_parse_failures"] == 0
    assert metrics["n_parse_failures"].dtype == "int64"
    assert np.isfinite(metrics.loc[("Prompt", 0), "roc_auc"])  # −1 is a low score, never NaN

    bad = latent_scores.assign(
        category=latent_scores["category"].replace("hard negative", "hard negative seen")
    )
    with pytest.raises(AxbenchDataError, match=r"'hard negative seen' \(3 rows\)"):
        latent_metrics_frame(bad, pd.DataFrame(), 0)
