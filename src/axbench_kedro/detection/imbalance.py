"""The shared negative pool of the 1:100 detection set (protocol §1.8, §4.5, [D 21])."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from axbench_kedro.metrics.detection import NEGATIVE, POSITIVE

__all__ = ["IMBALANCE_COLUMNS", "sample_negative_pool"]

log = logging.getLogger(__name__)

IMBALANCE_COLUMNS = [
    "neg_row_id",
    "source_row_id",
    "input",
    "output",
    "output_concept",
    "concept_genre",
    "category",
]


def sample_negative_pool(data: pd.DataFrame, seed: int, imbalance_factor: int) -> pd.DataFrame:
    """``n_pos × imbalance_factor`` rows of category ``negative`` from all concepts, drawn with ``seed``.

    ``n_pos`` is the largest number of positives of a concept; with fewer negatives available, all of them are
    used (the achieved ratio is reported in ``latent_metrics``).

    Args:
        data: checked ``latent_eval_data`` (see :func:`~axbench_kedro.detection.inputs.check_latent_data`).
        seed: the run seed.
        imbalance_factor: negatives per positive.

    Returns:
        ``IMBALANCE_COLUMNS`` rows; ``source_row_id`` points into ``data``.
    """
    negatives = np.flatnonzero((data["category"] == NEGATIVE).to_numpy())
    per_concept = data[data["category"] == POSITIVE].groupby("concept_id").size()
    n_pos = int(per_concept.max()) if len(per_concept) else 0
    wanted = n_pos * imbalance_factor
    rng = np.random.default_rng(seed)
    if len(negatives) > wanted:
        chosen = np.sort(rng.choice(negatives, size=wanted, replace=False))
    else:
        chosen = negatives
        if len(negatives) < wanted:
            log.warning(
                "latent_eval: only %d negatives for the 1:%d set (wanted %d = %d positives × %d); using all",
                len(negatives), imbalance_factor, wanted, n_pos, imbalance_factor,
            )  # fmt: skip
    rows = data.iloc[chosen]
    out = pd.DataFrame(
        {
            "neg_row_id": np.arange(len(rows), dtype=np.int64),
            "source_row_id": chosen.astype(np.int64),
            "input": rows["input"].to_numpy(),
            "output": rows["output"].to_numpy(),
            "output_concept": "EEEEE",
            "concept_genre": rows["concept_genre"].to_numpy(),
            "category": NEGATIVE,
        }
    )
    return out[IMBALANCE_COLUMNS]
