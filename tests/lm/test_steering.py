"""pyvene addition steering: equals a hand-written hook, per-row vectors in mixed batches, hooks left intact."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.activations import encode
from axbench_kedro.lm.chat import format_prompt
from axbench_kedro.lm.generation import sample_generate
from axbench_kedro.lm.steering import (
    RowAdditionIntervention,
    intervenable_model,
    preserved_forward_hooks,
    steered_generate,
)

INSTRUCTIONS = [
    "Tell me a story about a dog.",
    "What is the capital of France and why is it a good city for a long trip?",
    "Hi",
    "Write python code for a loop that will sum a list of numbers.",
]


@pytest.fixture(params=["gemma3", "gemma2"])
def tm(request, tiny_gemma3, tiny_gemma2):
    return {"gemma3": tiny_gemma3, "gemma2": tiny_gemma2}[request.param]


def _prompts(tm):
    return [format_prompt(tm.tokenizer, i) for i in INSTRUCTIONS]


def _steering(tm, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.nn.functional.normalize(torch.randn(len(INSTRUCTIONS), tm.d_model, generator=g), dim=-1)
    magnitude, factors = 12.5, torch.tensor([2.0, 0.4, 5.0, 1.0])
    return w, magnitude * factors  # strength = m·f


def _hook_adding(deltas):
    def hook(_module, _args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h + deltas[:, None, :]
        return (h, *output[1:]) if isinstance(output, tuple) else h

    return hook


def test_pyvene_forward_equals_hand_written_hook(tm):
    layer = 0
    w, strengths = _steering(tm)
    deltas = strengths[:, None] * w
    enc = encode(tm, _prompts(tm), padding_side="left")
    handle = tm.model.model.layers[layer].register_forward_hook(_hook_adding(deltas))
    try:
        with torch.no_grad():
            expected = tm.model(**enc).logits
    finally:
        handle.remove()
    intervention = RowAdditionIntervention(tm.d_model)
    intervention.set_deltas(deltas)
    wrapped = intervenable_model(tm.model, layer, intervention)
    with torch.no_grad(), preserved_forward_hooks(tm.model):
        _, steered = wrapped(dict(enc), unit_locations=None)
        plain = tm.model(**enc).logits
    torch.testing.assert_close(steered.logits, expected, atol=1e-5, rtol=0)
    assert (steered.logits - plain).abs().max() > 1e-2  # the intervention does something


def test_pyvene_generation_steers_prompt_and_new_tokens_like_the_hook(tm):
    layer = 1
    w, strengths = _steering(tm, seed=1)
    deltas = strengths[:, None] * w
    enc = encode(tm, _prompts(tm), padding_side="left")
    config = GenerationConfig(max_new_tokens=6, do_sample=False, eos_token_id=[1, 5], pad_token_id=0)
    kwargs = dict(generation_config=config, output_scores=True, return_dict_in_generate=True)
    handle = tm.model.model.layers[layer].register_forward_hook(_hook_adding(deltas))
    try:
        with torch.no_grad():
            expected = tm.model.generate(**enc, **kwargs)
    finally:
        handle.remove()
    intervention = RowAdditionIntervention(tm.d_model)
    intervention.set_deltas(deltas)
    wrapped = intervenable_model(tm.model, layer, intervention)
    with torch.no_grad(), preserved_forward_hooks(tm.model):
        _, got = wrapped.generate(dict(enc), unit_locations=None, intervene_on_prompt=True, **kwargs)
    assert torch.equal(got.sequences, expected.sequences)
    for step_got, step_expected in zip(got.scores, expected.scores, strict=True):
        torch.testing.assert_close(step_got, step_expected, atol=1e-5, rtol=0)


def test_mixed_batch_equals_rows_one_by_one_greedy(tm):
    w, strengths = _steering(tm, seed=2)
    prompts = _prompts(tm)
    kw = dict(layer=1, max_new_tokens=8, seed=0, temperature=0.0)
    batched = steered_generate(tm, prompts, w, strengths, batch_size=4, **kw)
    for i in range(len(prompts)):
        alone = steered_generate(
            tm, prompts[i : i + 1], w[i : i + 1], strengths[i : i + 1], batch_size=1, **kw
        )
        assert alone[0] == batched[i]


def test_mixed_batch_equals_rows_one_by_one_sampled(tm):
    w, strengths = _steering(tm, seed=3)
    prompts = _prompts(tm)
    kw = dict(layer=0, max_new_tokens=8, seed=11)
    batched = steered_generate(tm, prompts, w, strengths, batch_size=3, **kw)
    singles = [
        steered_generate(
            tm, [prompts[i]], w[i : i + 1], strengths[i : i + 1], batch_size=1, row_keys=[i], **kw
        )[0]
        for i in range(len(prompts))
    ]
    assert batched == singles  # each row keeps its own random stream (key = its position in the big list)
    other = steered_generate(tm, [prompts[1]], w[1:2], strengths[1:2], batch_size=1, row_keys=[7], **kw)[0]
    assert other != batched[1]


def test_steering_changes_text_and_zero_strength_is_plain_sampling(tm):
    w, strengths = _steering(tm, seed=4)
    prompts = _prompts(tm)
    kw = dict(max_new_tokens=8, batch_size=4, seed=5)
    plain = sample_generate(tm, prompts, **kw)
    zero = steered_generate(tm, prompts, w, torch.zeros(len(prompts)), layer=1, **kw)
    assert zero == plain
    strong = steered_generate(tm, prompts, w, strengths * 20, layer=1, **kw)
    assert strong != plain


def test_hooks_survive_steering(tm):
    enc = encode(tm, _prompts(tm)[:2])
    with torch.no_grad():
        before = tm.model(**enc, output_hidden_states=True).hidden_states
    calls = []
    handle = tm.model.model.layers[0].register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        w, strengths = _steering(tm)
        steered_generate(tm, _prompts(tm), w, strengths, layer=0, max_new_tokens=2, batch_size=4, seed=0)
        n = len(calls)
        with torch.no_grad():
            after = tm.model(**enc, output_hidden_states=True).hidden_states
        assert len(calls) == n + 1  # our hook is still registered
    finally:
        handle.remove()
    assert after is not None and len(after) == len(before)
    for a, b in zip(after, before, strict=True):
        torch.testing.assert_close(a, b)


def test_bad_inputs(tiny_gemma3):
    prompts = _prompts(tiny_gemma3)
    w, strengths = _steering(tiny_gemma3)
    kw = dict(max_new_tokens=2, batch_size=2, seed=0)
    with pytest.raises(AxbenchConfigError, match="^layer"):
        steered_generate(tiny_gemma3, prompts, w, strengths, layer=2, **kw)
    with pytest.raises(ValueError, match="vectors must be"):
        steered_generate(tiny_gemma3, prompts, w[:, :10], strengths, layer=0, **kw)
    with pytest.raises(ValueError, match="strengths must have"):
        steered_generate(tiny_gemma3, prompts, w, strengths[:2], layer=0, **kw)


def test_intervention_adds_in_float32_for_bf16():
    iv = RowAdditionIntervention(4)
    iv.set_deltas(torch.tensor([[1e-3, 0.0, 0.0, 0.0]]))
    base = torch.full((1, 2, 4), 256.0, dtype=torch.bfloat16)
    out = iv(base)
    assert out.dtype == torch.bfloat16 and torch.equal(out, base)  # 256 + 1e-3 rounds back to 256 in bf16
    with pytest.raises(RuntimeError, match="row vectors"):
        iv(torch.zeros(2, 3, 4))
