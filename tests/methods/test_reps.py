"""RePS, Lang. and BiPO (protocol §3.13): losses by hand (§10.17), the interventions (§10.18), and training on a tiny
random Gemma through the trainer (artefacts, reproducibility, the reference computed once, caching)."""

from __future__ import annotations

import math

import pytest
import torch

from axbench_kedro.datasets.method_artifacts import ArtifactStore
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.lm.chat import chat_prefix_length
from axbench_kedro.methods.lm_tail import LMTail
from axbench_kedro.methods.preference import compute_preference_rows
from axbench_kedro.methods.rank1 import seeded_generator
from axbench_kedro.methods.registry import default_methods, get_method
from axbench_kedro.methods.reps import (
    REPS_STEER_FACTORS,
    REPS_TRAIN_FACTORS,
    add_intervention,
    dpo_pair_loss,
    null_it_out,
    reps_pair_loss,
)
from axbench_kedro.methods.trainer import TrainOptions, build_preferences, train_methods

from .synthetic_data import make_preference_data, make_train_data

LAYER = 1
FAMILY = ["RePS", "Lang.", "BiPO"]


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ---- §10.17 / §10.18: the maths ----------------------------------------------------------------------------------


def test_reps_loss_matches_the_worked_example() -> None:
    # β = max(−9 − (−12), 1) = 3 → Δ = 3·(−10)/5 − (−20)/10 = −4 → L = log(1 + e⁴)
    loss = reps_pair_loss(_t(-10), _t(-20), _t(5), _t(10), _t(-12), _t(-9))
    assert float(loss) == pytest.approx(4.01815, abs=1e-5)
    # β = max(−9 − (−5), 1) = 1 (clamped) → Δ = 0 → ln 2
    loss = reps_pair_loss(_t(-10), _t(-20), _t(5), _t(10), _t(-5), _t(-9))
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    # the scaler multiplies Δref before the clamp: (3 · 0.5) = 1.5 → Δ = −3 + 2 = −1
    loss = reps_pair_loss(_t(-10), _t(-20), _t(5), _t(10), _t(-12), _t(-9), scaler=0.5)
    assert float(loss) == pytest.approx(math.log1p(math.e), abs=1e-6)


def test_reps_pairs_use_add_and_sub_sides_with_whole_sequence_lengths() -> None:
    # slots (slot-major [4, k], k = 1): y_c under Φ⁺, y under Φ⁺, y under Φ⁰, y_c under Φ⁰
    logp = _t(-10, -20, -8, -30).view(4, 1)
    length = _t(5, 10, 4, 10).view(4, 1)  # prompt + response tokens [D 8]
    ref_c, ref_m = -12.0, -9.0
    ref = _t(ref_c, ref_m, ref_m, ref_c).view(4, 1)
    losses = get_method("RePS")._pair_losses(logp, length, ref, get_method("RePS").params())
    add = math.log1p(math.exp(4))  # β = 3, Δ = −4 (the worked example)
    sub = math.log1p(math.exp(-1))  # win = y, lose = y_c: β = max(−12 + 9, 1) = 1, Δ = −8/4 + 30/10 = 1
    assert losses.tolist() == pytest.approx([add, sub], abs=1e-6)


def test_dpo_loss_by_hand() -> None:
    # (π_w − π_l) − (ref_w − ref_l) = (−10 + 12) − (−11 + 11) = 2 → −log σ(2)
    assert float(dpo_pair_loss(_t(-10), _t(-12), _t(-11), _t(-11))) == pytest.approx(
        math.log1p(math.exp(-2)), abs=1e-9
    )
    assert float(dpo_pair_loss(_t(-10), _t(-12), _t(-11), _t(-11), beta=0.5)) == pytest.approx(
        math.log1p(math.exp(-1)), abs=1e-9
    )
    losses = get_method("BiPO")._pair_losses(
        _t(-10, -12, -7, -9).view(4, 1),
        _t(1, 1, 1, 1).view(4, 1),
        _t(-11, -11, -8, -8).view(4, 1),
        get_method("BiPO").params(),
    )
    assert losses.tolist() == pytest.approx([math.log1p(math.exp(-2))] * 2, abs=1e-9)


def test_null_it_out_and_add_follow_the_worked_example() -> None:
    v = torch.tensor([[2.0, 0.0]])
    h = torch.tensor([[[3.0, 1.0], [-3.0, 1.0]]])
    mask = torch.ones(1, 2)
    out = null_it_out(h, v, torch.zeros(1), mask)
    assert out.tolist() == [[[0.0, 1.0], [-3.0, 1.0]]]
    added = add_intervention(h, v, torch.tensor([0.5]), torch.tensor([4.0]), mask)
    assert torch.allclose(added, h + 4.5 * v[:, None, :])
    assert torch.equal(add_intervention(h, v, torch.tensor([0.5]), torch.tensor([4.0]), torch.zeros(1, 2)), h)


def test_null_it_out_removes_the_positive_component_exactly() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 20, 16, generator=g, dtype=torch.float64)
    v = torch.randn(3, 16, generator=g, dtype=torch.float64)
    b = torch.tensor([0.0, 0.7, -0.4], dtype=torch.float64)
    pre = torch.einsum("btd,bd->bt", h, v) + b[:, None]
    after = (
        torch.einsum("btd,bd->bt", null_it_out(h, v, b, torch.ones(3, 20, dtype=torch.float64)), v)
        + b[:, None]
    )
    assert (pre > 0).any() and (pre <= 0).any()
    assert torch.all(after[pre > 0].abs() < 1e-10)  # the positive part is gone: h·v + b = 0
    assert torch.allclose(after[pre <= 0], pre[pre <= 0])  # the rest is untouched


# ---- the training step on the tiny model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_frame():
    return make_train_data(n_concepts=2, n_pos=6, n_pool=6)


@pytest.fixture(scope="module")
def preferences(train_frame, concepts):
    return build_preferences(make_preference_data(train_frame), concepts)


@pytest.fixture(scope="module")
def rows(tm, preferences):
    return compute_preference_rows(tm, preferences[0], LAYER, chat_prefix_length(tm.tokenizer), batch_size=4)


def _params(v: torch.Tensor, b: torch.Tensor) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    return torch.nn.Parameter(v.clone()), torch.nn.Parameter(b.clone())


def test_reps_step_loss_equals_the_hand_computation(tm, rows) -> None:
    tail = LMTail(tm, LAYER)
    method, hp = get_method("RePS"), get_method("RePS").params()
    g = torch.Generator().manual_seed(3)
    v, b = _params(torch.randn(1, 64, generator=g) * 0.05, torch.tensor([0.3]))
    pick = [4, 1, 2]
    loss = method._step_loss(
        [rows], [rows.reference_logps(tail)], [pick], [seeded_generator(7)], v, b, tail, hp
    )

    gen = seeded_generator(7)  # the same draws: the winner's factors, then the loser's
    grid = torch.tensor(REPS_TRAIN_FACTORS)
    s_win, s_lose = (grid[torch.randint(len(grid), (3,), generator=gen)] for _ in range(2))
    ref_c, ref_m = (r[pick] for r in rows.reference_logps(tail))

    def logp_and_len(part, mode, s):
        batch = part.subset(pick).batch(range(3))
        h, mask = batch.hidden.float(), batch.intervene.float()
        vv, bb = v.expand(3, -1), b.expand(3)
        h2 = add_intervention(h, vv, bb, s, mask) if mode == "add" else null_it_out(h, vv, bb, mask)
        return tail.sequence_logps(h2, batch), batch.attention_mask.sum(1).float()

    lc_add, n_c = logp_and_len(rows.concept, "add", s_win)
    lm_add, n_m = logp_and_len(rows.model, "add", s_lose)
    lm_null, _ = logp_and_len(rows.model, "null", None)
    lc_null, _ = logp_and_len(rows.concept, "null", None)
    add = torch.nn.functional.softplus(-((ref_m - ref_c).clamp_min(1) * lc_add / n_c - lm_add / n_m))
    sub = torch.nn.functional.softplus(-((ref_c - ref_m).clamp_min(1) * lm_null / n_m - lc_null / n_c))
    assert float(loss[0].detach()) == pytest.approx(float(torch.cat([add, sub]).mean().detach()), rel=1e-5)
    assert torch.all(n_c == torch.tensor([len(rows.concept.input_ids[i]) for i in pick]))


def test_lang_loss_is_the_lm_loss_under_the_sampled_factor(tm, rows) -> None:
    tail = LMTail(tm, LAYER)
    method, hp = get_method("Lang."), get_method("Lang.").params()
    v, b = _params(torch.full((1, 64), 0.01), torch.tensor([0.2]))
    pick = [0, 3, 5]
    loss = method._step_loss([rows], None, [pick], [seeded_generator(11)], v, b, tail, hp)
    grid = torch.tensor(REPS_TRAIN_FACTORS)
    s = grid[torch.randint(len(grid), (3,), generator=seeded_generator(11))]
    batch = rows.concept.subset(pick).batch(range(3))
    h = add_intervention(batch.hidden.float(), v.expand(3, -1), b.expand(3), s, batch.intervene.float())
    assert float(loss[0].detach()) == pytest.approx(float(tail.response_loss(h, batch).detach()), rel=1e-5)


def test_bipo_step_uses_factor_plus_and_minus_one(tm, rows) -> None:
    tail = LMTail(tm, LAYER)
    method, hp = get_method("BiPO"), get_method("BiPO").params()
    v, b = _params(torch.full((1, 64), 0.02), torch.tensor([0.0]))
    pick = [2, 0]
    loss = method._step_loss(
        [rows], [rows.reference_logps(tail)], [pick], [seeded_generator(1)], v, b, tail, hp
    )
    ref_c, ref_m = (r[pick] for r in rows.reference_logps(tail))

    def logp(part, f):
        batch = part.subset(pick).batch(range(2))
        h = add_intervention(
            batch.hidden.float(), v.expand(2, -1), b.expand(2), torch.full((2,), f), batch.intervene.float()
        )
        return tail.sequence_logps(h, batch)

    add = dpo_pair_loss(logp(rows.concept, 1.0), logp(rows.model, 1.0), ref_c, ref_m)
    sub = dpo_pair_loss(logp(rows.model, -1.0), logp(rows.concept, -1.0), ref_m, ref_c)
    assert float(loss[0].detach()) == pytest.approx(float(torch.cat([add, sub]).mean().detach()), rel=1e-5)


# ---- through the trainer -----------------------------------------------------------------------------------------


def _train(tm, concepts, preferences, names, hp=None, store=None, seed=42):
    methods = [(get_method(n), (hp or {}).get(n)) for n in names]
    return train_methods(
        tm,
        concepts,
        methods,
        TrainOptions(setting="t", layer=LAYER, seed=seed),
        store=store,
        preferences=preferences,
    )


def test_family_trains_rank1_artifacts_reproducibly(tm, concepts, preferences, monkeypatch) -> None:
    reference_passes = []
    original = LMTail.token_losses

    def counting(self, hidden, batch):
        if not torch.is_grad_enabled():
            reference_passes.append(hidden.shape[0])
        return original(self, hidden, batch)

    monkeypatch.setattr(LMTail, "token_losses", counting)
    arts, summary = _train(tm, concepts, preferences, FAMILY)
    # reference log-likelihoods: once per concept and side (6 pairs, one pass each), shared by RePS and BiPO,
    # never recomputed over the 18 + 12 epochs
    assert reference_passes == [6, 6, 6, 6]
    steps = {
        "RePS": 18,
        "Lang.": 6,
        "BiPO": 12,
    }  # 6 pairs, batch 6; Lang.: 6 epochs, accumulation 2 over 1 batch
    for name in FAMILY:
        art = arts[name]
        assert art.ok and art.tensors["weight"].shape == (2, 64) and art.tensors["bias"].shape == (2,)
        assert art.concept_ids == [0, 1] and art.meta["hyperparameters"] == get_method(
            name
        ).params().model_dump(mode="json")
        for losses in art.meta["train_loss"]:
            assert len(losses) == steps[name]
            assert sum(losses[-3:]) < sum(losses[:3])
    assert summary.set_index("method").loc["(shared) preference_cache", "status"] == "shared"
    again, _ = _train(tm, concepts, preferences, FAMILY)
    other, _ = _train(tm, concepts, preferences, ["RePS"], seed=7)
    for name in FAMILY:
        for key in ("weight", "bias"):
            assert torch.equal(arts[name].tensors[key], again[name].tensors[key])
    assert not torch.equal(arts["RePS"].tensors["weight"], other["RePS"].tensors["weight"])


def test_dropout_and_bias_are_trained(tm, concepts, preferences) -> None:
    hp = {"RePS": {"dropout": 0.1, "epochs": 2}}
    arts, _ = _train(tm, concepts, preferences, ["RePS"], hp=hp)
    plain, _ = _train(tm, concepts, preferences, ["RePS"], hp={"RePS": {"epochs": 2}})
    assert not torch.equal(arts["RePS"].tensors["weight"], plain["RePS"].tensors["weight"])
    assert torch.all(arts["RePS"].tensors["bias"] != 0)


def test_capabilities_detection_with_bias_and_unit_steering(tm, concepts, preferences) -> None:
    assert [n for n in default_methods() if n in FAMILY] == FAMILY
    arts, _ = _train(tm, concepts, preferences, ["RePS"], hp={"RePS": {"epochs": 1}})
    art = arts["RePS"]
    for name in FAMILY:
        m = get_method(name)
        assert m.requires == frozenset({"preference"}) and m.steers and not m.factor_free
        assert (m.detection_kind, m.token_activation, m.magnitude_source) == ("activation", "relu", "unit")
    enc = get_method("RePS").detection_encoder(art)
    h = torch.randn(5, 64)
    expected = torch.relu(h @ art.tensors["weight"].T + art.tensors["bias"])
    assert torch.allclose(enc.apply(h @ enc.weight.T + enc.bias), expected)
    assert torch.equal(get_method("RePS").steering_vectors(art), art.tensors["weight"])
    assert REPS_STEER_FACTORS == (2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30, 40, 50)


def test_cache_is_keyed_by_the_preference_pairs(tm, concepts, preferences, train_frame, tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    hp = {"RePS": {"epochs": 1}, "BiPO": {"epochs": 1}}
    _, s1 = _train(tm, concepts, preferences, ["RePS", "BiPO", "DiffMean"], hp=hp, store=store)
    _, s2 = _train(tm, concepts, preferences, ["RePS", "BiPO", "DiffMean"], hp=hp, store=store)
    assert s1.set_index("method").loc[["RePS", "BiPO"], "cached_concepts"].tolist() == [0, 0]
    assert s2.set_index("method").loc[["RePS", "BiPO", "DiffMean"], "cached_concepts"].tolist() == [2, 2, 2]
    changed = make_preference_data(train_frame, seed=9)  # other losing answers
    _, s3 = _train(
        tm, concepts, build_preferences(changed, concepts), ["RePS", "DiffMean"], hp=hp, store=store
    )
    assert s3.set_index("method").loc[["RePS", "DiffMean"], "cached_concepts"].tolist() == [0, 2]


def test_missing_pairs_are_named(tm, concepts, preferences, train_frame) -> None:
    with pytest.raises(AxbenchDataError, match=r"concept_id\(s\) \[0, 1\] \(needed by RePS\)"):
        _train(tm, concepts, None, ["RePS"])
    only_one = make_preference_data(train_frame)
    only_one = only_one[only_one["concept_id"] == 0]
    with pytest.raises(AxbenchDataError, match="preference_data: concept_id 1 has no preference pairs"):
        build_preferences(only_one, concepts)
    with pytest.raises(AxbenchDataError, match="preference_data: missing column"):
        build_preferences(only_one.drop(columns=["losing_output"]), concepts)
