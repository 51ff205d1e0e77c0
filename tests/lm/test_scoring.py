"""Perplexities: the conditional one equals a full-forward reference; upstream's whole-sequence one equals decode →
re-tokenize with BOS → exp(mean NLL after the first token) by hand; batched = unpadded; the LM head sees only the
scored positions."""

from __future__ import annotations

import math

import pytest
import torch

from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.scoring import (
    continuation_logprobs,
    decoded_sequence,
    perplexities,
    sequence_logprobs,
    sequence_perplexities,
)

PAIRS = [
    ("Tell me about cars.", "Cars are a good way to travel, and a rental car is easy to find."),
    ("Hi", "Hello!"),
    ("What is the sum of two and two?", "It is four."),
]


@pytest.fixture(params=["gemma3", "gemma2"])
def tm(request, tiny_gemma3, tiny_gemma2):
    return {"gemma3": tiny_gemma3, "gemma2": tiny_gemma2}[request.param]


def _reference(tm, prompt, continuation):
    tok = tm.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = (
            tm.model(input_ids=torch.tensor([p + c])).logits[0].float()
        )  # softcapping included for Gemma-2
    logp = torch.log_softmax(logits, -1)
    nll = [-float(logp[len(p) + j - 1, t]) for j, t in enumerate(c)]
    return math.exp(sum(nll) / len(nll))


def test_matches_full_forward_reference(tm):
    prompts = [format_prompt(tm.tokenizer, p) for p, _ in PAIRS]
    conts = [c for _, c in PAIRS]
    got = perplexities(tm, prompts, conts, batch_size=3)
    for (prompt, cont), value in zip(zip(prompts, conts, strict=True), got, strict=True):
        assert value == pytest.approx(_reference(tm, prompt, cont), rel=1e-4)
    assert perplexities(tm, prompts, conts, batch_size=1) == pytest.approx(got, rel=1e-5)


def test_head_runs_only_on_scored_positions(tiny_gemma2):
    tm = tiny_gemma2
    prompts = [format_prompt(tm.tokenizer, p) for p, _ in PAIRS]
    conts = [c for _, c in PAIRS]
    n_scored = sum(len(tm.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in conts)
    rows = []
    handle = tm.model.lm_head.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
    try:
        lps = continuation_logprobs(tm, prompts, conts, batch_size=2)
    finally:
        handle.remove()
    assert sum(rows) == n_scored == sum(len(x) for x in lps)
    assert all(lp <= 0 for x in lps for lp in x)


def test_empty_continuation_and_prompt(tiny_gemma3):
    got = perplexities(tiny_gemma3, ["<bos>hello", "", ""], ["", "hello world", "hello"], batch_size=2)
    assert math.isnan(got[0])
    assert got[1] > 1 and math.isfinite(got[1])  # only "world" is scored (no context for the first token)
    assert math.isnan(got[2])
    with pytest.raises(ValueError, match="continuations"):
        perplexities(tiny_gemma3, ["a"], [], batch_size=1)


# ---- upstream's whole-sequence perplexity (protocol §5.9, D28) ----------------------------------------------------
def _direct_sequence_perplexity(tm, prompt_ids, generation_ids):
    """Upstream by hand: decode prompt + generation ids (special tokens skipped), re-tokenize with BOS, one
    unpadded full forward, exp(mean NLL) over every token after the first."""
    tok = tm.tokenizer
    text = tok.decode(list(prompt_ids) + list(generation_ids), skip_special_tokens=True)
    ids = tok(text)["input_ids"]  # add_special_tokens=True: <bos> first, as upstream's tokenizer call
    assert ids[0] == tok.bos_token_id
    with torch.no_grad():
        logits = tm.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    nll = [-float(logp[pos - 1, ids[pos]]) for pos in range(1, len(ids))]
    return math.exp(sum(nll) / len(nll))


def test_decoded_sequence_strips_the_markup(tiny_gemma3):
    tok = tiny_gemma3.tokenizer
    prompt = format_prompt(tok, "Tell me about cars.")
    text = decoded_sequence(tok, prompt, "Cars are good.")
    for marker in ("<bos>", "<start_of_turn>", "<end_of_turn>"):
        assert marker not in text
    assert text == tok.decode(
        tok(prompt + "Cars are good.", add_special_tokens=False)["input_ids"], skip_special_tokens=True
    )
    assert tok(text, add_special_tokens=False)["input_ids"] == [
        tok.convert_tokens_to_ids(w) for w in ["user", "\n", "tell", "me", "about", "cars", ".", "\n", "model", "\n",
                                               "cars", "are", "good", "."]
    ]  # fmt: skip
    assert decoded_sequence(tok, "", "Cars are good.") == "cars are good."  # Prompt: the generation alone
    assert decoded_sequence(tok, "", "") == ""


def test_sequence_perplexity_matches_upstream_by_hand(tm):
    tok = tm.tokenizer
    prompts = [format_prompt(tok, p) for p, _ in PAIRS]
    gens = [c for _, c in PAIRS]
    texts = [decoded_sequence(tok, p, g) for p, g in zip(prompts, gens, strict=True)]
    got = sequence_perplexities(tm, texts, batch_size=3)
    for p, g, value in zip(prompts, gens, got, strict=True):
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        g_ids = tok(g, add_special_tokens=False)["input_ids"]
        assert value == pytest.approx(_direct_sequence_perplexity(tm, p_ids, g_ids), rel=1e-4)
    # Prompt method: the decoded generation alone.
    alone = sequence_perplexities(tm, [decoded_sequence(tok, "", g) for g in gens], batch_size=2)
    for g, value in zip(gens, alone, strict=True):
        assert value == pytest.approx(
            _direct_sequence_perplexity(tm, [], tok(g, add_special_tokens=False)["input_ids"]), rel=1e-4
        )
    # Batched (right-padded, one forward per batch) = each sequence scored alone, unpadded.
    single = [sequence_perplexities(tm, [t], batch_size=1)[0] for t in texts]
    assert got == pytest.approx(single, rel=1e-5)
    # It is not the conditional perplexity (different span, different context).
    assert got != pytest.approx(perplexities(tm, prompts, gens, batch_size=3), rel=1e-3)


def test_sequence_perplexity_one_forward_per_batch_and_no_pad_scored(tiny_gemma2):
    tm = tiny_gemma2
    tok = tm.tokenizer
    texts = ["hello world", "the cat sat on the mat and looked at the sky", "hi", ""]
    n_scored = sum(max(len(tok(t, add_special_tokens=False)["input_ids"]), 0) for t in texts)
    calls, rows = [], []
    body_hook = tm.model.model.register_forward_hook(lambda m, a, kw, o: calls.append(1), with_kwargs=True)
    head_hook = tm.model.lm_head.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
    try:
        lps = sequence_logprobs(tm, texts, batch_size=4)
    finally:
        body_hook.remove()
        head_hook.remove()
    assert len(calls) == 1  # one forward for the whole batch
    assert sum(rows) == n_scored == sum(len(x) for x in lps)  # every token after BOS, never a pad position
    assert lps[3] == [] and math.isnan(sequence_perplexities(tm, [""], batch_size=1)[0])


def test_shared_prompt_positions_reach_the_head_once(tiny_gemma2):
    """Rows that share a prompt (every factor of one instruction) reuse its positions: same values, fewer head rows."""
    tm = tiny_gemma2
    tok = tm.tokenizer
    prompt = "the cat sat on the mat and"
    texts = [f"{prompt} looked at the sky", f"{prompt} slept", f"{prompt} looked away", "hello world"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    shared = len(tok(prompt, add_special_tokens=False)["input_ids"])
    alone = [sequence_logprobs(tm, [t], batch_size=1)[0] for t in texts]
    rows = []
    head_hook = tm.model.lm_head.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
    try:
        together = sequence_logprobs(tm, texts, batch_size=4)
    finally:
        head_hook.remove()
    for got, want in zip(together, alone, strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    # one head row per distinct prefix: the shared prompt's positions are predicted once instead of three times
    distinct = {tuple(x[: p + 1]) for x in ids for p in range(len(x))}
    assert sum(rows) == len(distinct) <= sum(len(x) for x in ids) - 2 * shared
