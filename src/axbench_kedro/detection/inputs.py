"""Checks of ``latent_eval_data`` and the choice of the method artefacts that get scored."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import pandas as pd

from axbench_kedro.datagen.schemas import unknown_categories
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method
from axbench_kedro.metrics.detection import HARD_NEGATIVE, NEGATIVE, POSITIVE

__all__ = ["LATENT_COLUMNS", "check_latent_data", "detection_artifacts"]

log = logging.getLogger(__name__)

LATENT_COLUMNS = ("input", "output", "output_concept", "concept_genre", "category", "concept_id")


def check_latent_data(frame: pd.DataFrame) -> pd.DataFrame:
    """``latent_eval_data`` with a fresh 0..n-1 index (the ``row_id`` of every score).

    Raises:
        AxbenchDataError: a missing column or an unknown ``category`` value.
    """
    missing = [c for c in LATENT_COLUMNS if c not in frame.columns]
    if missing:
        raise AxbenchDataError(f"latent_eval_data: missing column(s) {missing}")
    problem = unknown_categories(frame["category"], (POSITIVE, NEGATIVE, HARD_NEGATIVE))
    if problem:
        raise AxbenchDataError(f"latent_eval_data: column 'category': {problem} [D 30]")
    return frame.reset_index(drop=True)


def detection_artifacts(
    method_artifacts: Mapping[str, MethodArtifact],
    exclude: Collection[str],
    log_skipped: bool = False,
    kinds: Collection[str] | None = None,
) -> dict[str, MethodArtifact]:
    """The trained, detecting, not-excluded artefacts, in ``method_artifacts`` order.

    Args:
        method_artifacts: ``{method: artifact}`` from training.
        exclude: method names not to score.
        log_skipped: log the artefacts training skipped.
        kinds: keep only methods of these ``detection_kind`` values (all when ``None``).
    """
    out = {}
    for name, art in method_artifacts.items():
        method = get_method(name)
        if not method.detects or name in exclude:
            continue
        if not art.ok:
            if log_skipped:
                log.warning("latent_eval: %s not scored (training skipped it: %s)", name, art.skip_reason)
            continue
        out[name] = art
    if kinds is not None:
        out = {n: a for n, a in out.items() if get_method(n).detection_kind in kinds}
    return out
