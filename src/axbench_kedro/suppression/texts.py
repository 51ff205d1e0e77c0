"""The suppression texts (protocol §6, §1.10 ``suppression_texts``): one cached LLM call per text, built once and
reused by every method.

* R1, per concept × instruction: the instruction rewritten so that it demands the concept (``rewritten``);
* R2, per concept: an instruction to avoid the concept (``suppress_original``);
* R3, per rule concept: an instruction to avoid the rule while keeping the meaning (``suppress_rewrite``; ``""``
  for ordinary concepts).

Empty replies take the purpose's own fallback and are flagged [D 18] (:mod:`~axbench_kedro.suppression.replies`).

Example:
    >>> texts, usage = suppression_texts(concepts_meta, instructions, client, prices, templates,
    ...                                  n_instructions=10, rules={})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from axbench_kedro.llm.client import apply_prices
from axbench_kedro.llm.templates import pick_template
from axbench_kedro.llm.types import LLMRequest
from axbench_kedro.steering.prompts import check_concepts, sample_instructions
from axbench_kedro.suppression.replies import (
    AVOID_CONCEPT_FALLBACK,
    AVOID_RULE_FALLBACK,
    REWRITE_FALLBACK,
    clean_reply,
)

__all__ = ["STAGE", "TEXT_COLUMNS", "TEMPLATES", "suppression_texts"]

log = logging.getLogger(__name__)

STAGE = "suppression.texts"
"""The ``stage`` of the usage row."""

TEMPLATES: dict[str, str] = {
    "rewrite": "suppress_rewrite_instruction",
    "avoid_concept": "suppress_avoid_concept",
    "avoid_rule": "suppress_avoid_rule",
}
"""Default template names (R1, R2, R3); the ``_base`` variants serve base models."""

TEXT_COLUMNS = [
    "concept_id",
    "input_id",
    "rewritten",
    "suppress_original",
    "suppress_rewrite",
    "rewritten_is_fallback",
    "suppress_original_is_fallback",
    "suppress_rewrite_is_fallback",
    "model",
]
"""Columns of ``suppression_texts`` (§1.10 plus one fallback flag per text and the LLM's id)."""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def suppression_texts(
    concepts_meta: pd.DataFrame,
    steering_instructions: pd.DataFrame,
    client: Any,
    llm_prices: Mapping[str, Any],
    prompt_templates: Mapping[str, Any],
    *,
    n_instructions: int,
    rules: Mapping[int, str] | None = None,
    templates: Mapping[str, str] | None = None,
    fallbacks: Mapping[str, str] | None = None,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    first_line_only: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """R1 per concept × instruction, R2 per concept, R3 per rule concept.

    Args:
        concepts_meta: ``concept_id, concept``.
        steering_instructions: the instruction pool; each concept gets its §5.1 sample (the steering instructions).
        client: the LLM client (cached).
        llm_prices: the price table the usage is costed with.
        prompt_templates: the ``prompt_templates`` catalog dataset.
        n_instructions: instructions per concept (``input_id`` 0..n−1).
        rules: concept_id → rule description of the rule concepts (they also get R3, which fills ``{rule}``
            with the description).
        templates: template names by purpose (``rewrite``, ``avoid_concept``, ``avoid_rule``); missing keys take
            :data:`TEMPLATES`.
        fallbacks: texts for empty replies by purpose (same keys); missing keys take the defaults of
            :mod:`~axbench_kedro.suppression.replies`.
        temperature / max_tokens: sampling of every call.
        first_line_only: keep the first non-empty line of each reply (completion-style ``_base`` templates go on
            writing further entries).

    Returns:
        ``suppression_texts`` (``TEXT_COLUMNS``, one row per concept × instruction, sorted) and its usage row.
    """
    names = {**TEMPLATES, **dict(templates or {})}
    tpl = {
        purpose: pick_template(prompt_templates, names[purpose], f"suppression.templates.{purpose}")
        for purpose in TEMPLATES
    }
    fallback = {
        "rewrite": REWRITE_FALLBACK,
        "avoid_concept": AVOID_CONCEPT_FALLBACK,
        "avoid_rule": AVOID_RULE_FALLBACK,
        **dict(fallbacks or {}),
    }
    concepts = check_concepts(concepts_meta)
    rules = {int(c): str(d) for c, d in dict(rules or {}).items()}
    client = apply_prices(client, llm_prices)
    since = client.totals()

    def request(text: str) -> LLMRequest:
        return LLMRequest.user(text, temperature=temperature, max_tokens=max_tokens)

    per_concept: list[tuple[int, str, list[str]]] = [
        (int(cid), str(concept), sample_instructions(steering_instructions, int(cid), n_instructions))
        for cid, concept in zip(concepts["concept_id"], concepts["concept"], strict=True)
    ]
    rewrite_reqs = [
        request(tpl["rewrite"].render(concept=concept, instruction=instruction))
        for _, concept, instructions in per_concept
        for instruction in instructions
    ]
    avoid_reqs = [request(tpl["avoid_concept"].render(concept=concept)) for _, concept, _ in per_concept]
    rule_items = [(cid, rules[cid]) for cid, _, _ in per_concept if cid in rules]
    rule_reqs = [request(tpl["avoid_rule"].render(rule=rule)) for _, rule in rule_items]
    replies = client.complete_many([*rewrite_reqs, *avoid_reqs, *rule_reqs], desc="suppression texts")
    texts = [_first_line(r.text) if first_line_only else r.text for r in replies]
    rewrite_txt = iter(texts[: len(rewrite_reqs)])
    avoid_txt = iter(texts[len(rewrite_reqs) : len(rewrite_reqs) + len(avoid_reqs)])
    rule_txt = dict(
        zip((cid for cid, _ in rule_items), texts[len(rewrite_reqs) + len(avoid_reqs) :], strict=True)
    )

    rows = []
    for cid, concept, instructions in per_concept:
        original, original_fb = clean_reply(next(avoid_txt), fallback["avoid_concept"], concept=concept)
        if cid in rules:
            rule_text, rule_fb = clean_reply(rule_txt[cid], fallback["avoid_rule"], rule=rules[cid])
        else:
            rule_text, rule_fb = "", False
        for input_id, instruction in enumerate(instructions):
            rewritten, rewritten_fb = clean_reply(
                next(rewrite_txt), fallback["rewrite"], instruction=instruction
            )
            rows.append(
                {
                    "concept_id": cid,
                    "input_id": input_id,
                    "rewritten": rewritten,
                    "suppress_original": original,
                    "suppress_rewrite": rule_text,
                    "rewritten_is_fallback": rewritten_fb,
                    "suppress_original_is_fallback": original_fb,
                    "suppress_rewrite_is_fallback": rule_fb,
                    "model": str(client.model),
                }
            )
    out = pd.DataFrame(rows, columns=TEXT_COLUMNS).astype({"concept_id": "int64", "input_id": "int64"})
    flags = out[["rewritten_is_fallback", "suppress_original_is_fallback", "suppress_rewrite_is_fallback"]]
    if flags.to_numpy().any():
        log.warning(
            "suppression texts: fallback used for %d rewritten instruction(s), %d concept avoidance and %d rule "
            "avoidance text(s) (empty replies) [D 18]",
            int(out["rewritten_is_fallback"].sum()),
            int(out.drop_duplicates("concept_id")["suppress_original_is_fallback"].sum()),
            int(out.drop_duplicates("concept_id")["suppress_rewrite_is_fallback"].sum()),
        )
    return out, client.usage_frame(STAGE, since=since)
