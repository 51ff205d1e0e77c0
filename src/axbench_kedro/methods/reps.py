"""RePS and its rank-1 baselines Lang. and BiPO (protocol §3.13): a steering vector v with bias b trained on
``preference_data``.

Every pair gives x = F-prompt(input), y_c (the concept response) and y (the model's own response). Interventions at
positions "all" (``[P, len)``), with dropout on v while training:

* add: Φ⁺(h) = h + (s + b)·v;
* null-it-out: Φ⁰(h) = h − ReLU(h·v + b)·v/‖v‖².

Objectives (log-likelihoods summed over the response tokens; the reference is the same forward without
intervention, computed once per pair and cached):

* **RePS** (scaled SimPO): an ``add`` pair (win y_c, lose y; factor s drawn from ``[2, 4, …, 20]`` independently for
  the two sequences) and a ``sub`` pair (win y, lose y_c, null-it-out); β = max((ref(lose) − ref(win))·scaler, 1),
  Δ = (β/|win|)·logp(win) − (1/|lose|)·logp(lose), L = −log σ(Δ), with |·| the whole sequence's length [D 8];
* **Lang.**: the plain LM loss on x + y_c under Φ⁺ with a sampled factor (add only);
* **BiPO**: DPO, L = −log σ(β[(π_w − π_l) − (ref_w − ref_l)]), β = 1, the add intervention with factor 1 for the
  ``add`` pair and −1 for the ``sub`` pair.

AdamW (wd 0), linear decay, gradient clipping of (v, b) per concept. Detection: max ReLU(h·v + b) over positions ≥ P;
steering: h + f·v (m = 1, bias ignored) on the RePS grid ``[2, 4, …, 20, 25, 30, 40, 50]``
(``steering_eval.method_factors``).

Example:
    >>> reps_pair_loss(*map(torch.tensor, ([-10.0], [-20.0], [5.0], [10.0], [-12.0], [-9.0])))  # §10.17
    tensor([4.0181])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from axbench_kedro.config.common import StrictModel
from axbench_kedro.methods.activations import LMObjectiveRows
from axbench_kedro.methods.base import ConceptInputs, DetectionEncoder, Method, MethodArtifact
from axbench_kedro.methods.lm_objective import per_group_mean, split_by_size
from axbench_kedro.methods.rank1 import linear_decay, seeded_generator
from axbench_kedro.methods.registry import register

__all__ = [
    "REPS_TRAIN_FACTORS",
    "REPS_STEER_FACTORS",
    "RePSParams",
    "LangParams",
    "BiPOParams",
    "RePS",
    "Lang",
    "BiPO",
    "reps_pair_loss",
    "dpo_pair_loss",
    "add_intervention",
    "null_it_out",
]

REPS_TRAIN_FACTORS: tuple[float, ...] = tuple(float(f) for f in range(2, 21, 2))
"""Factors s sampled while training (protocol §3.13)."""
REPS_STEER_FACTORS: tuple[float, ...] = (*REPS_TRAIN_FACTORS, 25.0, 30.0, 40.0, 50.0)
"""The steering grid of the family (m = 1); configured in ``steering_eval.method_factors``."""


def reps_pair_loss(
    logp_win: torch.Tensor,
    logp_lose: torch.Tensor,
    len_win: torch.Tensor,
    len_lose: torch.Tensor,
    ref_win: torch.Tensor,
    ref_lose: torch.Tensor,
    scaler: float = 1.0,
) -> torch.Tensor:
    """Scaled-SimPO loss per pair: −log σ((β/|win|)·logp(win) − logp(lose)/|lose|), β = max(Δref·scaler, 1)."""
    beta = ((ref_lose - ref_win) * scaler).clamp_min(1.0)
    return F.softplus(-(beta * logp_win / len_win - logp_lose / len_lose))


def dpo_pair_loss(
    logp_win: torch.Tensor,
    logp_lose: torch.Tensor,
    ref_win: torch.Tensor,
    ref_lose: torch.Tensor,
    beta: float = 1.0,
) -> torch.Tensor:
    """DPO loss per pair: −log σ(β[(π_w − π_l) − (ref_w − ref_l)])."""
    return F.softplus(-beta * ((logp_win - logp_lose) - (ref_win - ref_lose)))


def add_intervention(
    h: torch.Tensor, v: torch.Tensor, b: torch.Tensor, s: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Φ⁺: ``h + (s + b)·v`` at the ``mask`` positions (``h [B, T, d]``, ``v [B, d]``, ``b, s [B]``)."""
    coef = (s + b)[:, None, None] * mask[..., None]
    return h + coef * v[:, None, :]


def null_it_out(h: torch.Tensor, v: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Φ⁰: ``h − ReLU(h·v + b)·v/‖v‖²`` at the ``mask`` positions (removes the positive component along v)."""
    act = torch.relu(torch.einsum("btd,bd->bt", h, v) + b[:, None]) * mask
    return h - (act / v.square().sum(-1)[:, None])[..., None] * v[:, None, :]


class _FamilyParams(StrictModel):
    """Attributes shared by the family:
    lr: AdamW learning rate.
    epochs: passes over the concept's pairs.
    batch_size: instructions (pairs) per micro-batch.
    dropout: dropout probability on v while training (2B 0.0, 9B 0.1).
    max_grad_norm: clipping norm of the (v, b) gradient of each concept.
    """

    lr: float = Field(0.04, gt=0)
    epochs: int = Field(18, ge=1)
    batch_size: int = Field(6, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)


class RePSParams(_FamilyParams):
    """RePS-SV (protocol §3.13, §8). Also: ``scaler`` of β; ``train_factors`` the grid s is drawn from."""

    scaler: float = Field(1.0, gt=0)
    train_factors: list[float] = Field(default_factory=lambda: list(REPS_TRAIN_FACTORS), min_length=1)


class LangParams(_FamilyParams):
    """Lang. (LM loss, add only). Also: ``gradient_accumulation`` micro-batches per optimizer step."""

    epochs: int = Field(6, ge=1)
    gradient_accumulation: int = Field(2, ge=1)
    train_factors: list[float] = Field(default_factory=lambda: list(REPS_TRAIN_FACTORS), min_length=1)


class BiPOParams(_FamilyParams):
    """BiPO (DPO). Also: ``beta`` of DPO; ``factor`` of the add pair (the sub pair uses its negative)."""

    epochs: int = Field(12, ge=1)
    beta: float = Field(1.0, gt=0)
    factor: float = 1.0


# A sequence of a step: which response ("concept" y_c or "model" y), which intervention, which factor
# ("sampled" from train_factors, "+" the fixed factor, "-" its negative, "none" for null-it-out).
_Slot = tuple[Literal["concept", "model"], Literal["add", "null"], Literal["sampled", "+", "-", "none"]]


class _RankOneFamily(Method):
    """Shared training loop: per step, the listed sequences of each picked pair go through one tail pass."""

    requires = frozenset({"preference"})
    trains_on_negatives = False
    token_activation = "relu"  # detection: max ReLU(h·v + b)
    magnitude_source = "unit"
    slots: ClassVar[tuple[_Slot, ...]] = ()
    pairs: ClassVar[tuple[tuple[int, int], ...]] = ()  # (win slot, lose slot); empty = LM loss on every slot
    uses_reference: ClassVar[bool] = True

    def detection_encoder(self, artifact: MethodArtifact) -> DetectionEncoder:
        t = artifact.tensors
        weight = t["weight"].float()
        return DetectionEncoder(weight=weight, bias=t["bias"].float().reshape(-1), activation="relu")

    def train_concept(self, inputs: ConceptInputs, hp: Any) -> dict[str, Any]:
        return self.train_group([inputs], hp)[0]

    def train_group(self, items: Sequence[ConceptInputs], hp: Any) -> list[dict[str, Any]]:
        if any(it.preference is None or it.lm_tail is None for it in items):
            raise ValueError(f"{self.name} needs the 'preference' resource (cached pairs and the LM tail)")
        out: list[dict[str, Any]] = [{} for _ in items]
        for idx in split_by_size([len(it.preference) for it in items]):  # type: ignore[arg-type]
            for i, res in zip(idx, self._train([items[i] for i in idx], hp), strict=True):
                out[i] = res
        return out

    # ---- objective ---------------------------------------------------------------------------------------------
    def _pair_losses(
        self, logp: torch.Tensor, length: torch.Tensor, ref: torch.Tensor, hp: Any
    ) -> torch.Tensor:
        """Per-pair losses ``[k]`` from the slot-major per-sequence values ``[n_slots, k]``."""
        raise NotImplementedError

    def _accumulation(self, hp: Any) -> int:
        return 1

    # ---- loop --------------------------------------------------------------------------------------------------
    def _train(self, items: Sequence[ConceptInputs], hp: Any) -> list[dict[str, Any]]:
        prefs = [it.preference for it in items]
        tail = items[0].lm_tail
        n_c, n = len(items), len(prefs[0])  # type: ignore[arg-type]
        device = prefs[0].concept.hidden[0].device  # type: ignore[union-attr]
        d = prefs[0].concept.hidden[0].shape[-1]  # type: ignore[union-attr]
        gens = [seeded_generator(it.seed) for it in items]
        bound = d**-0.5  # nn.Linear(d, 1)'s default init: U(−1/√d, 1/√d); b = 0
        v0 = torch.stack([(torch.rand(d, generator=g) * 2 - 1) * bound for g in gens])
        v = torch.nn.Parameter(v0.to(device))
        b = torch.nn.Parameter(torch.zeros(n_c, device=device))
        refs = [p.reference_logps(tail) for p in prefs] if self.uses_reference else None  # type: ignore[union-attr]
        opt = torch.optim.AdamW([v, b], lr=hp.lr, weight_decay=0.0)
        accum = self._accumulation(hp)
        n_batches = -(-n // hp.batch_size)
        sched = linear_decay(opt, hp.epochs * -(-n_batches // accum))
        losses: list[list[float]] = [[] for _ in items]
        running = torch.zeros(n_c)
        for _ in range(hp.epochs):
            orders = [torch.randperm(n, generator=g).tolist() for g in gens]
            for k_batch, start in enumerate(range(0, n, hp.batch_size)):
                picks = [o[start : start + hp.batch_size] for o in orders]
                loss = self._step_loss(prefs, refs, picks, gens, v, b, tail, hp)  # type: ignore[arg-type]
                (loss.sum() / accum).backward()
                running += loss.detach().cpu() / accum
                if (k_batch + 1) % accum and k_batch + 1 < n_batches:
                    continue
                self._clip_(v, b, hp.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                for c, value in enumerate(running.tolist()):
                    losses[c].append(round(value, 6))
                running.zero_()
        return [
            {
                "weight": v[c].detach().float().cpu(),
                "bias": b[c].detach().float().cpu(),
                "train_loss": losses[c],
            }
            for c in range(n_c)
        ]

    @staticmethod
    def _clip_(v: torch.nn.Parameter, b: torch.nn.Parameter, max_norm: float) -> None:
        """``clip_grad_norm_`` over (v, b) of each concept on its own (in place)."""
        if v.grad is None or b.grad is None:
            return
        norms = (v.grad.square().sum(1) + b.grad.square()).sqrt()
        scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        v.grad.mul_(scale[:, None])
        b.grad.mul_(scale)

    def _step_loss(
        self,
        prefs: Sequence[Any],
        refs: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
        picks: Sequence[list[int]],
        gens: Sequence[torch.Generator],
        v: torch.Tensor,
        b: torch.Tensor,
        tail: Any,
        hp: Any,
    ) -> torch.Tensor:
        """Per-concept loss ``[C]`` of one micro-batch (the picked pairs of every concept)."""
        parts: list[LMObjectiveRows] = []
        owner, factor, is_null, drop = [], [], [], []
        for c, (pref, pick) in enumerate(zip(prefs, picks, strict=True)):
            for source, mode, kind in self.slots:
                parts.append((pref.concept if source == "concept" else pref.model).subset(pick))
                owner += [c] * len(pick)
                is_null += [mode == "null"] * len(pick)
                factor.append(self._factors(kind, len(pick), gens[c], hp))
            if hp.dropout > 0:
                keep = torch.full((len(self.slots) * len(pick), v.shape[1]), 1.0 - hp.dropout)
                drop.append(torch.bernoulli(keep, generator=gens[c]) / (1.0 - hp.dropout))
        merged = LMObjectiveRows.concat(parts)
        batch = merged.batch(range(len(merged)))
        dev = v.device
        own = torch.tensor(owner, dtype=torch.long, device=dev)
        null = torch.tensor(is_null, dtype=torch.bool, device=dev)
        s = torch.cat(factor).to(dev)
        v_row = v[own] * torch.cat(drop).to(dev) if drop else v[own]
        b_row = b[own]
        h = batch.hidden.float()
        mask = batch.intervene.to(h.dtype)
        h_add = add_intervention(h, v_row, b_row, s, mask)
        h_int = (
            torch.where(null[:, None, None], null_it_out(h, v_row, b_row, mask), h_add)
            if null.any()
            else h_add
        )
        ce, tok_row = tail.token_losses(h_int, batch)
        if not self.pairs:  # LM loss: mean CE over each concept's response tokens
            return per_group_mean(ce, own[tok_row], len(prefs))
        logp = -torch.zeros(len(merged), dtype=ce.dtype, device=dev).index_add(0, tok_row, ce)
        length = batch.attention_mask.sum(1).to(logp.dtype)
        losses, pair_owner, start = [], [], 0
        for c, (pick, ref) in enumerate(zip(picks, refs, strict=True)):  # type: ignore[arg-type]
            k, n_slots = len(pick), len(self.slots)
            sl = slice(start, start + n_slots * k)
            start += n_slots * k
            ref_rows = torch.stack(
                [(ref[0] if src == "concept" else ref[1])[pick] for src, _, _ in self.slots]
            ).to(dev)
            losses.append(
                self._pair_losses(logp[sl].view(n_slots, k), length[sl].view(n_slots, k), ref_rows, hp)
            )
            pair_owner += [c] * losses[-1].shape[0]
        return per_group_mean(
            torch.cat(losses), torch.tensor(pair_owner, dtype=torch.long, device=dev), len(prefs)
        )

    @staticmethod
    def _factors(kind: str, k: int, gen: torch.Generator, hp: Any) -> torch.Tensor:
        if kind == "sampled":
            grid = torch.tensor(hp.train_factors, dtype=torch.float32)
            return grid[torch.randint(len(grid), (k,), generator=gen)]
        if kind == "+":
            return torch.full((k,), float(hp.factor))
        if kind == "-":
            return torch.full((k,), -float(hp.factor))
        return torch.zeros(k)  # "none": null-it-out has no factor


@register("RePS")
class RePS(_RankOneFamily):
    """Scaled-SimPO steering vector (RePS-SV) with add and null-it-out pairs."""

    Params = RePSParams
    order = 62
    suppression_intervention = "addition_suppression"
    report_note = (
        "RePS: length normalisation by the whole sequence (prompt + response), factors drawn independently "
        "for the winning and losing sequence, as upstream [D 8]."
    )
    # add pair: y_c (win) and y (lose), each with its own sampled factor; sub pair: y (win) and y_c (lose), Φ⁰
    slots = (
        ("concept", "add", "sampled"),
        ("model", "add", "sampled"),
        ("model", "null", "none"),
        ("concept", "null", "none"),
    )
    pairs = ((0, 1), (2, 3))

    def _pair_losses(
        self, logp: torch.Tensor, length: torch.Tensor, ref: torch.Tensor, hp: Any
    ) -> torch.Tensor:
        win, lose = zip(*self.pairs, strict=True)
        w, lo = list(win), list(lose)
        return reps_pair_loss(logp[w], logp[lo], length[w], length[lo], ref[w], ref[lo], hp.scaler).reshape(
            -1
        )


@register("Lang.")
class Lang(_RankOneFamily):
    """The RePS intervention trained with the plain LM loss on (x, y_c), sampled factor (add only)."""

    Params = LangParams
    order = 64
    suppression_intervention = "addition_suppression"
    slots = (("concept", "add", "sampled"),)
    pairs = ()
    uses_reference = False

    def _accumulation(self, hp: Any) -> int:
        return int(hp.gradient_accumulation)


@register("BiPO")
class BiPO(_RankOneFamily):
    """Bi-directional preference optimisation: DPO with factor +1 (add pair) and −1 (sub pair)."""

    Params = BiPOParams
    order = 66
    slots = (("concept", "add", "+"), ("model", "add", "+"), ("model", "add", "-"), ("concept", "add", "-"))
    pairs = ((0, 1), (2, 3))

    def _pair_losses(
        self, logp: torch.Tensor, length: torch.Tensor, ref: torch.Tensor, hp: Any
    ) -> torch.Tensor:
        del length
        win, lose = zip(*self.pairs, strict=True)
        w, lo = list(win), list(lose)
        return dpo_pair_loss(logp[w], logp[lo], ref[w], ref[lo], hp.beta).reshape(-1)
