"""Perplexity of a continuation given a prompt; the LM head runs only where a continuation token is predicted.

Example:
    >>> perplexities(tm, [format_prompt(tok, "Hi")], ["Hello there."], batch_size=8)
    [153.2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from axbench_kedro.lm.activations import decoder_module
from axbench_kedro.lm.types import TargetModel

__all__ = ["perplexities", "continuation_logprobs"]

_HEAD_CHUNK = 512  # positions per LM-head call (bounds the [positions, vocab] logits buffer)


def _head_logprobs(model: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) for final-normed hidden states ``[N, d]`` (Gemma-2 logit soft-capping applied)."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    out = []
    for start in range(0, hidden.shape[0], _HEAD_CHUNK):
        logits = model.get_output_embeddings()(hidden[start : start + _HEAD_CHUNK]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        logp = torch.log_softmax(logits, dim=-1)
        out.append(logp.gather(-1, targets[start : start + _HEAD_CHUNK, None]).squeeze(-1))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def continuation_logprobs(
    tm: TargetModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int
) -> list[list[float]]:
    """Per-token log-probabilities of each continuation given its prompt (both tokenized without specials).

    The prompt is tokenized on its own and the continuation appended token by token, so the boundary is exact.
    With an empty prompt the first continuation token has no context and is not scored.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tok = tm.tokenizer
    p_ids = tok(list(prompts), add_special_tokens=False)["input_ids"] if prompts else []
    c_ids = tok(list(continuations), add_special_tokens=False)["input_ids"] if prompts else []
    seqs = [list(p) + list(c) for p, c in zip(p_ids, c_ids, strict=True)]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    body = decoder_module(tm.model)  # embeddings + blocks + final norm, no LM head
    results: list[list[float]] = [[] for _ in seqs]
    with tqdm(total=len(seqs), desc="perplexity", unit="row", disable=not seqs) as bar:
        for first in range(0, len(order), batch_size):
            rows = [i for i in order[first : first + batch_size] if len(seqs[i]) >= 2]
            bar.update(min(batch_size, len(order) - first))
            if not rows:
                continue
            width = max(len(seqs[i]) for i in rows)
            ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            b_idx, t_idx, targets, owner = [], [], [], []
            for b, i in enumerate(rows):
                seq = seqs[i]
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
                for pos in range(max(len(p_ids[i]), 1), len(seq)):  # predict seq[pos] from position pos-1
                    b_idx.append(b)
                    t_idx.append(pos - 1)
                    targets.append(seq[pos])
                    owner.append(i)
            if not targets:
                continue
            with torch.no_grad():
                hidden = body(
                    input_ids=ids.to(tm.device), attention_mask=mask.to(tm.device), use_cache=False
                ).last_hidden_state
                picked = hidden[torch.tensor(b_idx, device=tm.device), torch.tensor(t_idx, device=tm.device)]
                logp = _head_logprobs(tm.model, picked, torch.tensor(targets, device=tm.device)).tolist()
            for i, lp in zip(owner, logp, strict=True):
                results[i].append(lp)
    return results


def perplexities(
    tm: TargetModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int
) -> list[float]:
    """``exp(mean NLL)`` of each continuation given its prompt; ``nan`` when the continuation has no scored token."""
    out = []
    for lps in continuation_logprobs(tm, prompts, continuations, batch_size):
        out.append(math.exp(-sum(lps) / len(lps)) if lps else float("nan"))
    return out
