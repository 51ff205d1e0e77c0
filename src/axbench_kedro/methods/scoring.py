"""Detection scoring of many methods in one truncated forward pass (protocol §4 "Scoring").

Every ``activation`` method contributes its encoder rows to one stacked matrix ``[K, d]`` (K = Σ methods ×
concepts). Each F-detect row is run once to layer L; its own concept's columns give the per-token scores of every
method (max over positions ≥ P = ``max_act``), and rows of the shared imbalanced negative pool are additionally
scored against every concept's columns in the same pass.

Example:
    >>> bank = EncoderBank.from_artifacts(artifacts)
    >>> own, full = score_rows(tm, texts, concept_ids, bank, layer=9, batch_size=16, full_rows=[3, 7])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from axbench_kedro.lm.chat import chat_prefix_length
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.methods.activations import iter_states
from axbench_kedro.methods.base import MethodArtifact
from axbench_kedro.methods.registry import get_method

__all__ = ["EncoderBank", "RowScores", "score_rows"]


@dataclass
class EncoderBank:
    """Stacked detection encoders of several ``activation`` methods.

    Attributes:
        methods: method names, in column-block order.
        weight: ``[K, d]``; bias, threshold: ``[K]``; gated: ``[K]`` bool (ReLU/JumpReLU columns; ReLU = θ 0).
        offsets: first column of each method's block.
        concept_rows: per method, ``{concept_id: row within its block}``.
    """

    methods: list[str]
    weight: torch.Tensor
    bias: torch.Tensor
    threshold: torch.Tensor
    gated: torch.Tensor
    offsets: dict[str, int]
    concept_rows: dict[str, dict[int, int]] = field(default_factory=dict)

    @classmethod
    def from_artifacts(cls, artifacts: Mapping[str, MethodArtifact]) -> EncoderBank:
        """Stack every given artefact (all must belong to ``activation`` methods)."""
        weights, biases, thresholds, gated, offsets, rows = [], [], [], [], {}, {}
        k = 0
        for name, art in artifacts.items():
            enc = get_method(name).detection_encoder(art)
            n = enc.weight.shape[0]
            weights.append(enc.weight.float())
            biases.append(enc.bias.float())
            if enc.activation == "linear":
                thresholds.append(torch.zeros(n))
                gated.append(torch.zeros(n, dtype=torch.bool))
            else:
                thr = enc.threshold.float() if enc.activation == "jumprelu" else torch.zeros(n)
                thresholds.append(thr)
                gated.append(torch.ones(n, dtype=torch.bool))
            offsets[name] = k
            rows[name] = {c: i for i, c in enumerate(art.concept_ids)}
            k += n
        d = weights[0].shape[1] if weights else 0
        return cls(
            methods=list(artifacts),
            weight=torch.cat(weights) if weights else torch.zeros(0, d),
            bias=torch.cat(biases) if biases else torch.zeros(0),
            threshold=torch.cat(thresholds) if thresholds else torch.zeros(0),
            gated=torch.cat(gated) if gated else torch.zeros(0, dtype=torch.bool),
            offsets=offsets,
            concept_rows=rows,
        )

    def columns_for(self, concept_ids: Sequence[int]) -> torch.Tensor:
        """``[len(concept_ids), n_methods]`` column index of each row's concept in every method block."""
        cols = torch.empty(len(concept_ids), len(self.methods), dtype=torch.long)
        for j, name in enumerate(self.methods):
            rows = self.concept_rows[name]
            try:
                cols[:, j] = torch.tensor([self.offsets[name] + rows[int(c)] for c in concept_ids])
            except KeyError as exc:
                from axbench_kedro.errors import AxbenchDataError

                raise AxbenchDataError(
                    f"method_artifacts[{name}] has no row for concept_id {exc.args[0]}"
                ) from None
        return cols

    def to(self, device: torch.device) -> EncoderBank:
        """A copy on ``device``."""
        return EncoderBank(
            self.methods,
            self.weight.to(device),
            self.bias.to(device),
            self.threshold.to(device),
            self.gated.to(device),
            self.offsets,
            self.concept_rows,
        )


def _activate(pre: torch.Tensor, gated: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(gated, (pre > threshold).to(pre.dtype) * torch.relu(pre), pre)


@dataclass
class RowScores:
    """Per-row results of :func:`score_rows`.

    Attributes:
        max_act: ``[n_rows, n_methods]`` max score over positions ≥ P (unrounded).
        max_idx: ``[n_rows, n_methods]`` first position of the max, counted from P.
        max_token: per row and method, the token string at the max.
        acts: optional per row, ``[n_positions, n_methods]`` scores at positions ≥ P.
        tokens: optional per row, the tokens at positions ≥ P.
        full: ``{row: [K]}`` max scores of the pool rows against every column.
    """

    max_act: np.ndarray
    max_idx: np.ndarray
    max_token: list[list[str]]
    acts: list[np.ndarray] | None
    tokens: list[list[str]] | None
    full: dict[int, np.ndarray]


def score_rows(
    tm: TargetModel,
    texts: Sequence[str],
    concept_ids: Sequence[int],
    bank: EncoderBank,
    layer: int,
    batch_size: int,
    *,
    full_rows: Sequence[int] = (),
    keep_token_acts: bool = False,
    max_length: int = 1024,
    desc: str = "latent scoring",
) -> RowScores:
    """Score ``texts`` (F-detect strings) with every method of ``bank`` in one truncated forward pass.

    Args:
        concept_ids: the concept of each row (selects its columns).
        full_rows: rows also scored against every concept (the imbalanced negative pool).
        keep_token_acts: also return per-token scores and token strings.
    """
    n, m = len(texts), len(bank.methods)
    prefix = chat_prefix_length(tm.tokenizer)
    device = tm.device
    dev_bank = bank.to(device)
    cols = bank.columns_for(concept_ids).to(device)
    full_set = set(int(r) for r in full_rows)
    max_act = np.zeros((n, m))
    max_idx = np.zeros((n, m), dtype=np.int64)
    max_token: list[list[str]] = [[] for _ in range(n)]
    acts: list[np.ndarray] | None = [np.zeros((0, m))] * n if keep_token_acts else None
    tokens: list[list[str]] | None = [[] for _ in range(n)] if keep_token_acts else None
    full: dict[int, np.ndarray] = {}
    enc_ids = tm.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)[
        "input_ids"
    ]
    with tqdm(total=n, desc=desc, unit="row", disable=n == 0) as bar:
        for rows, hidden, mask in iter_states(tm, texts, layer, batch_size, max_length):
            h = hidden.float()
            t = h.shape[1]
            positions = torch.arange(t, device=device)[None, :]
            valid = mask.bool() & (positions >= prefix)  # [B, T]
            c = cols[rows]  # [B, M]
            pre = torch.einsum("btd,bmd->btm", h, dev_bank.weight[c]) + dev_bank.bias[c][:, None, :]
            scores = _activate(pre, dev_bank.gated[c][:, None, :], dev_bank.threshold[c][:, None, :])
            masked = scores.masked_fill(~valid[..., None], float("-inf"))
            best, idx = masked.max(dim=1)  # first maximum
            best_np, idx_np = best.cpu().numpy(), idx.cpu().numpy()
            for b, r in enumerate(rows):
                ids = enc_ids[r]
                max_act[r] = best_np[b]
                max_idx[r] = idx_np[b] - prefix
                max_token[r] = tm.tokenizer.convert_ids_to_tokens([ids[int(i)] for i in idx_np[b]])
                if acts is not None and tokens is not None:
                    length = len(ids)
                    acts[r] = scores[b, prefix:length].detach().cpu().numpy()
                    tokens[r] = tm.tokenizer.convert_ids_to_tokens(ids[prefix:length])
            pool = [b for b, r in enumerate(rows) if r in full_set]
            if pool:
                hp = h[pool]
                pre_full = hp @ dev_bank.weight.T + dev_bank.bias
                s_full = _activate(pre_full, dev_bank.gated, dev_bank.threshold)
                s_full = s_full.masked_fill(~valid[pool][..., None], float("-inf"))
                best_full = s_full.max(dim=1).values.cpu().numpy()
                for j, b in enumerate(pool):
                    full[rows[b]] = best_full[j]
            bar.update(len(rows))
    return RowScores(max_act, max_idx, max_token, acts, tokens, full)
