"""Where each table-magnitude method's steering magnitudes came from, for the run card (protocol §3.7, [D 13]).

The long leaderboard carries, per method and setting, the ``label``, ``magnitude_source`` and ``magnitude_ref`` of
``steering_summary``. Methods whose magnitudes have a reference (the ``sae_table`` methods: SAE, SAE-A; a released dictionary steered with
its own ``acts.json``) get one run-card line per setting: the table used (file, SHA-256, rows) or the AxBench max-act
fallback and why.

Example:
    >>> magnitudes_section(magnitude_rows(long))  # doctest: +SKIP
    ['## Steering magnitudes', '', '- **SAE** (gemma2_2b_l10): magnitudes: Neuronpedia table data/... (sha256 ..., 16384 rows)', '']
"""

from __future__ import annotations

import pandas as pd

__all__ = ["MAGNITUDE_ROW_COLUMNS", "magnitude_rows", "magnitudes_section"]

MAGNITUDE_ROW_COLUMNS = ["setting", "method", "label", "magnitude_source", "magnitude_ref"]
_AVG = "Avg"


def magnitude_rows(long: pd.DataFrame | None) -> pd.DataFrame:
    """The per-setting rows of a long leaderboard that name where their magnitudes came from.

    Args:
        long: ``build_leaderboard`` output (older leaderboards without the magnitude columns give no rows).

    Returns:
        ``MAGNITUDE_ROW_COLUMNS``, one row per (setting, method) with a non-empty ``magnitude_ref``.
    """
    if long is None or long.empty or not set(MAGNITUDE_ROW_COLUMNS) <= set(long.columns):
        return pd.DataFrame(columns=MAGNITUDE_ROW_COLUMNS)
    refs = long["magnitude_ref"].fillna("").astype(str)
    frame = long[(long["setting"] != _AVG) & (refs != "")]
    return frame[MAGNITUDE_ROW_COLUMNS].sort_values(["method", "setting"]).reset_index(drop=True)


def magnitudes_section(rows: pd.DataFrame | None) -> list[str]:
    """Run-card lines: one per method and setting of ``rows`` (``[]`` when there are none).

    ``sae_table`` rows read "magnitudes: Neuronpedia table <file> (sha256 …, n rows)"; ``latent_eval`` rows of such a
    method read "magnitudes: AxBench max-act fallback (…) — <why there was no table>".
    """
    if rows is None or rows.empty:
        return []
    lines = ["## Steering magnitudes", ""]
    for rec in rows.to_dict("records"):
        name = rec["label"] if isinstance(rec["label"], str) and rec["label"] else rec["method"]
        source, ref = rec["magnitude_source"], rec["magnitude_ref"]
        if source == "sae_table":
            text = f"Neuronpedia table {ref}"
        elif source == "released_table":
            text = f"the dictionary's own max_act table, {ref} (protocol §3.16)"
        elif source == "latent_eval":
            text = (
                "AxBench max-act fallback (latent-eval rule: max over the concept's latent-eval rows, ≤ 0 → 50) — "
                f"{ref} [D 13]"
            )
        else:
            text = f"{source} — {ref}"
        lines.append(f"- **{name}** ({rec['setting']}): magnitudes: {text}")
    return [*lines, ""]
