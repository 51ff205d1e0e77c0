"""SAE (filtered) (protocol §3.15): the concept's GemmaScope feature, kept only when its output score is high.

Per concept, feature i = ``concepts_meta.sae_id`` (no search over features):

* logit lens ℓ_i = U·N(d_i) (the model's final norm N, no softcap, no centring); T_i = its top-k token ids;
* output score: on the neutral prompt (BOS + ``From my experience,``, no chat template) the block-L output at the last
  position n gets h_n + α·max_j a_j(h_n)·d_i (a = the **full** SAE's JumpReLU activations), the rest of the model
  runs to the LM head (softcap included), p = softmax; t* = argmax_{t ∈ T_i} p_t, r* = its 0-based rank in p;
  S_out = (1 − r*/V)·p_{t*};
* kept = S_out ≥ ``threshold``.

Detection and steering are SAE's (JumpReLU of the feature; h + m·f·``W_dec[i]``, m from the Neuronpedia table,
[D 12]/[D 13]); the artefact's meta carries the per-concept scores (``sae_output_scores``) and ``kept``. Steering
evaluates the kept concepts only (:meth:`SAEFilteredMethod.steering_subset`), so its leaderboard row is the mean over
them, and the leaderboard shows SAE on the same concepts beside it; detection repeats SAE's and is not reported. Without a
GemmaScope file the method is skipped with the reason, like SAE.

Example:
    >>> lens = lens_top_k(decoder_rows, unembedding, norm=lambda x: x, k=2)  # doctest: +SKIP
    >>> output_scores(h_n, sae, decoder_rows, lens, logits_fn, amplification=10.0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import Field

from axbench_kedro.config.common import StrictModel
from axbench_kedro.lm.activations import truncated_hidden_states
from axbench_kedro.methods.base import ConceptData, ConceptInputs, MethodArtifact
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.registry import register
from axbench_kedro.methods.sae import SAEMethod
from axbench_kedro.methods.sae_file import SAEParams

__all__ = [
    "SAEFilteredParams",
    "lens_top_k",
    "output_scores",
    "input_score",
    "neutral_prompt_state",
    "SAEFilteredMethod",
]


class SAEFilteredParams(StrictModel):
    """Attributes:
    threshold: τ; a concept is kept iff its output score ≥ τ (0.01, inferred by the protocol).
    lens_top_k: k, the number of logit-lens tokens T_i.
    amplification: α, the multiple of the SAE's largest activation added along the feature's decoder row.
    neutral_prompt: the prompt whose last position is intervened on (BOS added, no chat template).
    """

    threshold: float = Field(0.01, ge=0)
    lens_top_k: int = Field(20, ge=1)
    amplification: float = 10.0
    neutral_prompt: str = "From my experience,"


def lens_top_k(
    decoder_rows: torch.Tensor,
    unembedding: torch.Tensor,
    norm: Callable[[torch.Tensor], torch.Tensor],
    k: int,
) -> torch.Tensor:
    """``[R, k]`` token ids with the largest logit-lens values U·N(d_r) of each decoder row (largest first)."""
    lens = norm(decoder_rows).float() @ unembedding.float().T
    return torch.topk(lens, min(k, lens.shape[1]), dim=1).indices


def output_scores(
    h_n: torch.Tensor,
    sae: SAEParams,
    decoder_rows: torch.Tensor,
    lens_ids: torch.Tensor,
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    amplification: float,
) -> dict[str, torch.Tensor]:
    """Output scores of R features at the neutral prompt's last state ``h_n [d]``.

    Args:
        h_n: block-L output at the intervened position.
        sae: the full SAE (max_j a_j(h_n) runs over all its features).
        decoder_rows: ``[R, d]`` the features' ``W_dec`` rows.
        lens_ids: ``[R, k]`` their logit-lens tokens.
        logits_fn: modified states ``[R, d]`` at n → final logits ``[R, V]`` of the model at n.
        amplification: α.

    Returns:
        ``added`` (α·max_j a_j, scalar), ``best_lens_id``, ``rank``, ``prob``, ``output_score`` (each ``[R]``).
    """
    a_max = sae.encode(h_n[None].float()).max()
    added = amplification * a_max
    states = h_n[None].float() + added * decoder_rows.float()
    p = torch.softmax(logits_fn(states.to(h_n.dtype)).float(), dim=-1)  # [R, V]
    lens_p = p.gather(1, lens_ids.to(p.device))
    best = lens_p.argmax(dim=1)
    best_id = lens_ids.to(p.device).gather(1, best[:, None])[:, 0]
    prob = lens_p.gather(1, best[:, None])[:, 0]
    rank = (p > prob[:, None]).sum(dim=1)  # tokens strictly more probable
    vocab = p.shape[1]
    return {
        "added": added.detach(),
        "best_lens_id": best_id,
        "rank": rank,
        "prob": prob,
        "output_score": (1.0 - rank.double() / vocab) * prob.double(),
    }


def input_score(
    record_token_ids: Sequence[int], lens_ids: Sequence[int], min_records: int = 10
) -> float | None:
    """S_in: share of the activation records whose max-activation token is a logit-lens token (diagnostic only).

    ``None`` when fewer than ``min_records`` records are given (the first 100 count).
    """
    records = list(record_token_ids)[:100]
    if len(records) < min_records:
        return None
    lens = {int(t) for t in lens_ids}
    return sum(int(t) in lens for t in records) / len(records)


def neutral_prompt_state(tail: LMTail, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [1, T], block-L output [1, T, d])`` of BOS + ``prompt`` (no chat template)."""
    tm = tail.tm
    tok = tm.tokenizer
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
    input_ids = torch.tensor([ids], device=tm.device)
    with torch.no_grad():
        hidden = truncated_hidden_states(tm.model, input_ids, torch.ones_like(input_ids), tail.layer)
    return input_ids, hidden


def _logits_at_last(tail: LMTail, hidden: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """States ``[R, d]`` replacing the last position of ``hidden [1, T, d]`` → the whole model's logits there."""

    def fn(states: torch.Tensor) -> torch.Tensor:
        batch = hidden.expand(states.shape[0], -1, -1).clone()
        batch[:, -1] = states.to(batch.dtype)
        mask = torch.ones(batch.shape[:2], dtype=torch.long, device=batch.device)
        with torch.no_grad():
            final = tail.final_hidden(batch, mask)[:, -1]
            return tail.logits(final)

    return fn


@register("SAE-filtered")
class SAEFilteredMethod(SAEMethod):
    """SAE with the output-score filter of Arad et al. (2025); steers and detects like SAE (its detection rows equal
    SAE's, so reports leave them out)."""

    detection_reported = False
    subset_baseline = "SAE"

    Params = SAEFilteredParams
    order = 75
    requires = frozenset({"sae", "lm_tail"})
    report_note = (
        "SAE (filtered): the concept's own GemmaScope feature, kept iff its output score (Arad et al. 2025) >= the "
        "threshold; the artefact's meta lists the scores and kept concepts (protocol §3.15)."
    )

    def train_concept(self, inputs: ConceptInputs, hp: SAEFilteredParams) -> dict[str, Any]:
        return self.train_group([inputs], hp)[0]

    def train_group(self, items: Sequence[ConceptInputs], hp: SAEFilteredParams) -> list[dict[str, Any]]:
        if not items:
            return []
        sae, tail = items[0].sae, items[0].lm_tail
        assert sae is not None and tail is not None
        ids = [it.data.sae_id for it in items]
        sae.check_features(ids, f"SAE-filtered (concepts {[it.data.concept_id for it in items]})")
        device = tail.tm.device
        sae_dev = sae.to(device)
        rows = sae_dev.W_dec[torch.tensor(ids, device=device)].float()
        norm = tail.decoder.norm
        with torch.no_grad():
            lens = lens_top_k(rows, tail.head_weight, lambda x: norm(x.to(tail.dtype)), hp.lens_top_k)
            input_ids, hidden = neutral_prompt_state(tail, hp.neutral_prompt)
            scores = output_scores(
                hidden[0, -1], sae_dev, rows, lens, _logits_at_last(tail, hidden), hp.amplification
            )
        prompt_sha = hashlib.sha256(hp.neutral_prompt.encode("utf-8")).hexdigest()
        out = []
        for r, it in enumerate(items):
            row = self._pruned(sae, it.data.sae_id)
            value = float(scores["output_score"][r])
            row["output_score"] = {
                "concept_id": it.data.concept_id,
                "sae_id": int(it.data.sae_id),
                "lens_ids": [int(t) for t in lens[r].tolist()],
                "best_lens_id": int(scores["best_lens_id"][r]),
                "rank": int(scores["rank"][r]),
                "prob": float(scores["prob"][r]),
                "output_score": value,
                "input_score": None,  # needs Neuronpedia activation records (diagnostic only)
                "kept": value >= hp.threshold,
                "threshold": hp.threshold,
                "prompt_sha256": prompt_sha,
            }
            out.append(row)
        return out

    def stack(
        self, rows: Sequence[dict[str, Any]], concepts: Sequence[ConceptData]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().stack(rows, concepts)
        scores = [r["output_score"] for r in rows]
        meta["sae_output_scores"] = scores
        meta["kept_concept_ids"] = [s["concept_id"] for s in scores if s["kept"]]
        return tensors, meta

    def steering_subset(self, artifact: MethodArtifact) -> frozenset[int] | None:
        """The kept concepts: steering, and so the leaderboard row, covers them only (§3.15)."""
        return frozenset(int(c) for c in artifact.meta.get("kept_concept_ids", []))
