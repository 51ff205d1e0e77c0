"""Judging suppression and attack generations: the configured steering judge, with the rule judge in place of J1
for rule concepts (protocol §6).

Ordinary concepts get the judge's three criteria. Rule concepts get only ``instruction`` and ``fluency`` from the
configured judge (J1 is never asked for them) and a ``rule`` row from the deterministic
:class:`~axbench_kedro.judges.rule_judge.RuleJudge`, so
:func:`~axbench_kedro.suppression.scoring.suppression_generation_scores` scores them HM(2 − rule, instruction,
fluency). The rows follow ``judgements`` (§1.12); the rule rows carry ``judge_kind = "rule"``.

Attack generations of different attack settings share their generation keys (two shot counts of one concept,
instruction, factor and method), so they are judged one setting at a time and tagged with ``attack`` and
``n_shot``; nothing is merged across settings.

Example:
    >>> judgements, usage = judge_suppression_generations(gens, prompts, params.judge, resources,
    ...                                                   rules={3: "all_capital"})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pandas as pd

from axbench_kedro.config.steering_eval import JudgeParams
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.judges.base import JUDGEMENT_COLUMNS, Judge, JudgeResources, build_judge, judgement_frame
from axbench_kedro.judges.rule_concepts import RULE_IDS
from axbench_kedro.judges.rule_judge import RuleJudge, RuleJudgeParams
from axbench_kedro.llm.ledger import USAGE_COLUMNS
from axbench_kedro.steering.judging import log_parse_failures

__all__ = [
    "STAGE",
    "ATTACK_STAGE",
    "SETTING_KEYS",
    "ATTACK_JUDGEMENT_COLUMNS",
    "rule_concepts",
    "judge_with_rules",
    "judge_suppression_generations",
    "judge_attack_generations",
]


STAGE = "suppression.judge"
"""The ``stage`` of the suppression judge's usage row."""
ATTACK_STAGE = "suppression.attack_judge"
"""The ``stage`` of the attack judge's usage row."""
SETTING_KEYS = ["attack", "n_shot"]
"""Columns naming an attack setting (they complete the generation keys of attack rows)."""
ATTACK_JUDGEMENT_COLUMNS = [*SETTING_KEYS, *JUDGEMENT_COLUMNS]
"""Columns of ``attack_judgements``."""


def rule_concepts(concepts_meta: pd.DataFrame) -> dict[int, str]:
    """``concept_id → rule_id`` of the ``concepts_meta`` rows with a ``rule_id`` (none without the column).

    Raises:
        AxbenchDataError: a ``rule_id`` that is not one of the 25 rule ids.
    """
    if "rule_id" not in concepts_meta.columns:
        return {}
    out: dict[int, str] = {}
    for cid, rule in zip(concepts_meta["concept_id"], concepts_meta["rule_id"], strict=True):
        if rule is None or (isinstance(rule, float) and rule != rule) or not str(rule).strip():
            continue
        if str(rule).strip() not in RULE_IDS:
            raise AxbenchDataError(
                f"concepts_meta: column 'rule_id': unknown rule {str(rule)!r} at concept_id {int(cid)}"
            )
        out[int(cid)] = str(rule).strip()
    return out


def _without_concept(judge: Judge) -> Judge:
    """A shallow copy of ``judge`` that rates every criterion but ``concept`` (same client, same usage ledger)."""
    clone = copy.copy(judge)
    clone.criteria = tuple(c for c in judge.criteria if c != "concept")  # type: ignore[misc]
    return clone


def judge_with_rules(
    judge: Judge,
    rule_judge: RuleJudge,
    generations: pd.DataFrame,
    prompts: pd.DataFrame,
    rules: Mapping[int, str],
) -> pd.DataFrame:
    """``judgements`` of ``generations``: all criteria for ordinary concepts; ``instruction``, ``fluency`` and the
    rule judge's ``rule`` for rule concepts (``rules``: concept_id → rule_id)."""
    if generations.empty:
        return pd.DataFrame(columns=JUDGEMENT_COLUMNS)
    is_rule = generations["concept_id"].astype("int64").isin([int(c) for c in rules]).to_numpy()
    parts = []
    if (~is_rule).any():
        parts.append(judge.judge(generations[~is_rule], prompts))
    if is_rule.any():
        ruled = generations[is_rule]
        parts.append(_without_concept(judge).judge(ruled, prompts))
        parts.append(rule_judge.judge_generations(ruled, rules))
    return judgement_frame(pd.concat(parts, ignore_index=True))


def judge_suppression_generations(
    generations: pd.DataFrame,
    prompts: pd.DataFrame,
    config: JudgeParams,
    resources: JudgeResources,
    *,
    rules: Mapping[int, str],
    rule_params: RuleJudgeParams | None = None,
    stage: str = STAGE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``judgements`` of suppression generations and the judge's LLM usage (``stage``).

    Args:
        generations: ``suppression_generations``.
        prompts: their prompts (instruction and concept per ``dataset_name, concept_id, input_id``).
        config: ``suppression.steering.judge``.
        resources: what the judge may need (client or factory, target model, seed, templates, prices).
        rules: concept_id → rule_id of the rule concepts.
        rule_params: the rule judge's parameters.
        stage: ``stage`` of the usage row.
    """
    judge = build_judge(config, resources)
    judgements = judge_with_rules(
        judge, RuleJudge(rule_params, seed=resources.seed), generations, prompts, rules
    )
    log_parse_failures(judgements, judge.kind)
    return judgements, judge.usage_frame(stage)


def judge_attack_generations(
    generations: pd.DataFrame,
    prompts: pd.DataFrame,
    config: JudgeParams,
    resources: JudgeResources,
    *,
    rules: Mapping[int, str],
    rule_params: RuleJudgeParams | None = None,
    stage: str = ATTACK_STAGE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``attack_judgements`` (``ATTACK_JUDGEMENT_COLUMNS``), one attack setting at a time, and the LLM usage.

    No generations → an empty frame and no usage row; the judge (and its LLM client) is not even built.

    Args:
        generations: ``attack_generations`` (``attack``, ``n_shot`` + the ``steering_generations`` columns).
        prompts: ``attack_prompts`` (``attack``, ``n_shot`` + the ``steering_prompts`` columns).
        config / resources / rules / rule_params / stage: as :func:`judge_suppression_generations`.
    """
    empty_usage = pd.DataFrame(columns=USAGE_COLUMNS)
    if generations.empty:
        return pd.DataFrame(columns=ATTACK_JUDGEMENT_COLUMNS), empty_usage
    missing = [c for c in SETTING_KEYS if c not in generations.columns or c not in prompts.columns]
    if missing:
        raise AxbenchDataError(f"attack_generations / attack_prompts: missing column(s) {missing}")
    judge = build_judge(config, resources)
    rule_judge = RuleJudge(rule_params, seed=resources.seed)
    frames = []
    for (attack, n_shot), group in generations.groupby(SETTING_KEYS, sort=False):
        mine = prompts[(prompts["attack"] == attack) & (prompts["n_shot"] == n_shot)]
        judged = judge_with_rules(judge, rule_judge, group.drop(columns=SETTING_KEYS), mine, rules)
        frames.append(judged.assign(attack=attack, n_shot=int(n_shot))[ATTACK_JUDGEMENT_COLUMNS])
    out = pd.concat(frames, ignore_index=True).astype({"n_shot": "int64"})
    log_parse_failures(out, judge.kind)
    usage = judge.usage_frame(stage)
    return out, usage if len(usage) else empty_usage
