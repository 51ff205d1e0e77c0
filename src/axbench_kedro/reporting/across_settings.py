"""This setting's results stacked with the other settings' (each frame gains a ``setting`` column).

The other settings come from the ``results_across_settings`` catalog dataset (``{name: frame}`` plus ``sources``);
``keep`` patterns (``fnmatch``, e.g. ``gemma2_*``) choose which of them join. The current setting always comes from
its own catalog inputs, never from the other settings' copy.

Example:
    >>> selection, summary, metrics, sources = stack_settings(sel, summ, lat, others, "gemma2_2b_l10", None)
    ... # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

import pandas as pd

from axbench_kedro.datasets.results_across_settings import SOURCES_KEY

__all__ = ["setting_wanted", "stack_setting", "stack_settings"]


def setting_wanted(setting: str, patterns: Sequence[str] | None) -> bool:
    """Whether ``setting`` matches one of ``patterns`` (``None`` = every setting)."""
    return patterns is None or any(fnmatch.fnmatchcase(setting, p) for p in patterns)


def stack_setting(
    current: pd.DataFrame, others: pd.DataFrame | None, setting: str, keep: Sequence[str] | None
) -> pd.DataFrame:
    """``current`` (as ``setting``) followed by the rows of the wanted other settings of ``others``.

    Args:
        current: this setting's frame (without a ``setting`` column).
        others: the other settings' frame (with a ``setting`` column), or ``None``.
        setting: the current setting's name (its rows in ``others`` are dropped).
        keep: patterns of the other settings that join (``None`` = all).
    """
    parts = [current.assign(setting=setting)]
    if others is not None and not others.empty:
        names = others["setting"].astype(str)
        wanted = names.map(lambda s: s != setting and setting_wanted(s, keep))
        parts.append(others[wanted.to_numpy(dtype=bool)])
    return pd.concat(parts, ignore_index=True)


def stack_settings(
    steering_selection: pd.DataFrame,
    steering_summary: pd.DataFrame,
    latent_metrics: pd.DataFrame,
    results_across_settings: Mapping[str, pd.DataFrame] | None,
    setting: str,
    keep: Sequence[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three result frames across settings, and the other settings' files used.

    Args:
        steering_selection: this setting's ``steering_selection``.
        steering_summary: this setting's ``steering_summary``.
        latent_metrics: this setting's ``latent_metrics``.
        results_across_settings: ``{name: frame}`` of the other settings plus ``sources`` (empty or ``None``).
        setting: the current setting's name.
        keep: patterns of the other settings that join (``None`` = all).

    Returns:
        ``(selection, summary, latent_metrics, sources)``; ``sources`` lists the other settings' files used.
    """
    others = results_across_settings or {}
    sources = others.get(SOURCES_KEY, pd.DataFrame(columns=["setting", "dataset", "version", "filepath"]))
    if not sources.empty:
        used = [str(s) != setting and setting_wanted(str(s), keep) for s in sources["setting"]]
        sources = sources[used].reset_index(drop=True)
    return (
        stack_setting(steering_selection, others.get("steering_selection"), setting, keep),
        stack_setting(steering_summary, others.get("steering_summary"), setting, keep),
        stack_setting(latent_metrics, others.get("latent_metrics"), setting, keep),
        sources,
    )
