"""Method training on a tiny random Gemma model: shared activations, LM-objective tail, caching."""

from __future__ import annotations

import pytest
import torch

from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.lm.activations import encode, truncated_hidden_states
from axbench_kedro.lm.chat import chat_prefix_length, format_binary, format_prompt
from axbench_kedro.methods.activations import compute_lm_rows
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.registry import get_method
from axbench_kedro.methods.trainer import TrainOptions, build_concepts, train_methods
from fixtures.tiny_models import make_tiny_target_model

from .synthetic_data import make_train_data

LAYER = 1


def _train(tm, concepts, names, hp=None, store=None, **opts):
    methods = [(get_method(n), (hp or {}).get(n)) for n in names]
    return train_methods(
        tm, concepts, methods, TrainOptions(setting="t", layer=LAYER, seed=42, **opts), store=store
    )


def test_diffmean_row_is_the_hand_computed_mean_difference(tm, concepts) -> None:
    arts, _ = _train(tm, concepts, ["DiffMean"])
    p = chat_prefix_length(tm.tokenizer)
    for i, c in enumerate(concepts):
        sums = {}
        for label, (ins, outs) in {
            1: (c.pos_inputs, c.pos_outputs),
            0: (c.neg_inputs, c.neg_outputs),
        }.items():
            toks = []
            for text in [format_binary(tm.tokenizer, a, b) for a, b in zip(ins, outs, strict=True)]:
                enc = encode(tm, [text])
                with torch.no_grad():
                    h = truncated_hidden_states(tm.model, enc["input_ids"], enc["attention_mask"], LAYER)[0]
                toks.append(h[p:])
            sums[label] = torch.cat(toks).double().mean(0)
        diff = sums[1] - sums[0]
        expected = (diff / diff.norm()).float()
        assert torch.allclose(arts["DiffMean"].tensors["weight"][i], expected, atol=1e-5)
    assert arts["DiffMean"].concept_ids == [0, 1]
    assert arts["DiffMean"].meta["layer"] == LAYER and arts["DiffMean"].meta["d"] == 64


def test_pca_lat_unit_norm_and_sign_handling(tm, concepts) -> None:
    arts, _ = _train(tm, concepts, ["PCA", "LAT"])
    oriented, _ = _train(tm, concepts, ["PCA"], hp={"PCA": {"orient_sign": True}})
    for name in ("PCA", "LAT"):
        norms = arts[name].tensors["weight"].norm(dim=1)
        assert torch.allclose(norms, torch.ones(2), atol=1e-5)
    w, w_or = arts["PCA"].tensors["weight"], oriented["PCA"].tensors["weight"]
    # orient_sign only flips: same axis, |cos| = 1
    assert torch.allclose((w * w_or).sum(1).abs(), torch.ones(2), atol=1e-5)
    # the axis is the top right-singular vector of the centred positive tokens (sign-free comparison)
    from axbench_kedro.methods.trainer import _Resources

    res = _Resources(tm, TrainOptions(setting="t", layer=LAYER, seed=42), None)
    pos = res.activations(concepts[0]).tokens_where(1).double()
    top = torch.linalg.svd(pos - pos.mean(0), full_matrices=False).Vh[0]
    assert abs(float(top.float() @ w[0])) == pytest.approx(1.0, abs=1e-4)


def test_tail_reproduces_the_full_forward(tm) -> None:
    for kind in ("gemma2", "gemma3"):
        model = make_tiny_target_model(kind, n_layers=3, hidden=64, seed=2)
        p = chat_prefix_length(model.tokenizer)
        prompts = [
            format_prompt(model.tokenizer, "tell me about the car"),
            format_prompt(model.tokenizer, "hi"),
        ]
        rows = compute_lm_rows(model, prompts, ["the rental car is good .", "yo"], LAYER, p, batch_size=2)
        batch = rows.batch([0, 1])
        tail = LMTail(model, LAYER)
        final = tail.final_hidden(batch.hidden, batch.attention_mask)
        with torch.no_grad():
            ref = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        mask = batch.attention_mask.bool()
        assert torch.allclose(tail.logits(final[mask]), ref[mask], atol=1e-4)
        assert tail.decoder.layers is not model.model.model.layers  # the shared model is never modified


def test_lm_rows_are_sliced_from_the_binary_pass(tm, concepts) -> None:
    from axbench_kedro.methods.trainer import _Resources

    res = _Resources(tm, TrainOptions(setting="t", layer=LAYER, seed=42), None)
    res.activations(concepts[0])
    reused = res.lm_rows(concepts[0], with_negatives=True)
    p = chat_prefix_length(tm.tokenizer)
    c = concepts[0]
    prompts = [format_prompt(tm.tokenizer, i) for i in c.inputs]
    fresh = compute_lm_rows(tm, prompts, list(c.outputs), LAYER, p, batch_size=4)
    for a, b in zip(reused.hidden, fresh.hidden, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert reused.prompt_lengths == fresh.prompt_lengths


def test_reft_r1_loss_decreases_and_w_stays_near_unit_norm(tm, concepts) -> None:
    hp = {"ReFT-r1": {"epochs": 6, "lr": 5e-2}}
    arts, _ = _train(tm, concepts, ["ReFT-r1"], hp=hp)
    art = arts["ReFT-r1"]
    for losses in art.meta["train_loss"]:
        assert len(losses) == 6 * 2  # 12 rows (6 positives + 6 pool negatives) in batches of 6
        assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    norms = art.tensors["weight"].norm(dim=1)
    assert torch.all((norms - 1).abs() < 0.2)


def test_ssv_trains_on_positives_only_and_lowers_its_loss(tm, concepts) -> None:
    arts, _ = _train(tm, concepts, ["SSV"], hp={"SSV": {"epochs": 6}})
    for losses in arts["SSV"].meta["train_loss"]:
        assert len(losses) == 6  # 6 positives, batch 6, 6 epochs
        assert losses[-1] < losses[0]


def test_probe_separates_its_training_rows(tm, concepts) -> None:
    arts, _ = _train(tm, concepts, ["Probe", "DiffMean"])
    assert all(len(x) == 24 for x in arts["Probe"].meta["train_loss"])  # 12 rows, batch 12, 24 epochs
    assert torch.all((arts["Probe"].tensors["weight"].norm(dim=1) - 1).abs() < 0.2)


def test_bow_scores_equal_sklearn_per_concept(tm, concepts) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    arts, _ = _train(tm, concepts, ["BoW"])
    art = arts["BoW"]
    texts = ["the rental car and the hotel", "a python loop and a variable", "the sun is low"]
    scores = get_method("BoW").score_texts(art, texts)
    for i, c in enumerate(concepts):
        train = [format_binary(tm.tokenizer, a, b) for a, b in zip(c.inputs, c.outputs, strict=True)]
        vec = CountVectorizer()
        clf = LogisticRegression(C=100, max_iter=1000).fit(vec.fit_transform(train), c.labels)
        ref = clf.predict_proba(vec.transform(texts))[:, 1]
        assert scores[:, i] == pytest.approx(ref, abs=1e-5)
    rows = art.rows_of([1, 0, 1])
    assert get_method("BoW").score_texts(art, texts, rows) == pytest.approx(
        scores[[0, 1, 2], [1, 0, 1]], abs=1e-9
    )


def test_rerun_is_served_from_the_cache(tm, concepts, tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    names = ["DiffMean", "SSV", "BoW", "Prompt"]
    first, s1 = _train(tm, concepts, names, store=store)
    second, s2 = _train(tm, concepts, names, store=store)
    assert s1.set_index("method").loc[names, "cached_concepts"].tolist() == [0, 0, 0, 0]
    assert s2.set_index("method").loc[names, "cached_concepts"].tolist() == [2, 2, 2, 2]
    for name in names:
        for key, value in first[name].tensors.items():
            assert torch.equal(value, second[name].tensors[key])
    assert first["BoW"].meta["vocabulary"] == second["BoW"].meta["vocabulary"]
    changed, s3 = _train(tm, concepts, ["SSV"], hp={"SSV": {"lr": 2e-2}}, store=store)
    assert s3.set_index("method").loc["SSV", "cached_concepts"] == 0
    assert not torch.equal(changed["SSV"].tensors["weight"], first["SSV"].tensors["weight"])


def test_bfloat16_tail_trains_and_is_keyed_separately(tm, concepts, tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    hp = {"ReFT-r1": {"epochs": 6, "lr": 5e-2}}
    arts, _ = _train(tm, concepts, ["ReFT-r1"], hp=hp, store=store, lm_objective_dtype=torch.bfloat16)
    for losses in arts["ReFT-r1"].meta["train_loss"]:
        assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert arts["ReFT-r1"].tensors["weight"].dtype == torch.float32
    _, summary = _train(tm, concepts, ["ReFT-r1"], hp=hp, store=store)  # float32 tail: not the bf16 entries
    assert summary.set_index("method").loc["ReFT-r1", "cached_concepts"] == 0


def test_concept_groups_train_exactly_like_one_concept_at_a_time(tm, concepts) -> None:
    names = ["ReFT-r1", "SSV", "DiffMean", "Probe"]
    one, _ = _train(tm, concepts, names, concept_group_size=1)
    two, _ = _train(tm, concepts, names, concept_group_size=2)
    for name in names:
        assert torch.allclose(one[name].tensors["weight"], two[name].tensors["weight"], atol=2e-5), name
    for a, b in zip(one["ReFT-r1"].meta["train_loss"], two["ReFT-r1"].meta["train_loss"], strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_group_training_handles_unequal_row_counts(tm) -> None:
    from .synthetic_data import make_concepts_meta as meta

    data = make_train_data(n_concepts=2, n_pos=6, n_pool=6)
    data = data.drop(index=data.index[(data["concept_id"] == 1)][:2])  # concept 1 keeps 4 positives
    uneven = build_concepts(data, meta(2))
    alone = [_train(tm, [c], ["ReFT-r1", "SSV"], concept_group_size=1)[0] for c in uneven]
    together, _ = _train(tm, uneven, ["ReFT-r1", "SSV"], concept_group_size=2)
    for name in ("ReFT-r1", "SSV"):
        for i in range(2):
            assert torch.allclose(
                together[name].tensors["weight"][i], alone[i][name].tensors["weight"][0], atol=2e-5
            )
