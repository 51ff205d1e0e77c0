"""Attacks on rule concepts (protocol §6): settings, attack prompts per method, per-concept factors in the steering
plans, the rule judge in place of J1, attack scores and the attack summary, and the empty paths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from axbench_kedro.config.common import RunSettings
from axbench_kedro.config.suppression import AttackParams, SuppressionParams
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.judges.base import JUDGEMENT_COLUMNS, Judge
from axbench_kedro.judges.rule_concepts import rule_description
from axbench_kedro.judges.rule_judge import RuleJudge
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.steering.plans import MethodPlan, plan_units
from axbench_kedro.suppression.attacks import (
    ATTACK_PROMPT_COLUMNS,
    ATTACK_SCORE_COLUMNS,
    ATTACK_SUMMARY_COLUMNS,
    attack_label,
    attack_prompts_frame,
    attack_scores_frame,
    attack_settings,
    attack_summary_frame,
    attacked_rules,
)
from axbench_kedro.suppression.judging import ATTACK_JUDGEMENT_COLUMNS, judge_with_rules, rule_concepts
from axbench_kedro.suppression.prompts import UNSAFE_PREAMBLE, suppression_prompt_frame
from axbench_kedro.suppression.scoring import suppression_generation_scores

CONCEPTS = pd.DataFrame(
    {
        "concept_id": [3, 1],
        "concept": ["rental services", "capital letters"],
        "rule_id": [None, "all_capital"],
    }
)
POOL = pd.DataFrame({"instruction": [f"Instruction number {i}." for i in range(30)]})


def fmt(text: str) -> str:
    return f"<bos>[{text}]"


def _texts(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "concept_id": cid,
                "input_id": i,
                "rewritten": f"rewritten {cid}/{i}",
                "suppress_original": f"avoid {cid}",
                "suppress_rewrite": "",
            }
            for cid in (1, 3)
            for i in range(n)
        ]
    )


def _examples(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rule": "all_capital",
            "example_id": range(n),
            "topic": "x",
            "question": [f"q{i}" for i in range(n)],
            "answer": [f"A{i}" for i in range(n)],
        }
    )


# ---- settings, rules ---------------------------------------------------------------------------------------------
def test_settings_labels_and_attacked_rules() -> None:
    assert attack_settings([1, 5], ["append", "prepend"]) == [
        ("multishot", 1),
        ("multishot", 5),
        ("append", 0),
        ("prepend", 0),
    ]
    assert attack_settings([], []) == []
    assert [attack_label(a, n) for a, n in [("none", 0), ("multishot", 5), ("append", 0)]] == [
        "no attack",
        "5-shot",
        "overwrite (append)",
    ]
    rules = rule_concepts(CONCEPTS)
    assert rules == {1: "all_capital"}
    assert attacked_rules({1: "all_capital", 4: "korean"}, ["korean"]) == {1: "all_capital"}
    assert rule_concepts(CONCEPTS.drop(columns=["rule_id"])) == {}
    with pytest.raises(AxbenchDataError, match="unknown rule 'capitals' at concept_id 1"):
        rule_concepts(CONCEPTS.assign(rule_id=[None, "capitals"]))


def test_attack_params_validate_lists() -> None:
    assert AttackParams(n_shots=[], overwrite=[]).n_shots == []
    with pytest.raises(ValueError, match="ascending"):
        AttackParams(n_shots=[5, 1])
    with pytest.raises(ValueError, match="0..200"):
        AttackParams(n_shots=[300])
    with pytest.raises(ValueError):
        AttackParams(overwrite=["sideways"])
    with pytest.raises(ValueError, match="unknown rule 'capitals'"):
        AttackParams(excluded_rules=["capitals"])
    assert SuppressionParams().rule_judge.min_words == 800


# ---- prompts -----------------------------------------------------------------------------------------------------
def test_attack_prompts_per_method_and_setting_at_the_selected_factor() -> None:
    prompts = suppression_prompt_frame(
        CONCEPTS, POOL, _texts(), None, n_instructions=4, factors=[0.2, 1.0], formatter=fmt
    )
    selection = pd.DataFrame(
        {
            "concept_id": [1, 3, 1, 3],
            "method": ["DiffMean", "DiffMean", "Prompt", "Prompt"],
            "best_factor": [-0.2, -1.0, np.nan, np.nan],
        }
    )
    out = attack_prompts_frame(
        prompts,
        selection,
        _examples(),
        {1: "all_capital"},
        attack_settings([2], ["append"]),
        None,
        formatter=fmt,
    )
    assert list(out.columns) == ATTACK_PROMPT_COLUMNS
    assert len(out) == 2 * 2 * 4  # methods × settings × instructions of the one rule concept
    assert set(out["concept_id"]) == {1}
    dm = out[out["method"] == "DiffMean"]
    assert set(dm["factor"]) == {-0.2}
    assert out.loc[out["method"] == "Prompt", "factor"].isna().all()  # factor-free: no factor
    shots = out[(out["attack"] == "multishot") & (out["method"] == "DiffMean")].iloc[0]
    assert shots["n_shot"] == 2 and shots["dataset_name"] == "AttackMultiShot"
    assert shots["steered_prompt"] == (
        "Question: q0\nAnswer: A0\n\nQuestion: q1\nAnswer: A1\n\nQuestion: rewritten 1/0\nAnswer:"
    )
    assert shots["steered_input"] == fmt(
        "avoid 1\n\n" + shots["steered_prompt"]
    )  # the defence meets the attack
    over = out[out["attack"] == "append"].iloc[0]
    assert over["n_shot"] == 0 and over["dataset_name"] == "AttackOverwrite"
    assert over["steered_prompt"].startswith("Question:rewritten 1/0\n\n" + UNSAFE_PREAMBLE)
    assert rule_description("all_capital") in over["steered_prompt"]  # the order names the rule in words
    empty = attack_prompts_frame(
        prompts, selection, _examples(), {}, attack_settings([2], []), None, formatter=fmt
    )
    assert empty.empty and list(empty.columns) == ATTACK_PROMPT_COLUMNS
    none = attack_prompts_frame(prompts, selection, _examples(), {1: "all_capital"}, [], None, formatter=fmt)
    assert none.empty
    # A rule whose R4 replies parsed into too few examples leaves only that shot count out (logged), never the run.
    few = _examples().head(1)
    short = attack_prompts_frame(
        prompts, selection, few, {1: "all_capital"}, attack_settings([1, 2], ["append"]), None, formatter=fmt
    )
    assert sorted(set(zip(short["attack"], short["n_shot"], strict=True))) == [
        ("append", 0),
        ("multishot", 1),
    ]
    only_short = attack_prompts_frame(
        prompts, selection, few, {1: "all_capital"}, attack_settings([2], []), None, formatter=fmt
    )
    assert only_short.empty and list(only_short.columns) == ATTACK_PROMPT_COLUMNS


# ---- per-concept factors in the steering plan --------------------------------------------------------------------
def test_plan_units_use_per_concept_factors() -> None:
    import torch

    prompts = pd.DataFrame(
        {
            "dataset_name": "AttackOverwrite",
            "concept_id": [0, 0, 1],
            "input_id": [0, 1, 0],
            "input": ["p0", "p1", "p2"],
            "steered_input": ["s0", "s1", "s2"],
        }
    )
    plan = MethodPlan(
        "DiffMean",
        False,
        [-2.0, -1.0],
        torch.eye(2),
        {0: 0, 1: 1},
        {0: 3.0, 1: 2.0},
        concept_factors={0: [-1.0]},
    )
    units, rows = plan_units(plan, prompts, replicates=1)
    # concept 0 at its own factor (one unit per instruction), concept 1 on the plan's grid
    assert rows["factor"].tolist() == [-1.0, -1.0, -2.0, -1.0]
    assert rows["strength"].tolist() == [-3.0, -3.0, -4.0, -2.0]  # m·f
    assert len(units) == 4 and units["prompt"].tolist() == ["p0", "p1", "p2", "p2"]
    free = MethodPlan("Prompt", True, [-2.0, -1.0], concept_factors={0: [float("nan")], 1: [float("nan")]})
    units, rows = plan_units(free, prompts, replicates=1)
    assert len(units) == 3 and len(rows) == 3 and rows["factor"].isna().all()
    assert units["prompt"].tolist() == ["s0", "s1", "s2"]
    plain = MethodPlan("DiffMean", False, [-2.0, -1.0], torch.eye(2), {0: 0, 1: 1}, {0: 3.0, 1: 2.0})
    assert (
        len(plan_units(plain, prompts, replicates=1)[1]) == 6
    )  # no per-concept factors: the grid everywhere


# ---- rule judge in place of J1 -----------------------------------------------------------------------------------
class _StubJudge(Judge):
    """Rates concept 1, instruction 2, fluency 2 (and counts what it was asked)."""

    kind = "stub"
    parse_rule = "stub-v1"

    def __init__(self) -> None:
        super().__init__(seed=7)
        self.asked: list[tuple[str, ...]] = []

    @classmethod
    def from_config(cls, config, resources):  # pragma: no cover - not built from config here
        return cls()

    @property
    def model_name(self) -> str:
        return "stub"

    def rate(self, items: pd.DataFrame) -> pd.DataFrame:
        self.asked.append(tuple(self.criteria))
        value = {"concept": 1.0, "instruction": 2.0, "fluency": 2.0}
        return pd.DataFrame(
            [
                {
                    "item": int(i),
                    "criterion": c,
                    "rating": value[c],
                    "parse_ok": True,
                    "raw_completion": "",
                    "template_sha256": "x",
                }
                for i in items["item"]
                for c in self.criteria
            ]
        )


def _generations() -> tuple[pd.DataFrame, pd.DataFrame]:
    gens = pd.DataFrame(
        {
            "dataset_name": "AlpacaEvalSuppress",
            "concept_id": [1, 1, 3],
            "input_id": [0, 1, 0],
            "factor": -1.0,
            "method": "DiffMean",
            "steered_generation": ["ALL OF THIS IS SHOUTED", "mostly quiet text HERE", "about rentals"],
        }
    )
    prompts = pd.DataFrame(
        {
            "dataset_name": "AlpacaEvalSuppress",
            "concept_id": [1, 1, 3],
            "input_id": [0, 1, 0],
            "input_concept": ["capital letters", "capital letters", "rental services"],
            "original_prompt": ["a", "b", "c"],
        }
    )
    return gens, prompts


def test_rule_judge_replaces_the_concept_criterion_of_rule_concepts() -> None:
    gens, prompts = _generations()
    judge = _StubJudge()
    judged = judge_with_rules(judge, RuleJudge(seed=7), gens, prompts, {1: "all_capital"})
    assert list(judged.columns) == JUDGEMENT_COLUMNS
    by = judged.set_index(["concept_id", "input_id", "criterion"])
    assert sorted(judged.loc[judged["concept_id"] == 1, "criterion"].unique()) == [
        "fluency",
        "instruction",
        "rule",
    ]
    assert sorted(judged.loc[judged["concept_id"] == 3, "criterion"].unique()) == [
        "concept",
        "fluency",
        "instruction",
    ]
    assert judge.asked == [
        ("concept", "instruction", "fluency"),
        ("instruction", "fluency"),
    ]  # J1 never asked
    assert judge.criteria == ("concept", "instruction", "fluency")  # the judge itself is unchanged
    assert by.loc[(1, 0, "rule"), "rating"] == 2.0  # all in capitals
    assert by.loc[(1, 1, "rule"), "rating"] == pytest.approx(2 * 1 / 4)  # 1 of 4 cased words
    assert (
        by.loc[(1, 0, "rule"), "judge_kind"] == "rule" and by.loc[(1, 0, "fluency"), "judge_kind"] == "stub"
    )
    assert by.loc[(1, 0, "rule"), "parse_rule"] == "rules-v1" and by.loc[(1, 0, "rule"), "seed"] == 7
    scored = suppression_generation_scores(judged).set_index(["concept_id", "input_id"])
    assert scored.loc[(1, 0), "hm"] == 0.0  # HM(2 − 2, 2, 2): the zero veto
    assert scored.loc[(1, 1), "hm"] == pytest.approx(3 / (1 / 1.5 + 1 / 2 + 1 / 2))
    assert scored.loc[(1, 0), "concept_criterion"] == "rule" and scored.loc[(1, 0), "concept"] == 2.0
    assert scored.loc[(3, 0), "hm"] == pytest.approx(3 / (1 / 1 + 1 / 2 + 1 / 2))  # HM(2 − 1, 2, 2)
    assert judge_with_rules(judge, RuleJudge(), gens.iloc[:0], prompts, {1: "all_capital"}).empty


# ---- scores and summary ------------------------------------------------------------------------------------------
def _attack_judgements() -> pd.DataFrame:
    """Two rule concepts (1, 2), ids 0-1 selection / 2-3 test, method DiffMean, settings 2-shot and append; the
    rule rating of each test generation is chosen so that the HMs are known."""
    rows = []
    rule_of = {  # (attack, concept, input_id) → rule rating; instruction 2, fluency 1
        ("multishot", 1, 2): 0.0,  # HM(2, 2, 1) = 1.5
        ("multishot", 1, 3): 2.0,  # veto → 0
        ("multishot", 2, 2): 1.0,  # HM(1, 2, 1) = 1.2
        ("multishot", 2, 3): 1.0,
    }
    for attack, n_shot, dataset in (("multishot", 2, "AttackMultiShot"), ("append", 0, "AttackOverwrite")):
        for cid in (1, 2):
            for iid in range(4):
                rating = rule_of.get((attack, cid, iid), 2.0)
                for criterion, value in (("instruction", 2.0), ("fluency", 1.0), ("rule", rating)):
                    rows.append(
                        {
                            "attack": attack,
                            "n_shot": n_shot,
                            "dataset_name": dataset,
                            "concept_id": cid,
                            "input_id": iid,
                            "factor": -1.0 * cid,
                            "method": "DiffMean",
                            "criterion": criterion,
                            "rating": value,
                        }
                    )
    frame = pd.DataFrame(rows)
    for col in ATTACK_JUDGEMENT_COLUMNS:
        if col not in frame.columns:
            frame[col] = {"parse_ok": True, "replica": False, "seed": 0}.get(col, "")
    return frame[ATTACK_JUDGEMENT_COLUMNS]


def _suppression_outputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    selection = pd.DataFrame(
        {
            "concept_id": [1, 2, 5],
            "method": "DiffMean",
            "dataset_name": "AlpacaEvalSuppress",
            "best_factor": [-1.0, -2.0, -1.0],
            "test_hm": [1.0, 0.5, 0.0],  # concept 5 is no rule concept: never in the attack summary
        }
    )
    scores = pd.DataFrame(
        {
            "concept_id": [1, 1, 2, 2],
            "method": "DiffMean",
            "dataset_name": "AlpacaEvalSuppress",
            "split": "test",
            "factor": [-1.0, -2.0, -2.0, -1.0],
            "n": [2, 2, 2, 2],
            "lm_judge_rating": [1.0, 0.3, 0.5, 0.9],
        }
    )
    return selection, scores


def test_attack_scores_tag_each_setting_and_score_hm_of_two_minus_rule() -> None:
    scores = attack_scores_frame(_attack_judgements(), {1: "all_capital", 2: "emoji"}, n_selection=2)
    assert list(scores.columns) == ATTACK_SCORE_COLUMNS and len(scores) == 2 * 2 * 4
    assert scores["n_shot"].dtype == "int64" and set(scores["split"]) == {"selection", "test"}
    two = scores[(scores["attack"] == "multishot") & (scores["split"] == "test")].set_index(
        ["concept_id", "input_id"]
    )
    assert two["hm"].to_dict() == pytest.approx({(1, 2): 1.5, (1, 3): 0.0, (2, 2): 1.2, (2, 3): 1.2})
    assert two.loc[(1, 3), "concept"] == 2.0 and two.loc[(1, 3), "rule_id"] == "all_capital"
    assert (scores.loc[scores["attack"] == "append", "hm"] == 0.0).all()  # rule 2 everywhere → veto
    with pytest.raises(AxbenchDataError, match="not rule concepts"):
        attack_scores_frame(_attack_judgements(), {1: "all_capital"}, n_selection=2)


def test_attack_summary_means_over_concepts_with_the_no_attack_row() -> None:
    rules = {1: "all_capital", 2: "emoji"}
    scores = attack_scores_frame(_attack_judgements(), rules, n_selection=2)
    selection, supp_scores = _suppression_outputs()
    run = RunSettings(setting="tiny", layer=1, seed=3)
    summary = attack_summary_frame(
        scores,
        selection,
        supp_scores,
        rules,
        attack_settings([2], ["append"]),
        setting=run.setting,
        factor_free=[],
        judge_kind="llm",
        n_resamples=200,
        confidence=0.9,
        seed=run.seed,
    )
    assert list(summary.columns) == ATTACK_SUMMARY_COLUMNS
    assert summary[["attack", "n_shot", "label"]].values.tolist() == [
        ["none", 0, "no attack"],
        ["multishot", 2, "2-shot"],
        ["append", 0, "overwrite (append)"],
    ]
    rows = summary.set_index("attack")
    # no attack: the suppression Score of the rule concepts (1.0 and 0.5), 2 test generations each at its factor
    assert rows.loc["none", "score"] == pytest.approx(0.75) and rows.loc["none", "n_concepts"] == 2
    assert rows.loc["none", "n_generations"] == 4
    # 2-shot: concept 1 mean(1.5, 0) = 0.75, concept 2 mean(1.2, 1.2) = 1.2 → 0.975 over 4 test generations
    assert (
        rows.loc["multishot", "score"] == pytest.approx(0.975) and rows.loc["multishot", "n_generations"] == 4
    )
    low, high = bootstrap_ci([0.75, 1.2], n_resamples=200, confidence=0.9, seed=3)
    assert (rows.loc["multishot", "ci_low"], rows.loc["multishot", "ci_high"]) == pytest.approx((low, high))
    assert rows.loc["append", "score"] == 0.0 and rows.loc["append", "ci_low"] == 0.0
    assert set(summary["kind"]) == {"steering"} and set(summary["setting"]) == {"tiny"}
    assert set(summary["judge_kind"]) == {"llm"}
    empty = attack_summary_frame(
        scores.iloc[:0],
        selection,
        supp_scores,
        {},
        [],
        setting="tiny",
        factor_free=[],
        judge_kind="llm",
        n_resamples=10,
        confidence=0.9,
        seed=0,
    )
    assert empty.empty and list(empty.columns) == ATTACK_SUMMARY_COLUMNS


# ---- no rule concepts: empty frames, no LLM call, no judge built -------------------------------------------------
class _Forbidden:
    """An LLM client or factory that must never be used."""

    model = "forbidden"

    def __call__(self, *args, **kwargs):
        raise AssertionError("no LLM client may be built")

    def __getattr__(self, name):
        raise AssertionError(f"no LLM call expected ({name})")


def test_attack_nodes_without_rule_concepts_make_no_calls() -> None:
    from axbench_kedro.config.steering_eval import SteeringEvalParams
    from axbench_kedro.pipelines.suppression import nodes

    concepts = CONCEPTS.assign(rule_id=None)
    prompts = suppression_prompt_frame(
        concepts, POOL, _texts(), None, n_instructions=4, factors=[1.0], formatter=fmt
    )
    run = RunSettings(setting="tiny", layer=1, seed=0)
    attacks = AttackParams(n_shots=[2], overwrite=["append"])
    examples, usage = nodes.write_multishot_examples(concepts, prompts, _Forbidden(), {}, {}, attacks, run)
    assert (
        examples.empty
        and usage.empty
        and list(examples.columns)
        == [
            "rule",
            "example_id",
            "topic",
            "question",
            "answer",
        ]
    )
    rules_only = AttackParams(n_shots=[], overwrite=["append"])
    examples, usage = nodes.write_multishot_examples(CONCEPTS, prompts, _Forbidden(), {}, {}, rules_only, run)
    assert examples.empty and usage.empty  # no many-shot attack: no R4 call even with a rule concept
    steering = SteeringEvalParams(dataset_name="AlpacaEvalSuppress", judge={"kind": "llm"})
    judged, judge_usage = nodes.judge_attacks(
        pd.DataFrame(columns=["attack", "n_shot"]),
        pd.DataFrame(columns=["attack", "n_shot"]),
        concepts,
        _Forbidden(),
        {},
        {},
        None,
        steering,
        SuppressionParams().rule_judge,
        run,
    )
    assert judged.empty and list(judged.columns) == ATTACK_JUDGEMENT_COLUMNS and judge_usage.empty
    scores, summary = nodes.score_attacks(
        judged, *_suppression_outputs()[::-1], concepts, attacks, steering, run
    )
    assert scores.empty and summary.empty
    assert list(scores.columns) == ATTACK_SCORE_COLUMNS and list(summary.columns) == ATTACK_SUMMARY_COLUMNS
