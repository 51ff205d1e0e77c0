"""Prompt attacks on rule concepts (protocol §6): settings, prompts, generation at the selected factor, scores
and the summary.

An attack *setting* is ``(attack, n_shot)``: ``("multishot", n)`` for each configured shot count and
``("append", 0)`` / ``("prepend", 0)`` for the overwrite placements. Every method meets every setting at each rule
concept's selected suppression factor (``suppression_selection``; NaN for factor-free methods such as the prompt
defence, which read the attack through ``steered_input``). The generation keys ``dataset_name, concept_id,
input_id, factor, method`` repeat across shot counts, so every frame here carries ``attack`` and ``n_shot`` and
each setting is generated, judged and scored on its own.

Example:
    >>> settings = attack_settings([5], ["append"])
    >>> settings
    [('multishot', 5), ('append', 0)]
    >>> attack_label("multishot", 5), attack_label("prepend", 0)
    ('5-shot', 'overwrite (prepend)')
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from axbench_kedro.cache import SQLiteCache
from axbench_kedro.config.steering_eval import SteeringEvalParams
from axbench_kedro.errors import AxbenchDataError
from axbench_kedro.judges.rule_concepts import rule_description
from axbench_kedro.lm.types import TargetModel
from axbench_kedro.metrics.bootstrap import bootstrap_ci
from axbench_kedro.metrics.steering import split_name
from axbench_kedro.scaling.executor import ShardExecutor
from axbench_kedro.steering.plans import MethodPlan
from axbench_kedro.steering.prompts import PROMPT_COLUMNS
from axbench_kedro.steering.schedule import GENERATION_COLUMNS, GenerationStats, generate_plans
from axbench_kedro.suppression.judging import ATTACK_JUDGEMENT_COLUMNS, SETTING_KEYS
from axbench_kedro.suppression.prompts import attack_prompt_frame
from axbench_kedro.suppression.scoring import suppression_generation_scores

__all__ = [
    "NO_ATTACK",
    "ATTACK_PROMPT_COLUMNS",
    "ATTACK_GENERATION_COLUMNS",
    "ATTACK_SCORE_COLUMNS",
    "ATTACK_SUMMARY_COLUMNS",
    "attack_settings",
    "attack_label",
    "attacked_rules",
    "multishot_rules",
    "attack_prompts_frame",
    "generate_attack_rows",
    "attack_scores_frame",
    "attack_summary_frame",
]

log = logging.getLogger(__name__)

NO_ATTACK = "none"
"""``attack`` of the summary rows without an attack (the suppression score itself)."""
ATTACK_PROMPT_COLUMNS = ["method", *SETTING_KEYS, *PROMPT_COLUMNS]
"""Columns of ``attack_prompts`` (one row per method × setting × rule concept × instruction)."""
ATTACK_GENERATION_COLUMNS = [*SETTING_KEYS, *GENERATION_COLUMNS]
"""Columns of ``attack_generations``."""
ATTACK_SCORE_COLUMNS = [
    "method",
    "attack",
    "n_shot",
    "dataset_name",
    "concept_id",
    "rule_id",
    "input_id",
    "factor",
    "split",
    "instruction",
    "fluency",
    "concept",
    "hm",
]
"""Columns of ``attack_scores`` (``concept`` = the rule judge's rating; ``hm`` = HM(2 − rule, instruction,
fluency))."""
ATTACK_SUMMARY_COLUMNS = [
    "setting",
    "method",
    "kind",
    "attack",
    "n_shot",
    "label",
    "n_concepts",
    "n_generations",
    "score",
    "ci_low",
    "ci_high",
    "judge_kind",
]
"""Columns of ``attack_summary``."""


def attack_settings(n_shots: Sequence[int], overwrite: Sequence[str]) -> list[tuple[str, int]]:
    """The ``(attack, n_shot)`` settings in report order: many-shot by shot count, then the overwrite placements."""
    return [("multishot", int(n)) for n in n_shots] + [(str(p), 0) for p in overwrite]


def attack_label(attack: str, n_shot: int) -> str:
    """The name readers see: ``no attack``, ``<n>-shot``, ``overwrite (append)``, ``overwrite (prepend)``."""
    if attack == NO_ATTACK:
        return "no attack"
    if attack == "multishot":
        return f"{int(n_shot)}-shot"
    return f"overwrite ({attack})"


def attacked_rules(rules: Mapping[int, str], excluded: Collection[str] = ()) -> dict[int, str]:
    """``concept_id → rule_id`` of the rule concepts that are attacked (``excluded`` rule ids left out)."""
    skip = set(excluded)
    return {int(c): r for c, r in sorted(rules.items()) if r not in skip}


def multishot_rules(rules: Mapping[int, str]) -> pd.DataFrame:
    """``rule, description`` of the distinct rules of ``rules`` (the R4 input of :func:`multishot_examples`)."""
    ids = sorted(set(rules.values()))
    return pd.DataFrame({"rule": ids, "description": [rule_description(r) for r in ids]}, dtype=object)


def _empty(columns: Sequence[str], ints: Sequence[str] = ()) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns)).astype(dict.fromkeys(ints, "int64"))


def attack_prompts_frame(
    suppression_prompts: pd.DataFrame,
    suppression_selection: pd.DataFrame,
    multishot_examples: pd.DataFrame,
    rules: Mapping[int, str],
    settings: Sequence[tuple[str, int]],
    tokenizer: Any,
    *,
    formatter: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """``attack_prompts``: the attack rows of every method of ``suppression_selection`` and every setting.

    Args:
        suppression_prompts: the ``AlpacaEvalSuppress`` rows (rewritten instruction and defence per instruction).
        suppression_selection: ``concept_id, method, best_factor`` (protocol §1.14).
        multishot_examples: R4 examples (``rule, example_id, question, answer``).
        rules: concept_id → rule_id of the attacked rule concepts (concepts without suppression rows are skipped).
        settings: from :func:`attack_settings`.
        tokenizer: the target model's tokenizer (chat format).
        formatter: F-prompt function (tests).

    Returns:
        ``ATTACK_PROMPT_COLUMNS`` rows; ``factor`` = the method's selected factor of the concept (NaN when
        factor-free).
    """
    present = set(suppression_prompts["concept_id"].astype(int)) if len(suppression_prompts) else set()
    mine = {c: r for c, r in rules.items() if c in present}
    if not mine or not settings:
        return _empty(ATTACK_PROMPT_COLUMNS, ["n_shot", "concept_id", "input_id", "sae_id"])
    available = (
        multishot_examples["rule"].astype(str).value_counts().to_dict() if len(multishot_examples) else {}
    )
    short = {
        (c, n): available.get(r, 0)
        for c, r in mine.items()
        for attack, n in settings
        if attack == "multishot" and available.get(r, 0) < n
    }
    for (cid, n), have in sorted(short.items()):  # R4 replies that parse into too few examples (small models)
        log.warning(
            "many-shot attack: rule %s (concept_id %d) has %d of the %d examples a %d-shot prompt needs; "
            "that setting is left out for it",
            mine[cid],
            cid,
            have,
            n,
            n,
        )
    frames = []
    for method in sorted(suppression_selection["method"].unique()):
        selected = suppression_selection[suppression_selection["method"] == method]
        for attack, n_shot in settings:
            multishot = attack == "multishot"
            rules_here = {c: r for c, r in mine.items() if (c, n_shot) not in short} if multishot else mine
            if not rules_here:
                continue
            frame = attack_prompt_frame(
                suppression_prompts,
                selected[["concept_id", "best_factor"]],
                kind=attack,  # type: ignore[arg-type]
                rules=rules_here if multishot else {c: rule_description(r) for c, r in mine.items()},
                tokenizer=tokenizer,
                examples=multishot_examples if multishot else None,
                n_shot=n_shot if multishot else None,
                formatter=formatter,
            )
            frames.append(frame.assign(method=method, attack=attack, n_shot=int(n_shot)))
    if not frames:
        return _empty(ATTACK_PROMPT_COLUMNS, ["n_shot", "concept_id", "input_id", "sae_id"])
    return pd.concat(frames, ignore_index=True)[ATTACK_PROMPT_COLUMNS].astype({"n_shot": "int64"})


def generate_attack_rows(
    attack_prompts: pd.DataFrame,
    plans: Sequence[MethodPlan],
    tm: TargetModel,
    cache: SQLiteCache,
    params: SteeringEvalParams,
    *,
    layer: int,
    seed: int,
    generate_fn: Callable[..., list[Any]] | None = None,
    sample_fn: Callable[..., list[Any]] | None = None,
    executor: ShardExecutor | None = None,
) -> pd.DataFrame:
    """``attack_generations``: each setting generated by the steering schedule, each concept at its own factor.

    Every plan gets ``concept_factors`` = {concept: [its selected factor]} from the method's attack rows (a
    copy; the plans are not changed), so :func:`~axbench_kedro.steering.plans.plan_units` makes one unit per
    instruction. Generation, batching and the cache are :func:`~axbench_kedro.steering.schedule.generate_plans`.

    Args:
        attack_prompts: ``ATTACK_PROMPT_COLUMNS`` rows.
        plans: the methods' suppression plans (:func:`~axbench_kedro.suppression.generation.suppression_plans`).
        tm / cache / params / layer / seed: as :func:`~axbench_kedro.steering.schedule.generate_plans`.
        generate_fn / sample_fn: replacements of the generation functions (tests).
        executor: runs the batches the cache lacks (Dask workers when distributed; in-process when ``None``).
    """
    if attack_prompts.empty:
        return _empty(ATTACK_GENERATION_COLUMNS, ["n_shot", "concept_id", "input_id", "seed", "n_new_tokens"])
    by_method = {p.method: p for p in plans}
    keys = ["dataset_name", "concept_id", "input_id"]
    frames = []
    for (attack, n_shot), group in attack_prompts.groupby(SETTING_KEYS, sort=False):
        setting_plans = []
        for method, rows in group.groupby("method", sort=False):
            plan = by_method.get(str(method))
            if plan is None:
                log.warning("attack %s/%d: %s has no steering plan (skipped)", attack, n_shot, method)
                continue
            first = rows.drop_duplicates("concept_id")
            factors = {int(c): [float(f)] for c, f in zip(first["concept_id"], first["factor"], strict=True)}
            setting_plans.append(dataclasses.replace(plan, concept_factors=factors))
        prompts = group.drop_duplicates(keys).drop(columns=["method", *SETTING_KEYS])
        stats = GenerationStats()
        frame = generate_plans(
            setting_plans,
            prompts,
            tm,
            cache,
            params,
            layer=layer,
            seed=seed,
            generate_fn=generate_fn,
            sample_fn=sample_fn,
            stats=stats,
            executor=executor,
        )
        log.info(
            "attack %s (n_shot %d) generation: %d rows of %d methods (%d new, %d cached) in %.1f s",
            attack,
            n_shot,
            stats.rows,
            len(setting_plans),
            stats.generated,
            stats.cached,
            stats.seconds,
        )
        frames.append(frame.assign(attack=attack, n_shot=int(n_shot))[ATTACK_GENERATION_COLUMNS])
    return pd.concat(frames, ignore_index=True).astype({"n_shot": "int64"})


def attack_scores_frame(
    attack_judgements: pd.DataFrame, rules: Mapping[int, str], *, n_selection: int
) -> pd.DataFrame:
    """``attack_scores``: one row per attacked generation with its ratings and HM(2 − rule, instruction,
    fluency), scored one setting at a time (``ATTACK_SCORE_COLUMNS``).

    Args:
        attack_judgements: ``ATTACK_JUDGEMENT_COLUMNS`` rows.
        rules: concept_id → rule_id.
        n_selection: ``input_id < n_selection`` is the selection split, the rest the test split.
    """
    ints = ["n_shot", "concept_id", "input_id"]
    if attack_judgements.empty:
        return _empty(ATTACK_SCORE_COLUMNS, ints)
    missing = [c for c in ATTACK_JUDGEMENT_COLUMNS if c not in attack_judgements.columns]
    if missing:
        raise AxbenchDataError(f"attack_judgements: missing column(s) {missing}")
    frames = []
    for (attack, n_shot), group in attack_judgements.groupby(SETTING_KEYS, sort=False):
        scored = suppression_generation_scores(group.drop(columns=SETTING_KEYS))
        unknown = sorted(set(scored["concept_id"].astype(int)) - set(rules))
        if unknown:
            raise AxbenchDataError(f"attack_judgements: concept_id(s) {unknown} are not rule concepts")
        scored["attack"], scored["n_shot"] = attack, int(n_shot)
        scored["rule_id"] = [rules[int(c)] for c in scored["concept_id"]]
        scored["split"] = split_name(scored["input_id"].to_numpy(), n_selection)
        frames.append(scored[ATTACK_SCORE_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    return out.astype(
        {
            **dict.fromkeys(ints, "int64"),
            **dict.fromkeys(["factor", "instruction", "fluency", "concept", "hm"], "float64"),
        }
    )


def _no_attack_rows(
    selection: pd.DataFrame, scores: pd.DataFrame, concept_ids: Collection[int], factor_free: Collection[str]
) -> pd.DataFrame:
    """Per method and attacked concept: the suppression Score (test split, selected factor) and its generation
    count."""
    chosen = selection[selection["concept_id"].astype(int).isin(list(concept_ids))]
    test = scores[scores["split"] == "test"]
    rows = []
    for rec in chosen.to_dict("records"):
        mine = test[(test["method"] == rec["method"]) & (test["concept_id"] == rec["concept_id"])]
        if rec["method"] in factor_free:  # every factor row repeats the same generations: count one
            mine = mine[mine["factor"] == mine["factor"].min()]
        else:
            mine = mine[np.isclose(mine["factor"].to_numpy(dtype=np.float64), rec["best_factor"], atol=1e-12)]
        rows.append(
            {
                "method": rec["method"],
                "concept_id": int(rec["concept_id"]),
                "value": float(rec["test_hm"]),
                "n": int(mine["n"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=["method", "concept_id", "value", "n"])


def attack_summary_frame(
    attack_scores: pd.DataFrame,
    suppression_selection: pd.DataFrame,
    suppression_scores: pd.DataFrame,
    rules: Mapping[int, str],
    settings: Sequence[tuple[str, int]],
    *,
    setting: str,
    factor_free: Collection[str],
    judge_kind: str,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> pd.DataFrame:
    """``attack_summary``: per method, the no-attack row and one row per attack setting (``ATTACK_SUMMARY_COLUMNS``).

    ``score`` = mean over the attacked rule concepts of the concept's mean test-split HM; the CI is the steering
    summary's percentile bootstrap over concepts (:func:`~axbench_kedro.metrics.bootstrap.bootstrap_ci`). The
    no-attack row reads the suppression Score (``suppression_selection.test_hm``) of the same concepts.

    Args:
        attack_scores: ``ATTACK_SCORE_COLUMNS`` rows.
        suppression_selection / suppression_scores: the suppression outputs (§1.13, §1.14).
        rules: concept_id → rule_id of the attacked rule concepts (among the evaluated ones).
        settings: the attack settings, in report order.
        setting: the paper setting (``run.setting``).
        factor_free: methods without a strength knob (``kind = "prompt"``).
        judge_kind: the configured judge kind (the rule judge rates the rule criterion of every row).
        n_resamples / confidence / seed: bootstrap.
    """
    concept_ids = {int(c) for c in rules}
    evaluated = set(suppression_selection["concept_id"].astype(int)) & concept_ids
    if not evaluated:
        return _empty(ATTACK_SUMMARY_COLUMNS, ["n_shot", "n_concepts", "n_generations"])
    free = set(factor_free)
    base = _no_attack_rows(suppression_selection, suppression_scores, evaluated, free)
    test = attack_scores[attack_scores["split"] == "test"]
    rows = []

    def add(method: str, attack: str, n_shot: int, per_concept: pd.Series, n_generations: int) -> None:
        values = per_concept.to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(values, n_resamples=n_resamples, confidence=confidence, seed=seed)
        rows.append(
            {
                "setting": setting,
                "method": method,
                "kind": "prompt" if method in free else "steering",
                "attack": attack,
                "n_shot": int(n_shot),
                "label": attack_label(attack, n_shot),
                "n_concepts": int(len(values)),
                "n_generations": int(n_generations),
                "score": float(np.nanmean(values)) if len(values) else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "judge_kind": judge_kind,
            }
        )

    for method in sorted(base["method"].unique()):
        mine = base[base["method"] == method].sort_values("concept_id")
        add(method, NO_ATTACK, 0, mine["value"], int(mine["n"].sum()))
        for attack, n_shot in settings:
            rows_of = test[
                (test["method"] == method) & (test["attack"] == attack) & (test["n_shot"] == n_shot)
            ]
            if rows_of.empty:
                continue
            per_concept = rows_of.groupby("concept_id", sort=True)["hm"].mean()
            add(method, attack, n_shot, per_concept, len(rows_of))
    out = pd.DataFrame(rows, columns=ATTACK_SUMMARY_COLUMNS)
    return out.astype({"n_shot": "int64", "n_concepts": "int64", "n_generations": "int64"})
