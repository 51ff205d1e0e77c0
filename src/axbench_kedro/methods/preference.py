"""Preference pairs as cached layer-L states, with their reference log-likelihoods computed once (RePS family).

Each pair of ``preference_data`` gives two sequences sharing the prompt x = F-prompt(input): ``x + y_c`` (the
concept response, ``winning_output``) and ``x + y`` (the model's own response, ``losing_output``), truncated to 512
tokens (protocol §3.0). Their layer-L states are computed once (no gradient), so training only runs the blocks after
L and the LM head. The reference log-likelihoods (no intervention) do not change during training: they are computed
on first use and kept, shared by every method of the family trained on the same rows.

Example:
    >>> rows = compute_preference_rows(tm, pref, layer=9, prefix_length=p, batch_size=6)  # doctest: +SKIP
    >>> ref_concept, ref_model = rows.reference_logps(tail)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import LMObjectiveRows, compute_lm_rows
from axbench_kedro.methods.base import PreferenceData

__all__ = ["PREFERENCE_MAX_LENGTH", "PreferenceRows", "compute_preference_rows"]

PREFERENCE_MAX_LENGTH = 512
"""Token cap of a preference sequence (prompt + response), as upstream RePS."""


@dataclass
class PreferenceRows:
    """A concept's pairs: ``concept[i]`` = x_i + y_c,i and ``model[i]`` = x_i + y_i (same prompt).

    Attributes:
        concept: rows of the concept responses (winning in an ``add`` pair, losing in a ``sub`` pair).
        model: rows of the model's own responses.
        reference_calls: how many times the reference log-likelihoods were computed (1 after first use).
    """

    concept: LMObjectiveRows
    model: LMObjectiveRows
    reference_calls: int = 0
    _reference: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.concept)

    def lengths(self, which: str) -> torch.Tensor:
        """``[n]`` whole-sequence token counts (prompt + response) of ``concept`` or ``model`` rows [D 8]."""
        rows = self.concept if which == "concept" else self.model
        return torch.tensor([int(ids.shape[0]) for ids in rows.input_ids], dtype=torch.float32)

    def reference_logps(self, tail, batch_size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """``(ref_concept [n], ref_model [n])``: summed response log-likelihoods without intervention (cached).

        Args:
            tail: the :class:`~axbench_kedro.methods.lm_tail.LMTail` of the run.
            batch_size: rows per tail pass (only on the first call).
        """
        if self._reference is None:
            out = []
            with torch.no_grad():
                for rows in (self.concept, self.model):
                    parts = []
                    for start in range(0, len(rows), batch_size):
                        batch = rows.batch(range(start, min(start + batch_size, len(rows))))
                        parts.append(tail.sequence_logps(batch.hidden.float(), batch).float().cpu())
                    out.append(torch.cat(parts) if parts else torch.zeros(0))
            self._reference = (out[0], out[1])
            self.reference_calls += 1
        return self._reference


def compute_preference_rows(
    tm: TargetModel,
    pref: PreferenceData,
    layer: int,
    prefix_length: int,
    batch_size: int,
    targets: Sequence[Sequence[str]] | None = None,
    max_length: int = PREFERENCE_MAX_LENGTH,
) -> PreferenceRows:
    """Layer-L states of the concept and model sequences of ``pref`` (one truncated forward pass each).

    Args:
        targets: ``(winning, losing)`` texts appended after F-prompt (default: the raw outputs; the trainer passes
            them through :func:`~axbench_kedro.methods.trainer.lm_targets`).
    """
    prompts = [format_prompt(tm.tokenizer, x) for x in pref.inputs]
    winning, losing = targets if targets is not None else (pref.winning, pref.losing)
    concept = compute_lm_rows(tm, prompts, list(winning), layer, prefix_length, batch_size, max_length)
    model = compute_lm_rows(tm, prompts, list(losing), layer, prefix_length, batch_size, max_length)
    return PreferenceRows(concept, model)
