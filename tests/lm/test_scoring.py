"""Perplexity of continuations: equals a full-forward reference; the LM head sees only the scored positions."""

from __future__ import annotations

import math

import pytest
import torch

from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.scoring import continuation_logprobs, perplexities

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
