"""Greedy and seeded sampling: left padding, input order, stop tokens, reproducibility, sampler maths."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.lm import generation
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.generation import (
    SeededSampler,
    generate_greedy,
    row_seed,
    sample_generate,
    shared_prefix_length,
)

INSTRUCTIONS = [
    "Hi",
    "Tell me a story about a dog and a cat.",
    "What is two plus two?",
    "Write a short song.",
]


@pytest.fixture(params=["gemma3", "gemma2"])
def tm(request, tiny_gemma3, tiny_gemma2):
    return {"gemma3": tiny_gemma3, "gemma2": tiny_gemma2}[request.param]


def _prompts(tm):
    return [format_prompt(tm.tokenizer, i) for i in INSTRUCTIONS]


def _reference_greedy(tm, prompt, n):
    """Token-by-token argmax with full forwards, no cache, no padding."""
    ids = tm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(tm.model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            if nxt in (1, 5):
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def test_greedy_matches_reference_loop_with_left_padding(tm):
    prompts = _prompts(tm)
    got = generate_greedy(tm, prompts, max_new_tokens=6, batch_size=4)
    for prompt, gen in zip(prompts, got, strict=True):
        ref = _reference_greedy(tm, prompt, 6)
        assert gen.n_new_tokens == len(ref)
        assert gen.text == tm.tokenizer.decode(ref, skip_special_tokens=True)


def test_sampling_is_seeded_and_batch_independent(tm):
    prompts = _prompts(tm)
    kw = dict(max_new_tokens=10, seed=3)
    a = sample_generate(tm, prompts, batch_size=4, **kw)
    b = sample_generate(tm, prompts, batch_size=4, **kw)
    c = sample_generate(tm, prompts, batch_size=1, **kw)
    d = sample_generate(tm, prompts, batch_size=4, max_new_tokens=10, seed=4)
    assert a == b == c
    assert a != d
    assert all(1 <= g.n_new_tokens <= 10 for g in a)


def test_global_rng_untouched(tiny_gemma3):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sample_generate(tiny_gemma3, _prompts(tiny_gemma3), max_new_tokens=3, batch_size=2, seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("stop", ["<end_of_turn>", "<eos>"])
def test_stops_at_turn_end_or_eos(tiny_gemma3, stop):
    tok = tiny_gemma3.tokenizer
    stop_id = tok.convert_tokens_to_ids(stop)

    def force_stop_after_two(_m, _a, logits):
        if force_stop_after_two.calls >= 2:  # prompt pass + 1 step, then the stop token wins
            logits = logits.clone()
            logits[..., stop_id] += 1e4
        force_stop_after_two.calls += 1
        return logits

    force_stop_after_two.calls = 0
    handle = tiny_gemma3.model.lm_head.register_forward_hook(force_stop_after_two)
    try:
        gens = sample_generate(
            tiny_gemma3, _prompts(tiny_gemma3)[:1], max_new_tokens=20, batch_size=1, seed=0
        )
    finally:
        handle.remove()
    assert gens[0].n_new_tokens == 3  # two tokens, then the stop token (counted)
    assert stop not in gens[0].text and len(gens[0].text.split()) >= 1


def test_results_in_input_order(tiny_gemma2):
    prompts = _prompts(tiny_gemma2)
    together = generate_greedy(tiny_gemma2, prompts, max_new_tokens=4, batch_size=3)
    reversed_ = generate_greedy(tiny_gemma2, prompts[::-1], max_new_tokens=4, batch_size=3)
    assert together == reversed_[::-1]
    assert generate_greedy(tiny_gemma2, [], max_new_tokens=4, batch_size=3) == []


def test_bad_arguments(tiny_gemma2):
    with pytest.raises(ValueError, match="batch_size"):
        generate_greedy(tiny_gemma2, ["<bos>hi"], max_new_tokens=4, batch_size=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_greedy(tiny_gemma2, ["<bos>hi"], max_new_tokens=0, batch_size=1)
    with pytest.raises(ValueError, match="row_keys"):
        sample_generate(tiny_gemma2, ["<bos>hi"], max_new_tokens=1, batch_size=1, seed=0, row_keys=[1, 2])


def _draw(logits, n, **kw):
    gens = [torch.Generator().manual_seed(row_seed(0, i)) for i in range(n)]
    sampler = SeededSampler(gens, **kw)
    scores = sampler(None, logits.expand(n, -1).clone())
    assert torch.isfinite(scores).sum(dim=-1).eq(1).all()  # one-hot: greedy picks the sample
    return scores.argmax(-1)


def test_sampler_matches_softmax_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    picks = _draw(logits, 4000, temperature=1.0, top_k=0, top_p=1.0)
    freq = torch.bincount(picks, minlength=5).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.03, rtol=0)
    hot = _draw(logits, 4000, temperature=0.5, top_k=0, top_p=1.0)
    freq = torch.bincount(hot, minlength=5).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0] / 0.5, -1), atol=0.03, rtol=0)


def test_sampler_top_k_and_top_p_support():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    assert set(_draw(logits, 500, temperature=1.0, top_k=2, top_p=1.0).tolist()) == {0, 1}
    assert set(_draw(logits, 200, temperature=1.0, top_k=1, top_p=1.0).tolist()) == {0}
    # softmax ≈ [0.53, 0.20, 0.07, 0.03, 0.12]: top-p 0.6 keeps {0, 1} (0.53 < 0.6, then 0.73 ≥ 0.6)
    assert set(_draw(logits, 500, temperature=1.0, top_k=50, top_p=0.6).tolist()) == {0, 1}
    assert set(_draw(logits, 200, temperature=1.0, top_k=0, top_p=0.01).tolist()) == {0}
    with pytest.raises(ValueError):
        SeededSampler([], temperature=0.0, top_k=50, top_p=1.0)


def _full_gumbel_draw(generators, scores, temperature):
    """The draw written out over the whole row: every entry's Gumbel noise, then argmax (the reference)."""
    logits = scores.float() / temperature
    noise = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in generators])
    return torch.argmax(logits - torch.log(-torch.log(noise.clamp_(min=1e-20, max=1.0 - 1e-7))), dim=-1)


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.0, 4.0])
def test_pruned_gumbel_draw_equals_the_full_draw(temperature):
    vocab, n = 20_000, 16  # above the pruning threshold
    seeds = [row_seed(3, i) for i in range(n)]
    sampler = SeededSampler(
        [torch.Generator().manual_seed(s) for s in seeds], temperature, top_k=0, top_p=1.0
    )
    reference = [torch.Generator().manual_seed(s) for s in seeds]
    base = torch.Generator().manual_seed(11)
    for step in range(4):  # successive steps keep drawing each row's stream in step with the reference
        scores = torch.randn(n, vocab, generator=base) * 3
        scores[0] = 0.0  # a flat row: every entry can win
        scores[1, :50] = 9.0  # a tied plateau at the top
        expected = _full_gumbel_draw(reference, scores, temperature)
        got = sampler(None, scores.clone())
        assert torch.equal(got.argmax(-1), expected), step
        assert torch.isfinite(got).sum(-1).eq(1).all()


def test_row_seed_is_stable_and_distinct():
    assert row_seed(0, 1) == row_seed(0, 1)
    assert len({row_seed(s, r) for s in range(5) for r in range(50)}) == 250


FEW_SHOT = "tell me a story about a dog and a cat . " * 6  # one template head every row repeats (~60 tokens)


@pytest.fixture(params=["gemma3", "gemma2"])
def wide_window_tm(request):
    from fixtures.tiny_models import make_tiny_target_model

    return make_tiny_target_model(request.param, sliding_window=512, seed=5)


def test_shared_prefix_length() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 5]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # every row keeps one token of its own
    assert shared_prefix_length([[7, 1], [8, 1]]) == 0 and shared_prefix_length([]) == 0


def test_a_shared_prefix_runs_once_and_changes_no_token(wide_window_tm, monkeypatch) -> None:
    tm = wide_window_tm
    prompts = [format_prompt(tm.tokenizer, FEW_SHOT + i) for i in INSTRUCTIONS]
    taken = []
    original = generation._shared_prefix_inputs

    def spy(*args, **kwargs):
        inputs = original(*args, **kwargs)
        taken.append(inputs is not None)
        return inputs

    monkeypatch.setattr(generation, "_shared_prefix_inputs", spy)
    greedy = generate_greedy(tm, prompts, max_new_tokens=6, batch_size=4)
    sampled = sample_generate(tm, prompts, max_new_tokens=8, batch_size=4, seed=3, temperature=0.7)
    assert taken == [True, True]  # both batches ran the template once
    for prompt, gen in zip(prompts, greedy, strict=True):  # the no-cache, no-padding reference loop
        ref = _reference_greedy(tm, prompt, 6)
        assert gen.n_new_tokens == len(ref) and gen.text == tm.tokenizer.decode(ref, skip_special_tokens=True)
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**9)  # every row prefills its whole prompt
    assert sample_generate(tm, prompts, max_new_tokens=8, batch_size=4, seed=3, temperature=0.7) == sampled
    assert taken[2:] == [False]


def test_no_shared_prefix_where_a_sliding_window_could_be_outgrown(tiny_gemma3) -> None:
    tm = tiny_gemma3  # window 8: the prompts alone are longer
    enc = generation.encode(
        tm, [format_prompt(tm.tokenizer, FEW_SHOT + i) for i in INSTRUCTIONS], "left", None
    )
    assert generation._shared_prefix_inputs(tm, enc["input_ids"], enc["attention_mask"], 4) is None
