"""Integrated Gradients and Input×Gradients (protocol §3.11): attribution scores of a classifier on the frozen LM.

Training (both methods, per concept): the final-norm output of the **whole** frozen model at the last non-pad token
of each F-binary row feeds a head Dropout → Linear(d, d/2) → ReLU → Dropout → Linear(d/2, 2), trained with
cross-entropy and AdamW (linear decay, no warm-up, gradient accumulation). The model is frozen and dropout sits in
the head only, so the last-token states are computed once per row (layer-L activations + the blocks after L).

Detection (``detection_kind = "gradient"``), per F-detect row with p = P(positive) of the concept's head:

* IG: baseline b = mean input embedding of ``baseline_tokens`` seeded random vocabulary ids (every position);
  X_k = b + α_k (h − b), α_k = k/S (k = 0 … S−1) replaces the layer-L output; ḡ = mean over k of ∂p/∂X_k;
  score_t = Σ_d |(h_t − b) ⊙ ḡ_t|.
* IxG: score_t = Σ_d |h_t ⊙ ∂p/∂h_t|.

Score of the row = max over positions ≥ P. No steering. Each method trains its own head (per-method seeds).

Example:
    >>> attr = integrated_gradients(lambda x: (x * w).sum((1, 2))[:, None], x, b, steps=50)  # doctest: +SKIP
    >>> attr.sum()  # ≈ f(x) − f(b) (completeness)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from axbench_kedro.config.common import StrictModel
from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.chat import chat_prefix_length
from axbench_kedro.methods.activations import RowActivations
from axbench_kedro.methods.base import ConceptInputs, Method, MethodArtifact
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator
from axbench_kedro.methods.registry import register

__all__ = [
    "ClassifierParams",
    "IGParams",
    "integrated_gradients",
    "input_x_gradient",
    "last_token_states",
    "head_probability",
    "IntegratedGradients",
    "InputXGradients",
]

HEAD_KEYS = ("W1", "b1", "W2", "b2")


class ClassifierParams(StrictModel):
    """Attributes:
    lr: AdamW learning rate (2B 4e-4, 9B 8e-5).
    weight_decay: AdamW weight decay.
    batch_size: rows per micro-batch.
    gradient_accumulation: micro-batches per optimizer step (2B 2, 9B 8).
    epochs: passes over the concept's rows (2B 24, 9B 72).
    dropout: dropout probability of both head dropouts.
    state_batch_size: rows per forward pass of the blocks after L when computing the last-token states.
    """

    lr: float = Field(4e-4, gt=0)
    weight_decay: float = Field(2e-4, ge=0)
    batch_size: int = Field(18, ge=1)
    gradient_accumulation: int = Field(2, ge=1)
    epochs: int = Field(24, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    state_batch_size: int = Field(6, ge=1)


class IGParams(ClassifierParams):
    """Attributes:
    steps: interpolation steps S (α = k/S, k = 0 … S−1).
    baseline_tokens: random vocabulary ids averaged into the baseline embedding.
    baseline_seed: seed of those ids.
    step_chunk: interpolation steps per forward pass (memory bound only).
    """

    steps: int = Field(50, ge=1)
    baseline_tokens: int = Field(1000, ge=1)
    baseline_seed: int = 42
    step_chunk: int = Field(50, ge=1)


# ---- pure attribution maths -------------------------------------------------------------------------------


def _grads(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[R, *x.shape]``: gradient of ``out[:, r].sum()`` w.r.t. ``x`` for every column r of ``out [S, R]``."""
    n = out.shape[1]
    return torch.stack([torch.autograd.grad(out[:, r].sum(), x, retain_graph=r < n - 1)[0] for r in range(n)])


def integrated_gradients(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baseline: torch.Tensor,
    steps: int,
    chunk: int | None = None,
) -> torch.Tensor:
    """Signed IG attributions ``[R, T, d]`` of the ``R`` outputs of ``fn`` at ``x [T, d]``.

    Args:
        fn: maps states ``[S, T, d]`` to outputs ``[S, R]`` (row s depends on states s only).
        x: the input ``[T, d]``.
        baseline: ``[T, d]`` or ``[d]`` (the same vector at every position).
        steps: S; α_k = k/S for k = 0 … S−1 (left Riemann sum, as upstream).
        chunk: steps per call of ``fn`` (all at once when ``None``).

    Returns:
        ``(x − b) ⊙ mean_k ∂fn/∂X_k`` per output; summed it approaches ``fn(x) − fn(b)`` (exact for linear ``fn``).
    """
    x = x.detach()
    delta = x - baseline.to(x.dtype).expand_as(x)
    alphas = torch.arange(steps, device=x.device, dtype=torch.float32) / steps
    total: torch.Tensor | None = None
    step = chunk or steps
    for start in range(0, steps, step):
        a = alphas[start : start + step].to(x.dtype)[:, None, None]
        xs = (x - delta + a * delta).requires_grad_(True)  # b + α (x − b)
        g = _grads(fn(xs), xs).sum(1)  # [R, T, d]
        total = g if total is None else total + g
    assert total is not None
    return delta.float() * (total.float() / steps)


def input_x_gradient(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Signed Input×Gradient attributions ``[R, T, d]`` = ``x ⊙ ∂fn/∂x`` of the ``R`` outputs of ``fn([1, T, d])``."""
    xs = x.detach()[None].clone().requires_grad_(True)
    g = _grads(fn(xs), xs)[:, 0]
    return x.detach().float() * g.float()


# ---- the classifier ---------------------------------------------------------------------------------------


def last_token_states(tail: LMTail, acts: RowActivations, batch_size: int) -> torch.Tensor:
    """Final-norm state ``[n_rows, d]`` (float32) at the last token of each row, from its layer-L states."""
    counts = torch.bincount(acts.row.cpu(), minlength=acts.n_rows).tolist()
    starts = np.cumsum([0, *counts])
    out = []
    with torch.no_grad():
        for r0 in range(0, acts.n_rows, batch_size):
            rows = range(r0, min(r0 + batch_size, acts.n_rows))
            lengths = [counts[r] for r in rows]
            t_max = max(lengths)
            hidden = acts.tokens.new_zeros(len(lengths), t_max, acts.tokens.shape[1])
            mask = torch.zeros(len(lengths), t_max, dtype=torch.long, device=acts.tokens.device)
            for b, r in enumerate(rows):
                hidden[b, : lengths[b]] = acts.tokens[starts[r] : starts[r + 1]]
                mask[b, : lengths[b]] = 1
            final = tail.final_hidden(hidden, mask)
            idx = torch.tensor(lengths, device=final.device) - 1
            out.append(final[torch.arange(len(lengths), device=final.device), idx].float())
    return torch.cat(out)


def head_probability(head: dict[str, torch.Tensor], final: torch.Tensor) -> torch.Tensor:
    """P(positive) ``[N, R]`` of the ``R`` stacked heads (``W1 [R,h,d]``, ``b1``, ``W2 [R,2,h]``, ``b2``) on
    last-token states ``final [N, d]`` (evaluation mode: no dropout)."""
    hid = torch.relu(torch.einsum("nd,rhd->nrh", final.float(), head["W1"]) + head["b1"])
    logits = torch.einsum("nrh,rch->nrc", hid, head["W2"]) + head["b2"]
    return torch.softmax(logits, dim=-1)[..., 1]


def _make_head(d: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(d, d // 2), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d // 2, 2)
    )


def train_head(
    feats: torch.Tensor, labels: torch.Tensor, hp: ClassifierParams, seed: int
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train the classifier head on fixed last-token states; returns its tensors and the per-step losses."""
    device = feats.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        head = _make_head(feats.shape[1], hp.dropout).to(device)
        opt = torch.optim.AdamW(head.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        n = feats.shape[0]
        n_batches = math.ceil(n / hp.batch_size)
        sched = linear_decay(opt, hp.epochs * math.ceil(n_batches / hp.gradient_accumulation))
        gen = seeded_generator(seed)
        y = labels.long().to(device)
        losses: list[float] = []
        head.train()
        for _ in range(hp.epochs):
            order = torch.randperm(n, generator=gen).to(device)
            for b in range(n_batches):
                idx = order[b * hp.batch_size : (b + 1) * hp.batch_size]
                loss = F.cross_entropy(head(feats[idx]), y[idx])
                (loss / hp.gradient_accumulation).backward()
                if (b + 1) % hp.gradient_accumulation == 0 or b + 1 == n_batches:
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(round(float(loss.detach()), 6))
    lin1, lin2 = head[1], head[4]
    tensors = {
        "W1": lin1.weight.detach().float().cpu(),
        "b1": lin1.bias.detach().float().cpu(),
        "W2": lin2.weight.detach().float().cpu(),
        "b2": lin2.bias.detach().float().cpu(),
    }
    return tensors, losses


class _Attribution(Method):
    """Shared parts: the classifier head's training and per-row gradient scoring (no steering)."""

    Params = ClassifierParams
    requires = frozenset({"activations", "lm_tail"})
    detection_kind = "gradient"
    steers = False
    magnitude_source = "unit"

    def train_concept(self, inputs: ConceptInputs, hp: ClassifierParams) -> dict[str, Any]:
        acts, tail = inputs.activations, inputs.lm_tail
        assert acts is not None and tail is not None
        feats = last_token_states(tail, acts.acts, hp.state_batch_size)
        head, losses = train_head(feats, acts.labels, hp, inputs.seed)
        with torch.no_grad():
            p = head_probability({k: v[None].to(feats.device) for k, v in head.items()}, feats)[:, 0]
        acc = float(((p >= 0.5).long().cpu() == acts.labels.cpu()).float().mean())
        return {**head, "train_loss": losses, "train_accuracy": round(acc, 6)}

    def _token_attributions(
        self, tail: LMTail, head: dict[str, torch.Tensor], h: torch.Tensor, artifact: MethodArtifact, hp: Any
    ) -> torch.Tensor:
        """Signed attributions ``[R, T, d]`` of the heads' P(positive) at the layer-L states ``h [T, d]``."""
        raise NotImplementedError

    def score_model_texts(
        self,
        artifact: MethodArtifact,
        texts: Sequence[str],
        concept_rows: torch.Tensor | None = None,
        *,
        tm: Any,
        layer: int,
        max_length: int,
    ) -> np.ndarray:
        hp = self.params(artifact.meta.get("hyperparameters"))
        tail = LMTail(tm, layer)
        prefix = chat_prefix_length(tm.tokenizer)
        device = tm.device
        heads = {k: artifact.tensors[k].float().to(device) for k in HEAD_KEYS}
        n_concepts = int(heads["W1"].shape[0])
        out = np.zeros((len(texts), n_concepts if concept_rows is None else 1))
        for i, text in enumerate(texts):
            rows = torch.arange(n_concepts) if concept_rows is None else concept_rows[i : i + 1].long()
            head = {k: v[rows.to(device)] for k, v in heads.items()}
            enc = encode(tm, [text], "right", max_length)
            with torch.no_grad():
                h = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], layer)[0]
            with torch.enable_grad():
                attr = self._token_attributions(tail, head, h, artifact, hp)
            scores = attr.abs().sum(-1)[:, prefix:]  # [R, T − P]
            out[i] = scores.max(-1).values.cpu().numpy() if scores.shape[1] else 0.0
        return out if concept_rows is None else out[:, 0]


def _final_probability(tail: LMTail, head: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``X [S, T, d]`` (layer-L states of one unpadded row) → heads' P(positive) ``[S, R]`` at the last token."""

    def fn(xs: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(xs.shape[:2], dtype=torch.long, device=xs.device)
        final = tail.final_hidden(xs, mask)[:, -1]
        return head_probability(head, final)

    return fn


@register("IG")
class IntegratedGradients(_Attribution):
    """Integrated Gradients of the frozen-LM classifier w.r.t. the layer-L states (detection only)."""

    Params = IGParams
    order = 92

    def train_concept(self, inputs: ConceptInputs, hp: IGParams) -> dict[str, Any]:
        out = super().train_concept(inputs, hp)
        tail = inputs.lm_tail
        emb = tail.tm.model.get_input_embeddings()
        ids = torch.randint(
            int(emb.weight.shape[0]), (hp.baseline_tokens,), generator=seeded_generator(hp.baseline_seed)
        )
        with torch.no_grad():
            out["baseline"] = emb(ids.to(emb.weight.device)).float().mean(0).cpu()
        return out

    def _token_attributions(
        self, tail: LMTail, head: dict[str, torch.Tensor], h: torch.Tensor, artifact: MethodArtifact, hp: Any
    ) -> torch.Tensor:
        baseline = artifact.tensors["baseline"][0].to(h.device)  # the same seeded baseline in every row
        return integrated_gradients(_final_probability(tail, head), h, baseline, hp.steps, hp.step_chunk)


@register("IxG")
class InputXGradients(_Attribution):
    """Input×Gradient of the frozen-LM classifier w.r.t. the layer-L states (detection only)."""

    order = 94

    def _token_attributions(
        self, tail: LMTail, head: dict[str, torch.Tensor], h: torch.Tensor, artifact: MethodArtifact, hp: Any
    ) -> torch.Tensor:
        return input_x_gradient(_final_probability(tail, head), h)
