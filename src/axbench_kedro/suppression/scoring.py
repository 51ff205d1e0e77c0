"""Suppression scores (protocol §6 [D 24]): HM(2 − concept, instruction, fluency) per generation with the zero veto;
for rule concepts the rule judge replaces J1: HM(instruction, fluency, 2 − rule). Selection on the selection split
(ids 0–4), Score on the test split (5–9), exactly as steering (§5.6) — the steering metrics are reused.

Example:
    >>> gen = suppression_generation_scores(judgements)  # doctest: +SKIP
    >>> scores, selection = suppression_selection(gen, n_selection=5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.metrics.steering import GENERATION_KEYS, generation_scores, select_factors, steering_scores

__all__ = ["CONCEPT_CRITERIA", "RULE_CRITERIA", "suppression_generation_scores", "suppression_selection"]

CONCEPT_CRITERIA: tuple[str, ...] = ("concept", "instruction", "fluency")
"""Criteria of an ordinary concept; ``concept`` enters the HM as 2 − rating."""
RULE_CRITERIA: tuple[str, ...] = ("instruction", "fluency", "rule")
"""Criteria of a rule concept; ``rule`` enters the HM as 2 − rating."""


def suppression_generation_scores(
    judgements: pd.DataFrame, generations: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per generation: its ratings and the suppression HM.

    A generation with a ``rule`` rating is scored on :data:`RULE_CRITERIA`, every other one on
    :data:`CONCEPT_CRITERIA`. The ``concept`` column holds the concept criterion of either kind (the rule rating
    for rule concepts, so per-factor means and the report read one column) and ``concept_criterion`` says which
    (``concept`` or ``rule``); ratings are stored as judged, the inversion happens inside the HM only.

    Args:
        judgements: long frame (protocol §1.12).
        generations: optional ``steering_generations`` (perplexity columns are carried).

    Returns:
        :func:`~axbench_kedro.metrics.steering.generation_scores` columns + ``concept_criterion``.
    """
    if "criterion" not in judgements.columns:
        raise AxbenchDataError("judgements: missing column 'criterion'")
    missing = [c for c in GENERATION_KEYS if c not in judgements.columns]
    if missing:
        raise AxbenchDataError(f"judgements: missing column(s) {missing}")
    keys = pd.util.hash_pandas_object(judgements[GENERATION_KEYS], index=False)  # NaN factors hash alike
    rule_keys = set(keys[judgements["criterion"] == "rule"])
    is_rule = keys.isin(rule_keys).to_numpy()
    parts = []
    if (~is_rule).any():
        plain = generation_scores(
            judgements[~is_rule], generations, criteria=CONCEPT_CRITERIA, inverted=("concept",)
        )
        parts.append(plain.assign(concept_criterion="concept"))
    if is_rule.any():
        ruled = generation_scores(
            judgements[is_rule], generations, criteria=RULE_CRITERIA, inverted=("rule",)
        )
        ruled = ruled.rename(columns={"rule": "concept"}).assign(concept_criterion="rule")
        parts.append(ruled)
    if not parts:
        raise AxbenchDataError("judgements: no rows")
    out = pd.concat(parts, ignore_index=True)
    first = [*GENERATION_KEYS, *CONCEPT_CRITERIA, "hm", "concept_criterion"]
    out = out[[*first, *[c for c in out.columns if c not in first]]]
    return out.sort_values(GENERATION_KEYS, kind="stable").reset_index(drop=True)


def suppression_selection(
    gen_scores: pd.DataFrame, *, n_selection: int, factor_free_methods: Iterable[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-factor means and the held-out selection of the suppression factor [D 24].

    Factors are negative, so the first maximum in ascending order (the tie rule of §5.6) is the strongest
    suppression.

    Args:
        gen_scores: output of :func:`suppression_generation_scores`.
        n_selection: ``input_id < n_selection`` select (ids 0–4), the rest report (5–9).
        factor_free_methods: methods without a strength knob (e.g. the prompt defence).

    Returns:
        ``(steering_scores, steering_selection)`` frames (protocol §1.13, §1.14).
    """
    scores = steering_scores(
        gen_scores.drop(columns=["concept_criterion"], errors="ignore"), n_selection=n_selection
    )
    selection = select_factors(scores, factor_free_methods=factor_free_methods)
    if not np.isfinite(selection["test_hm"].to_numpy(dtype=np.float64)).all():
        raise AxbenchDataError(
            "suppression scores: a concept has no test-split generations at its selected factor"
        )
    return scores, selection
