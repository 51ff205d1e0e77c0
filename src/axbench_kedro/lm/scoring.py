"""Perplexities under the unsteered model; the LM head runs only where a scored token is predicted.

* :func:`perplexities` / :func:`continuation_logprobs`: a continuation given a prompt (the project's
  ``perplexity_conditional``, protocol §5.9 [D 28]).
* :func:`sequence_perplexities`: a whole text re-tokenized with BOS, every token after the first scored (upstream's
  ``perplexity``); :func:`decoded_sequence` builds that text the upstream way (prompt + generation decoded with
  special tokens skipped).

Every batch is one forward pass over right-padded rows: a causal model never attends to the padding after a row,
so each row is scored as if it were alone (unpadded).

Example:
    >>> perplexities(tm, [format_prompt(tok, "Hi")], ["Hello there."], batch_size=8)
    [153.2]
    >>> sequence_perplexities(tm, [decoded_sequence(tok, format_prompt(tok, "Hi"), "Hello there.")], batch_size=8)
    [412.7]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from axbench_kedro.lm.activations import decoder_module
from axbench_kedro.lm.types import TargetModel

__all__ = [
    "perplexities",
    "continuation_logprobs",
    "decoded_sequence",
    "sequence_logprobs",
    "sequence_perplexities",
]

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


def _token_logprobs(
    tm: TargetModel, seqs: Sequence[Sequence[int]], starts: Sequence[int], batch_size: int
) -> list[list[float]]:
    """log p(seq[pos] | seq[:pos]) for every ``pos`` in ``[starts[i], len(seq))`` of each sequence.

    Rows are sorted by length and scored in right-padded batches, one forward pass per batch; a row's scores do
    not depend on the other rows of its batch (causal attention, padding after the row).

    The LM head (the 262k-vocabulary projection dominates the cost) runs once per distinct prefix: log p(seq[pos] |
    seq[:pos]) depends on ``seq[:pos + 1]`` only, so rows that share a prompt (every factor and method of one
    instruction) reuse its positions' values instead of recomputing them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tok = tm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    body = decoder_module(tm.model)  # embeddings + blocks + final norm, no LM head
    results: list[list[float]] = [[] for _ in seqs]
    known: dict[tuple[int, ...], float] = {}  # log p of the last token of a prefix, given the rest of it
    with tqdm(total=len(seqs), desc="perplexity", unit="row", disable=not seqs) as bar:
        for first in range(0, len(order), batch_size):
            rows = [i for i in order[first : first + batch_size] if len(seqs[i]) > max(starts[i], 1)]
            bar.update(min(batch_size, len(order) - first))
            if not rows:
                continue
            width = max(len(seqs[i]) for i in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            b_idx, t_idx, targets, new_keys = [], [], [], []
            wanted: list[tuple[int, tuple[int, ...]]] = []  # (row, prefix key) per scored position, in order
            queued: set[tuple[int, ...]] = set()
            for b, i in enumerate(rows):
                seq = tuple(seqs[i])
                ids[b, : len(seq)] = torch.tensor(seq)
                mask[b, : len(seq)] = 1
                for pos in range(max(starts[i], 1), len(seq)):  # predict seq[pos] from position pos-1
                    key = seq[: pos + 1]
                    wanted.append((i, key))
                    if key in known or key in queued:
                        continue
                    queued.add(key)
                    b_idx.append(b)
                    t_idx.append(pos - 1)
                    targets.append(seq[pos])
                    new_keys.append(key)
            if new_keys:  # else every position of the batch is known already: no forward pass at all
                with torch.no_grad():
                    hidden = body(
                        input_ids=ids.to(tm.device), attention_mask=mask.to(tm.device), use_cache=False
                    ).last_hidden_state
                    picked = hidden[
                        torch.tensor(b_idx, dtype=torch.long, device=tm.device),
                        torch.tensor(t_idx, dtype=torch.long, device=tm.device),
                    ]
                    logp = _head_logprobs(
                        tm.model, picked, torch.tensor(targets, dtype=torch.long, device=tm.device)
                    ).tolist()
                known.update(zip(new_keys, logp, strict=True))
            for i, key in wanted:
                results[i].append(known[key])
    return results


def _perplexity(logprobs: Sequence[float]) -> float:
    """``exp(mean NLL)``; ``nan`` without a scored token."""
    return math.exp(-sum(logprobs) / len(logprobs)) if logprobs else float("nan")


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
    return _token_logprobs(tm, seqs, [len(p) for p in p_ids], batch_size)


def perplexities(
    tm: TargetModel, prompts: Sequence[str], continuations: Sequence[str], batch_size: int
) -> list[float]:
    """``exp(mean NLL)`` of each continuation given its prompt; ``nan`` when the continuation has no scored token.

    This is the project's ``perplexity_conditional`` (protocol §5.9 [D 28]) when ``prompts`` are the rows'
    unsteered ``input`` and ``continuations`` their generations.
    """
    return [_perplexity(lps) for lps in continuation_logprobs(tm, prompts, continuations, batch_size)]


def decoded_sequence(tokenizer: Any, prompt: str, generation: str) -> str:
    """Upstream's scored text: prompt ids + generation ids decoded with special tokens skipped.

    Turn markers, BOS and padding vanish (``<bos><start_of_turn>user\\nHi<end_of_turn>\\n<start_of_turn>model\\n``
    + ``Hello`` → ``user\\nHi\\nmodel\\nHello`` with Gemma). An empty ``prompt`` gives the decoded generation alone
    (the Prompt baseline's text [D 28]).

    Args:
        tokenizer: the target model's tokenizer.
        prompt: the model input as a formatted string (tokenized without special tokens; ``""`` for none).
        generation: the generated text (already decoded with special tokens skipped).
    """
    ids: list[int] = []
    if prompt:
        ids += list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if generation:
        ids += list(tokenizer(generation, add_special_tokens=False)["input_ids"])
    return str(tokenizer.decode(ids, skip_special_tokens=True)) if ids else ""


def sequence_logprobs(tm: TargetModel, texts: Sequence[str], batch_size: int) -> list[list[float]]:
    """Per-token log-probabilities of each text re-tokenized with BOS, every token after the first scored."""
    tok = tm.tokenizer
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    ids = tok(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    seqs = [bos + list(x) for x in ids]
    return _token_logprobs(tm, seqs, [1] * len(seqs), batch_size)


def sequence_perplexities(tm: TargetModel, texts: Sequence[str], batch_size: int) -> list[float]:
    """Upstream's ``perplexity`` of each text (protocol §5.9 [D 28]): re-tokenized with BOS, exp(mean NLL) over every
    token after the first, each text scored on its own (no pad position is ever scored); ``nan`` for a text with no
    token after BOS.
    """
    return [_perplexity(lps) for lps in sequence_logprobs(tm, texts, batch_size)]
