"""Truncated forward: block-L output equals the full forward's hidden state, later blocks never run."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.errors import AxbenchConfigError
from axbench_kedro.lm.activations import encode, iter_hidden_states, truncated_hidden_states
from axbench_kedro.lm.chat import format_detect
from fixtures.tiny_models import make_tiny_target_model

TEXTS = [
    "Hi there, how are you today my good friend, and what is the weather like in the city?",
    "Yo",
    "Tell me a story about a dog and a cat that live in a big house near the river.",
]


@pytest.fixture(scope="module", params=["gemma3", "gemma2"])
def tm4(request):
    # 4 blocks: sliding-window (window 8) and full attention alternate; rows are longer than the window.
    return make_tiny_target_model(request.param, n_layers=4, seed=1)


def _formatted(tm):
    return [
        format_detect(tm.tokenizer, t, "Sure, here is an answer about cars and rental services.")
        for t in TEXTS
    ]


def test_matches_full_forward_with_right_padding(tm4):
    enc = encode(tm4, _formatted(tm4))
    assert (enc["attention_mask"] == 0).any()  # padding present
    assert enc["input_ids"].shape[1] > 8  # beyond the sliding window
    with torch.no_grad():
        full = tm4.model(**enc, output_hidden_states=True).hidden_states
        for layer in range(tm4.n_layers - 1):  # the last entry of hidden_states is after the final norm
            h = truncated_hidden_states(tm4.model, enc["input_ids"], enc["attention_mask"], layer)
            assert h.shape == full[layer + 1].shape
            torch.testing.assert_close(h, full[layer + 1], atol=1e-5, rtol=0)


def test_last_block_is_pre_norm_block_output(tm4):
    enc = encode(tm4, _formatted(tm4))
    last = tm4.n_layers - 1
    seen = {}
    handle = tm4.model.model.layers[last].register_forward_hook(lambda m, a, o: seen.setdefault("h", o))
    try:
        with torch.no_grad():
            tm4.model(**enc)
    finally:
        handle.remove()
    with torch.no_grad():
        h = truncated_hidden_states(tm4.model, enc["input_ids"], enc["attention_mask"], last)
    torch.testing.assert_close(h, seen["h"], atol=1e-5, rtol=0)


def test_later_blocks_and_head_never_run(tm4):
    before = len(tm4.model.model.layers[1]._forward_hooks)
    calls = []
    hooks = [
        blk.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
        for i, blk in enumerate(tm4.model.model.layers)
    ]
    hooks.append(tm4.model.lm_head.register_forward_hook(lambda m, a, o: calls.append("head")))
    hooks.append(tm4.model.model.norm.register_forward_hook(lambda m, a, o: calls.append("norm")))
    try:
        enc = encode(tm4, _formatted(tm4)[:1])
        with torch.no_grad():
            truncated_hidden_states(tm4.model, enc["input_ids"], enc["attention_mask"], 1)
    finally:
        for h in hooks:
            h.remove()
    assert calls == [0, 1]
    assert len(tm4.model.model.layers[1]._forward_hooks) == before  # stop hook removed


def test_layer_out_of_range(tiny_gemma3):
    enc = encode(tiny_gemma3, ["<bos>hello"])
    with pytest.raises(AxbenchConfigError, match=r"^layer: 2 is outside \[0, 2\)"):
        truncated_hidden_states(tiny_gemma3.model, enc["input_ids"], enc["attention_mask"], 2)
    with pytest.raises(AxbenchConfigError, match="^layer"):
        list(iter_hidden_states(tiny_gemma3, ["<bos>hi"], layer=-1, batch_size=2))


def test_iter_hidden_states_covers_rows_and_matches_single_rows(tiny_gemma2):
    texts = _formatted(tiny_gemma2) + ["<bos>hello world"]
    seen = []
    for rows, hidden, mask in iter_hidden_states(tiny_gemma2, texts, layer=1, batch_size=3):
        assert hidden.shape[:2] == mask.shape and hidden.shape[0] == len(rows)
        for b, row in enumerate(rows):
            enc = encode(tiny_gemma2, [texts[row]])
            with torch.no_grad():
                alone = truncated_hidden_states(
                    tiny_gemma2.model, enc["input_ids"], enc["attention_mask"], 1
                )[0]
            n = int(mask[b].sum())
            assert n == alone.shape[0]
            torch.testing.assert_close(hidden[b, :n], alone, atol=1e-5, rtol=0)
            seen.append(row)
    assert sorted(seen) == list(range(len(texts)))


def test_encode_truncates_and_pads_side(tiny_gemma3):
    enc = encode(tiny_gemma3, ["<bos>a b c d e f", "<bos>a"], padding_side="left", max_length=4)
    assert enc["input_ids"].shape == (2, 4)
    assert enc["attention_mask"][1].tolist() == [0, 0, 1, 1]
