"""``training.append_eot_to_targets`` [D 2] on a tiny model: off = today's LM-objective tokens exactly; on = the
template's turn end (``<end_of_turn>\\n``) appended to every target, trained on, and keyed separately in the cache."""

from __future__ import annotations

import torch

from axbench_kedro.config.training import TrainingParams
from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.lm.chat import format_prompt, turn_end_suffix
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, _Resources, lm_targets, train_methods

LAYER = 1


def _opts(**kw) -> TrainOptions:
    return TrainOptions(setting="t", layer=LAYER, seed=42, **kw)


def test_default_is_off() -> None:
    assert TrainingParams().append_eot_to_targets is False
    assert _opts().append_eot_to_targets is False


def test_turn_end_is_gemmas_two_tokens(tm) -> None:
    tok = tm.tokenizer
    suffix = turn_end_suffix(tok)
    assert suffix == "<end_of_turn>\n"
    assert tok(suffix, add_special_tokens=False)["input_ids"] == [
        tok.convert_tokens_to_ids("<end_of_turn>"),
        6,
    ]
    assert lm_targets(tok, [" a b ", "c"], False) == [" a b ", "c"]  # untouched, untrimmed
    assert lm_targets(tok, [" a b ", "c"], True) == [" a b <end_of_turn>\n", "c<end_of_turn>\n"]


def test_off_keeps_todays_tokens_on_appends_the_turn_end(tm, concepts) -> None:
    tok = tm.tokenizer
    eot = tok(turn_end_suffix(tok), add_special_tokens=False)["input_ids"]
    c = concepts[0]
    off_res = _Resources(tm, _opts(), None)
    off_res.activations(c)  # the F-binary pass the LM rows are sliced from
    off = off_res.lm_rows(c, with_negatives=True)
    on_res = _Resources(tm, _opts(append_eot_to_targets=True), None)
    on_res.activations(c)
    on = on_res.lm_rows(c, with_negatives=True)
    for i, (inp, out) in enumerate(zip(c.inputs, c.outputs, strict=True)):
        today = tok(format_prompt(tok, inp) + out, add_special_tokens=False)["input_ids"]
        assert off.input_ids[i].tolist() == today  # off: exactly the tokens used before the switch
        assert on.input_ids[i].tolist() == today + eot  # on: + <end_of_turn> \n
        assert on.prompt_lengths[i] == off.prompt_lengths[i]
        # the hidden states of the shared prefix agree (sliced or recomputed)
        assert torch.allclose(on.hidden[i][: len(today)], off.hidden[i], atol=1e-5)
    # The appended tokens are targets: the logits at the last two positions before the end predict them.
    rows = list(range(len(on)))
    batch_on, batch_off = on.batch(rows), off.batch(rows)
    for b, i in enumerate(rows):
        n = int(on.input_ids[i].shape[0])
        assert batch_on.target[b, n - 3] and batch_on.target[b, n - 2] and not batch_on.target[b, n - 1]
        assert int(batch_on.target[b].sum()) == int(batch_off.target[b].sum()) + 2


def test_switch_is_part_of_the_cache_key_only_when_on(tm, concepts, tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    hp = {"SSV": {"epochs": 2}}

    def train(**opts):
        methods = [(get_method(n), hp.get(n)) for n in ("SSV", "DiffMean")]
        return train_methods(tm, concepts, methods, _opts(**opts), store=store)

    off, _ = train()
    on, s_on = train(append_eot_to_targets=True)
    cached = s_on.set_index("method")["cached_concepts"]
    assert cached["SSV"] == 0  # LM-objective: new targets, new key
    assert cached["DiffMean"] == 2  # not an LM-objective method: unchanged
    assert on["SSV"].meta["append_eot_to_targets"] is True and "append_eot_to_targets" not in off["SSV"].meta
    assert not torch.equal(on["SSV"].tensors["weight"], off["SSV"].tensors["weight"])
    _, s_off = train()  # off again: the earlier (pre-switch) keys, all served from the cache
    assert s_off.set_index("method").loc["SSV", "cached_concepts"] == 2
