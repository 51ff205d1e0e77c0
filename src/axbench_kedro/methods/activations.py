"""Shared layer-L activations for training: one truncated forward pass per row set, reused by every method.

* :class:`RowActivations` — packed per-token states of F-binary rows (every non-pad position, BOS included) and
  their token ids: what the no-gradient methods (DiffMean, PCA, LAT, SAE-A, positions ≥ P) and the probe
  (positions ≥ 1) train on.
* :class:`ConceptActivations` — a concept's positives followed by its genre's pool negatives, with row labels.
* :class:`LMObjectiveRows` — layer-L states of ``F-prompt(input) + output`` rows (no gradient), so that the
  LM-objective methods (SSV, ReFT-r1) only run the blocks after L and the LM head at every step. Because the model
  is causal and an F-binary string starts with ``F-prompt + output``, these states are sliced out of the F-binary
  pass whenever the token ids agree (:func:`lm_rows_from_activations`); only disagreeing rows run again.

Example:
    >>> acts = compute_row_activations(tm, texts, layer=9, batch_size=6)
    >>> acts.tokens.shape  # [n_tokens, d]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.types import TargetModel

__all__ = [
    "RowActivations",
    "ConceptActivations",
    "LMObjectiveRows",
    "LMBatch",
    "iter_states",
    "compute_row_activations",
    "compute_lm_rows",
    "lm_rows_from_activations",
]


@dataclass
class RowActivations:
    """Per-token layer-L states of ``n_rows`` rows, packed row after row (rows are contiguous).

    Attributes:
        tokens: ``[n_tokens, d]`` states of positions 0 … len−1 of each row (pads dropped).
        row: ``[n_tokens]`` row index of each token.
        pos: ``[n_tokens]`` position of each token in its row (0 = BOS).
        n_rows: number of rows.
        input_ids: per row, its token ids (``len`` of each = its number of tokens).
    """

    tokens: torch.Tensor
    row: torch.Tensor
    pos: torch.Tensor
    n_rows: int
    input_ids: list[list[int]] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: Sequence[RowActivations]) -> RowActivations:
        """Rows of ``parts`` one after the other (row indices shifted)."""
        offset, rows = 0, []
        for p in parts:
            rows.append(p.row + offset)
            offset += p.n_rows
        return cls(
            tokens=torch.cat([p.tokens for p in parts]),
            row=torch.cat(rows),
            pos=torch.cat([p.pos for p in parts]),
            n_rows=offset,
            input_ids=[ids for p in parts for ids in p.input_ids],
        )

    def slice_rows(self, r0: int, r1: int) -> RowActivations:
        """Rows ``r0 … r1−1`` as their own set (row indices from 0)."""
        sel = (self.row >= r0) & (self.row < r1)
        return RowActivations(
            self.tokens[sel], self.row[sel] - r0, self.pos[sel], r1 - r0, self.input_ids[r0:r1]
        )

    def row_states(self, r: int) -> torch.Tensor:
        """``[len_r, d]`` states of row ``r`` in position order."""
        return self.tokens[self.row == r]


@dataclass
class ConceptActivations:
    """A concept's training activations: positives (label 1) then pool negatives (label 0).

    Attributes:
        acts: packed tokens of every row.
        labels: ``[n_rows]`` 0/1 row labels.
        prefix_length: P; statistics and detection use positions ≥ P only.
    """

    acts: RowActivations
    labels: torch.Tensor
    prefix_length: int

    @classmethod
    def from_parts(
        cls, positives: RowActivations, negatives: RowActivations, prefix_length: int
    ) -> ConceptActivations:
        """Positives then negatives."""
        labels = torch.cat([torch.ones(positives.n_rows), torch.zeros(negatives.n_rows)]).long()
        return cls(RowActivations.concat([positives, negatives]), labels, prefix_length)

    @property
    def token_labels(self) -> torch.Tensor:
        """Label of each packed token (its row's label)."""
        return self.labels.to(self.acts.row.device)[self.acts.row]

    @property
    def scored(self) -> torch.Tensor:
        """Mask of the tokens at positions ≥ P (the detection positions)."""
        return self.acts.pos >= self.prefix_length

    def tokens_where(self, label: int, scored_only: bool = True) -> torch.Tensor:
        """Tokens of rows with ``label`` (positions ≥ P when ``scored_only``, else positions ≥ 1)."""
        mask = self.token_labels == label
        mask &= self.scored if scored_only else self.acts.pos >= 1
        return self.acts.tokens[mask]


def _token_ids(tm: TargetModel, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tm.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
    return [list(x) for x in enc["input_ids"]]


def iter_states(
    tm: TargetModel, texts: Sequence[str], layer: int, batch_size: int, max_length: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Truncated forward passes over ``texts`` grouped by length (no progress bar: callers show their own).

    Yields ``(row_indices, hidden [B, T, d], attention_mask [B, T])`` (right padding, no gradient).
    """
    lengths = [len(ids) for ids in _token_ids(tm, texts, max_length)]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        enc = encode(tm, [texts[i] for i in rows], "right", max_length)
        with torch.no_grad():
            hidden = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], layer)
        yield rows, hidden, enc["attention_mask"]


def compute_row_activations(
    tm: TargetModel, texts: Sequence[str], layer: int, batch_size: int, max_length: int = 1024
) -> RowActivations:
    """One truncated forward pass over ``texts`` (formatted strings); keeps every non-pad position."""
    per_row: list[torch.Tensor] = [torch.zeros(0, tm.d_model, dtype=tm.dtype, device=tm.device)] * len(texts)
    for rows, hidden, mask in iter_states(tm, texts, layer, batch_size, max_length):
        lengths = mask.sum(dim=1).tolist()
        for b, i in enumerate(rows):
            per_row[i] = hidden[b, : int(lengths[b])].detach()
    counts = [t.shape[0] for t in per_row]
    if not texts:
        empty = torch.zeros(0, dtype=torch.long, device=tm.device)
        return RowActivations(
            torch.zeros(0, tm.d_model, dtype=tm.dtype, device=tm.device), empty, empty, 0, []
        )
    tokens = torch.cat(per_row)
    row = torch.repeat_interleave(torch.arange(len(texts)), torch.tensor(counts)).to(tokens.device)
    pos = torch.cat([torch.arange(c) for c in counts]).to(tokens.device)
    return RowActivations(tokens, row, pos, len(texts), _token_ids(tm, texts, max_length))


@dataclass
class LMBatch:
    """A right-padded batch for LM-objective training.

    Attributes:
        hidden: ``[B, T, d]`` cached layer-L states.
        input_ids: ``[B, T]``.
        attention_mask: ``[B, T]``.
        intervene: ``[B, T]`` bool: positions ``[P, len)`` ("all").
        target: ``[B, T]`` bool: positions whose **next** token is a response token (logits kept there).
    """

    hidden: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    intervene: torch.Tensor
    target: torch.Tensor


@dataclass
class LMObjectiveRows:
    """Cached layer-L states of ``F-prompt(input) + output`` rows.

    Attributes:
        hidden: per-row ``[len_i, d]`` states (no gradient).
        input_ids: per-row ``[len_i]`` token ids.
        prompt_lengths: tokens of F-prompt per row (the response starts there).
        prefix_length: P (interventions act on positions ≥ P).
    """

    hidden: list[torch.Tensor]
    input_ids: list[torch.Tensor]
    prompt_lengths: list[int]
    prefix_length: int

    def __len__(self) -> int:
        return len(self.hidden)

    def subset(self, rows: Sequence[int]) -> LMObjectiveRows:
        """The rows at the given indices."""
        return LMObjectiveRows(
            [self.hidden[i] for i in rows],
            [self.input_ids[i] for i in rows],
            [self.prompt_lengths[i] for i in rows],
            self.prefix_length,
        )

    @staticmethod
    def concat(parts: Sequence[LMObjectiveRows]) -> LMObjectiveRows:
        """Rows of ``parts`` one after the other."""
        return LMObjectiveRows(
            [h for p in parts for h in p.hidden],
            [x for p in parts for x in p.input_ids],
            [n for p in parts for n in p.prompt_lengths],
            parts[0].prefix_length,
        )

    def batch(self, rows: Sequence[int]) -> LMBatch:
        """Collate ``rows`` (right padding)."""
        lengths = [int(self.input_ids[i].shape[0]) for i in rows]
        ref = self.hidden[rows[0]]
        t_max, d = max(lengths), ref.shape[-1]
        hidden = torch.zeros(len(rows), t_max, d, dtype=ref.dtype, device=ref.device)
        ids = torch.zeros(len(rows), t_max, dtype=torch.long, device=ref.device)
        mask = torch.zeros(len(rows), t_max, dtype=torch.long, device=ref.device)
        target = torch.zeros(len(rows), t_max, dtype=torch.bool, device=ref.device)
        for b, (i, n) in enumerate(zip(rows, lengths, strict=True)):
            hidden[b, :n] = self.hidden[i]
            ids[b, :n] = self.input_ids[i]
            mask[b, :n] = 1
            target[b, max(self.prompt_lengths[i] - 1, 0) : n - 1] = True  # logits at t predict token t+1
        positions = torch.arange(t_max, device=ref.device).unsqueeze(0)
        intervene = (positions >= self.prefix_length) & mask.bool()
        return LMBatch(hidden, ids, mask, intervene, target)


def _lm_texts(prompts: Sequence[str], outputs: Sequence[str]) -> list[str]:
    return [p + o for p, o in zip(prompts, outputs, strict=True)]


def compute_lm_rows(
    tm: TargetModel,
    prompts: Sequence[str],
    outputs: Sequence[str],
    layer: int,
    prefix_length: int,
    batch_size: int,
    max_length: int = 1024,
    reuse: RowActivations | None = None,
) -> LMObjectiveRows:
    """Layer-L states of ``prompt + output`` (prompts already F-prompt formatted; outputs appended as is).

    Args:
        reuse: activations of strings that extend these ones row by row (F-binary of the same pairs): rows whose
            token ids are a prefix of the reused row's ids are sliced out of it instead of run again.
    """
    full = _lm_texts(prompts, outputs)
    ids = _token_ids(tm, full, max_length)
    prompt_lengths = [len(x) for x in _token_ids(tm, prompts, max_length)]
    hidden: list[torch.Tensor | None] = [None] * len(full)
    if reuse is not None:
        for i, row_ids in enumerate(ids):
            other = reuse.input_ids[i] if i < len(reuse.input_ids) else []
            if len(row_ids) <= len(other) and other[: len(row_ids)] == row_ids:
                hidden[i] = reuse.row_states(i)[: len(row_ids)]
    missing = [i for i, h in enumerate(hidden) if h is None]
    if missing:
        sub = [full[i] for i in missing]
        for rows, h, mask in iter_states(tm, sub, layer, batch_size, max_length):
            lengths = mask.sum(dim=1).tolist()
            for b, j in enumerate(rows):
                hidden[missing[j]] = h[b, : int(lengths[b])].detach()
    return LMObjectiveRows(
        hidden=[h for h in hidden if h is not None],
        input_ids=[torch.tensor(x, dtype=torch.long, device=tm.device) for x in ids],
        prompt_lengths=[min(p, len(x)) for p, x in zip(prompt_lengths, ids, strict=True)],
        prefix_length=prefix_length,
    )


def lm_rows_from_activations(
    tm: TargetModel,
    prompts: Sequence[str],
    outputs: Sequence[str],
    acts: RowActivations,
    layer: int,
    prefix_length: int,
    batch_size: int,
    max_length: int = 1024,
) -> LMObjectiveRows:
    """:func:`compute_lm_rows` reusing ``acts`` (the F-binary pass of the same rows) wherever possible."""
    return compute_lm_rows(tm, prompts, outputs, layer, prefix_length, batch_size, max_length, reuse=acts)
