"""Bag-of-words detection baseline (protocol §3.10): word counts → L2 logistic regression (detection only).

Per concept, scikit-learn ``CountVectorizer()`` (defaults) is fitted on the concept's F-binary strings and an L2
``LogisticRegression(C=100, lbfgs, 1000 iterations)`` on the counts; score = P(positive) of the F-detect string.
The artifact keeps one row of word weights per concept over the union vocabulary (words a concept never saw get
weight 0, so scores equal the per-concept model's ``predict_proba``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.base import ConceptData, ConceptInputs, Method, MethodArtifact
from axbench_kedro.methods.registry import register

__all__ = ["BoWParams", "BoW"]


class BoWParams(StrictModel):
    """Attributes:
    C: inverse L2 regularisation strength.
    max_iter: lbfgs iterations.
    """

    C: float = Field(100.0, gt=0)
    max_iter: int = Field(1000, ge=1)


@register("BoW")
class BoW(Method):
    """Logistic regression on word counts of the formatted strings."""

    Params = BoWParams
    order = 90
    requires = frozenset({"texts"})
    detection_kind = "text"
    steers = False
    magnitude_source = "unit"

    def train_concept(self, inputs: ConceptInputs, hp: BoWParams) -> dict[str, Any]:
        data, texts = inputs.data, inputs.binary_texts
        assert texts is not None
        vec = CountVectorizer()
        x = vec.fit_transform(texts)
        clf = LogisticRegression(C=hp.C, solver="lbfgs", max_iter=hp.max_iter, random_state=inputs.seed)
        clf.fit(x, data.labels)
        vocab = vec.get_feature_names_out()
        order = np.argsort(vocab)
        return {
            "vocabulary": [str(v) for v in vocab[order]],
            "coef": torch.from_numpy(clf.coef_[0][order].astype(np.float32)),
            "bias": torch.tensor(float(clf.intercept_[0]), dtype=torch.float32),
        }

    def stack(
        self, rows: Sequence[dict[str, Any]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        union = sorted({w for r in rows for w in r["vocabulary"]})
        col = {w: i for i, w in enumerate(union)}
        weight = torch.zeros(len(rows), len(union))
        for i, r in enumerate(rows):
            idx = torch.tensor([col[w] for w in r["vocabulary"]], dtype=torch.long)
            weight[i, idx] = r["coef"]
        bias = torch.stack([r["bias"] for r in rows])
        return {"weight": weight, "bias": bias}, {"vocabulary": union}

    def score_texts(
        self, artifact: MethodArtifact, texts: Sequence[str], concept_rows: torch.Tensor | None = None
    ) -> np.ndarray:
        vec = CountVectorizer(vocabulary=artifact.meta["vocabulary"])
        x = vec.transform(list(texts)).astype(np.float64)
        w = artifact.tensors["weight"].double().numpy()
        b = artifact.tensors["bias"].double().numpy()
        if concept_rows is None:
            logits = np.asarray(x @ w.T) + b
        else:
            rows = concept_rows.numpy()
            logits = np.empty(len(rows))
            for r in np.unique(rows):
                sel = np.flatnonzero(rows == r)
                logits[sel] = np.asarray(x[sel] @ w[r]).ravel() + b[r]
        return 1.0 / (1.0 + np.exp(-logits))
